"""reference_impl/tasks.py: the state machine as the code list gives it, simulated progress on
an injected clock, cancellation and the capacity sum."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reference_impl.problems import Problem
from reference_impl.tasks import (
    INITIALIZING_SECONDS,
    QUEUED_SECONDS,
    StateMachine,
    advance,
    allocated,
    cancel,
    machine,
    new_task,
)
from spec import default

ENTRIES = default().codelist("task-state")
STATES = [e["const"] for e in ENTRIES]
ALLOWED = {(e["const"], t) for e in ENTRIES for t in e["x-transitions"]}
TERMINAL = [e["const"] for e in ENTRIES if e["x-terminal"]]
NON_TERMINAL = [s for s in STATES if s not in TERMINAL]
RULES = machine(default())
T0 = datetime(2026, 3, 5, 3, 5, tzinfo=UTC)
BODY: dict[str, Any] = {
    "name": "微调",
    "resourceId": "R4400001E-GPU-00000123K",
    "resources": {"acceleratorCount": 4},
    "executors": [{"image": "example/train:1", "command": ["train"]}],
    "durationSeconds": 60,
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def task(**changes: Any) -> dict[str, Any]:
    return new_task("6c1e9a3f-2b7d-4e5a-8f0c-9d3b1a7e5c24", {**BODY, **changes}, "R4400001E", T0)


def states(record: dict[str, Any]) -> list[str]:
    return [entry["state"] for entry in record["stateHistory"]]


# ---- the machine ----------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "following"), sorted(ALLOWED))
def test_every_transition_of_the_code_list_is_allowed(current: str, following: str) -> None:
    assert RULES.allows(current, following)
    RULES.check(current, following)


@pytest.mark.parametrize(
    ("current", "following"),
    [(a, b) for a in STATES for b in STATES if (a, b) not in ALLOWED],
)
def test_every_other_transition_is_illegal(current: str, following: str) -> None:
    assert not RULES.allows(current, following)
    with pytest.raises(Problem) as refused:
        RULES.check(current, following)
    assert refused.value.slug == "illegal-state-transition"


def test_terminal_states_come_from_the_code_list() -> None:
    assert RULES.terminal == frozenset(TERMINAL)
    assert all(not RULES.transitions[state] for state in TERMINAL)


def test_a_code_list_without_the_simulated_path_is_refused_at_start() -> None:
    broken = copy.deepcopy(ENTRIES)
    running = next(e for e in broken if e["const"] == "RUNNING")
    running["x-transitions"].remove("COMPLETE")
    with pytest.raises(ValueError, match="RUNNING -> COMPLETE"):
        StateMachine.from_codelist(broken)


# ---- simulated progress ---------------------------------------------------------------------


def test_a_new_task_is_queued_with_a_one_entry_history() -> None:
    record = task()
    assert record["state"] == "QUEUED"
    assert record["stateHistory"] == [{"state": "QUEUED", "time": "2026-03-05T03:05:00.000Z"}]
    assert record["createdAt"] == record["updatedAt"] == "2026-03-05T03:05:00.000Z"
    assert record["nodeCode"] == "R4400001E"


def test_progress_follows_the_clock() -> None:
    start = QUEUED_SECONDS + INITIALIZING_SECONDS
    expected = [
        (0, "QUEUED"),
        (QUEUED_SECONDS - 0.001, "QUEUED"),
        (QUEUED_SECONDS, "INITIALIZING"),
        (start, "RUNNING"),
        (start + 59.999, "RUNNING"),
        (start + 60, "COMPLETE"),
    ]
    for seconds, state in expected:
        assert advance(task(), at(seconds), RULES)["state"] == state, seconds


def test_a_late_read_records_each_step_when_it_fell_due() -> None:
    record = advance(task(), at(3600), RULES)
    assert record["stateHistory"] == [
        {"state": "QUEUED", "time": "2026-03-05T03:05:00.000Z"},
        {"state": "INITIALIZING", "time": "2026-03-05T03:05:00.200Z"},
        {"state": "RUNNING", "time": "2026-03-05T03:05:00.400Z"},
        {"state": "COMPLETE", "time": "2026-03-05T03:06:00.400Z"},
    ]
    assert record["updatedAt"] == "2026-03-05T03:06:00.400Z"


def test_reading_step_by_step_gives_the_same_history_as_one_late_read() -> None:
    record = task()
    for seconds in (0.1, 0.25, 0.5, 30, 61, 120):
        record = advance(record, at(seconds), RULES)
    assert record == advance(task(), at(120), RULES)


def test_advance_does_not_change_its_argument_or_a_terminal_task() -> None:
    original = task()
    advance(original, at(120), RULES)
    assert original == task()
    done = advance(original, at(120), RULES)
    assert advance(done, at(10**6), RULES) == done


# ---- cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "before"), [(0.1, "QUEUED"), (0.3, "INITIALIZING"), (10, "RUNNING")]
)
def test_cancel_from_every_non_terminal_state(seconds: float, before: str) -> None:
    record = cancel(task(), at(seconds), RULES)
    assert record["state"] == "CANCELED"
    assert states(record)[-2:] == [before, "CANCELED"]
    assert record["updatedAt"] == record["stateHistory"][-1]["time"]
    times = [entry["time"] for entry in record["stateHistory"]]
    assert times == sorted(times)


@pytest.mark.parametrize("seconds", [60.4, 3600])
def test_cancel_after_completion_is_illegal(seconds: float) -> None:
    with pytest.raises(Problem) as refused:
        cancel(task(), at(seconds), RULES)
    assert refused.value.slug == "illegal-state-transition"


def test_cancel_twice_is_illegal() -> None:
    canceled = cancel(task(), at(1), RULES)
    with pytest.raises(Problem) as refused:
        cancel(canceled, at(2), RULES)
    assert refused.value.slug == "illegal-state-transition"
    assert "terminal" in refused.value.detail


# ---- capacity -------------------------------------------------------------------------------


def test_only_non_terminal_tasks_hold_accelerators() -> None:
    queued = task(resources={"acceleratorCount": 3})
    running = advance(task(resources={"acceleratorCount": 5}), at(1), RULES)
    done = advance(task(resources={"acceleratorCount": 7}), at(100), RULES)
    canceled = cancel(task(resources={"acceleratorCount": 11}), at(1), RULES)
    assert allocated([queued, running, done, canceled], RULES) == 8
    assert allocated([], RULES) == 0
