"""Task states and simulated execution: pure functions over a task record and a clock.

The state machine is the task-state code list (`x-transitions`, `x-terminal`); nothing here
restates it. Execution is simulated: the reference node runs no container, so a task follows
its success path on a clock, QUEUED for `QUEUED_SECONDS`, INITIALIZING for
`INITIALIZING_SECONDS`, RUNNING for its declared `durationSeconds`, then COMPLETE. The state
is derived from the clock when the task is read (`advance`) and each step is written into
`stateHistory` at the moment it happened, not when it was noticed, so a task read late, or
after a restart, shows the same history as one watched all along.

Capacity: a task holds its accelerators from acceptance until it is terminal, so the
allocation of a resource is the sum over its non-terminal tasks (`allocated`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any

from reference_impl.node import timestamp
from reference_impl.problems import Problem
from spec import Spec

# Dwell times of the simulated start-up: short, so that tests and harness runs see a task run
# within a second, and long enough that a client polling right after createTask sees QUEUED.
QUEUED_SECONDS = 0.2
INITIALIZING_SECONDS = 0.2

# The simulation's success path. Every step is checked against the code list when the machine
# is built, so a spec that stops allowing one fails at start rather than at run time.
SUCCESS_PATH = ("QUEUED", "INITIALIZING", "RUNNING", "COMPLETE")
CANCELED = "CANCELED"


@dataclass(frozen=True)
class StateMachine:
    """Allowed transitions and terminal states, as the task-state code list gives them."""

    transitions: Mapping[str, frozenset[str]]
    terminal: frozenset[str]

    @classmethod
    def from_codelist(cls, entries: Iterable[Mapping[str, Any]]) -> StateMachine:
        entries = list(entries)
        machine = cls(
            transitions={e["const"]: frozenset(e["x-transitions"]) for e in entries},
            terminal=frozenset(e["const"] for e in entries if e["x-terminal"]),
        )
        for state, following in pairwise(SUCCESS_PATH):
            if not machine.allows(state, following):
                raise ValueError(f"task-state code list does not allow {state} -> {following}")
        return machine

    def allows(self, current: str, following: str) -> bool:
        return following in self.transitions.get(current, frozenset())

    def check(self, current: str, following: str) -> None:
        """CPIN-SCHED-002: refuse any move the code list does not give (409)."""
        if not self.allows(current, following):
            if current in self.terminal:
                reason = f"the task is {current}, a terminal state"
            else:
                reason = (
                    f"{current} may move only to {', '.join(sorted(self.transitions[current]))}"
                )
            raise Problem(
                "illegal-state-transition",
                f"A task cannot move from {current} to {following}: {reason}.",
            )


@cache
def machine(spec: Spec) -> StateMachine:
    return StateMachine.from_codelist(spec.codelist("task-state"))


def new_task(
    task_id: str, body: Mapping[str, Any], node_code: str, now: datetime
) -> dict[str, Any]:
    """CPIN-SCHED-001: the record of an accepted task, QUEUED with a one-entry history."""
    at = timestamp(now)
    return {
        "taskId": task_id,
        "state": SUCCESS_PATH[0],
        **copy.deepcopy(dict(body)),
        "nodeCode": node_code,
        "createdAt": at,
        "updatedAt": at,
        "stateHistory": [{"state": SUCCESS_PATH[0], "time": at}],
    }


def advance(task: Mapping[str, Any], now: datetime, rules: StateMachine) -> dict[str, Any]:
    """The task as the clock says it is at `now`: every simulated step due by then is added to
    its history at the time it fell due. A terminal task is returned unchanged."""
    record = copy.deepcopy(dict(task))
    while record["state"] in SUCCESS_PATH[:-1]:
        current = record["state"]
        due = _parse(record["stateHistory"][-1]["time"]) + _dwell(current, record)
        if due > now:
            break
        following = SUCCESS_PATH[SUCCESS_PATH.index(current) + 1]
        _enter(record, following, due, rules)
    return record


def cancel(task: Mapping[str, Any], now: datetime, rules: StateMachine) -> dict[str, Any]:
    """The task canceled at `now`, after the steps due before it; 409 if it is terminal then
    (CPIN-SCHED-004, CPIN-SCHED-005)."""
    record = advance(task, now, rules)
    _enter(record, CANCELED, now, rules)
    return record


def allocated(tasks: Iterable[Mapping[str, Any]], rules: StateMachine) -> int:
    """Accelerators held by the tasks that are not terminal (CPIN-SCHED-008, CPIN-SCHED-009)."""
    return sum(
        int(t["resources"]["acceleratorCount"]) for t in tasks if t["state"] not in rules.terminal
    )


def _enter(record: dict[str, Any], state: str, at: datetime, rules: StateMachine) -> None:
    rules.check(record["state"], state)
    # History times are truncated to the millisecond, so `at` is never before the last entry.
    time = timestamp(at)
    record["state"] = state
    record["stateHistory"].append({"state": state, "time": time})
    record["updatedAt"] = time


def _dwell(state: str, record: Mapping[str, Any]) -> timedelta:
    seconds = {
        "QUEUED": QUEUED_SECONDS,
        "INITIALIZING": INITIALIZING_SECONDS,
        "RUNNING": float(record["durationSeconds"]),
    }
    return timedelta(seconds=seconds[state])


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))
