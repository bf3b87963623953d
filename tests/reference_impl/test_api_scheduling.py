"""reference_impl/api/scheduling.py over HTTP: task life cycle on a shifted clock, capacity
accounting (also under 30 concurrent submits), cancellation, visibility, list filters."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reference_impl.api.aggregation import write_entry
from reference_impl.ids import mint_resource_id
from reference_impl.tasks import INITIALIZING_SECONDS, QUEUED_SECONDS
from tests.reference_impl.samples import gpu_pool

READ, WRITE = "tasks:read", "tasks:write"
PROBLEMS = "https://cpin.example/spec/v1/problems/"
GPU = gpu_pool(8, [("FP16", 148, "TFLOPS")], costed=False)
STARTED = QUEUED_SECONDS + INITIALIZING_SECONDS


class Clock:
    """The node's clock, shifted by `offset` seconds (tokens stay valid: it only runs ahead)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def regional(node_factory: Callable[..., Any], clock: Clock) -> Any:
    running = node_factory("regional")
    running.node.now = clock
    return running


@pytest.fixture
def gpu(regional: Any) -> str:
    return register(regional, GPU)


def register(running: Any, body: dict[str, Any]) -> str:
    answer = running.client.post(
        "/v1/resources", json=body, headers=running.auth("catalogue:write")
    )
    assert answer.status_code == 201, answer.text
    resource_id: str = answer.json()["resourceId"]
    return resource_id


def submit(
    running: Any, resource_id: str, count: int = 1, *, duration: int = 60, **extra: Any
) -> Any:
    body = {
        "name": "粤语语音识别模型微调",
        "resourceId": resource_id,
        "resources": {"acceleratorCount": count},
        "executors": [{"image": "registry.gd.example.cn/asr/finetune:2.3.1", "command": ["train"]}],
        "durationSeconds": duration,
        **extra,
    }
    return running.client.post("/v1/tasks", json=body, headers=running.auth(WRITE))


def created(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 201, answer.text
    record: dict[str, Any] = answer.json()
    return record


def get(running: Any, task_id: str, headers: dict[str, str] | None = None) -> Any:
    return running.client.get(f"/v1/tasks/{task_id}", headers=headers or running.auth(READ))


def cancel(running: Any, task_id: str, headers: dict[str, str] | None = None) -> Any:
    return running.client.post(
        f"/v1/tasks/{task_id}/cancel", headers=headers or running.auth(WRITE)
    )


def capacity(running: Any, resource_id: str) -> dict[str, Any]:
    answer = running.client.get(f"/v1/resources/{resource_id}/capacity", headers=running.auth(READ))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert (
        body["acceleratorsAvailable"] == body["acceleratorsTotal"] - body["acceleratorsAllocated"]
    )
    return body


def problem_of(answer: Any, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEMS + slug
    return body


def audited(running: Any, action: str) -> list[str]:
    rows = running.node.store.rows("SELECT record FROM audit_events WHERE action = ?", (action,))
    return [json.loads(r["record"])["target"] for r in rows]


def task_count(running: Any) -> int:
    return int(running.node.store.row("SELECT COUNT(*) AS n FROM tasks")["n"])


# ---- createTask, getTask: life cycle --------------------------------------------------------


def test_create_answers_a_queued_task_with_location_and_audit(regional: Any, gpu: str) -> None:
    answer = submit(regional, gpu, 2, tags={"project": "asr-yue"})
    task = created(answer)
    assert answer.headers["Location"] == f"/v1/tasks/{task['taskId']}"
    assert task["state"] == "QUEUED"
    assert task["stateHistory"] == [{"state": "QUEUED", "time": task["createdAt"]}]
    assert task["nodeCode"] == "R4400001E"
    assert task["tags"] == {"project": "asr-yue"}
    assert "forwardedTo" not in task
    assert audited(regional, "task.created") == [task["taskId"]]
    assert get(regional, task["taskId"]).json() == task


def test_the_task_runs_on_the_clock_and_its_history_is_stored(
    regional: Any, gpu: str, clock: Clock
) -> None:
    task_id = created(submit(regional, gpu, duration=30))["taskId"]
    seen = []
    for offset in (QUEUED_SECONDS, STARTED, STARTED + 29, STARTED + 31):
        clock.offset = offset
        seen.append(get(regional, task_id).json()["state"])
    assert seen == ["INITIALIZING", "RUNNING", "RUNNING", "COMPLETE"]
    final = get(regional, task_id).json()
    assert [e["state"] for e in final["stateHistory"]] == [
        "QUEUED",
        "INITIALIZING",
        "RUNNING",
        "COMPLETE",
    ]
    times = [e["time"] for e in final["stateHistory"]]
    assert times == sorted(times) and final["updatedAt"] == times[-1]
    stored = regional.node.store.row(
        "SELECT state, record FROM tasks WHERE task_id = ?", (task_id,)
    )
    assert stored["state"] == "COMPLETE" and json.loads(stored["record"]) == final


def test_malformed_resource_ids_are_400(regional: Any, gpu: str) -> None:
    wrong_check = gpu[:-1] + ("A" if gpu[-1] != "A" else "B")
    problem_of(submit(regional, wrong_check), 400, "check-character-mismatch")
    problem_of(submit(regional, "R4400001E-XYZ-00000001A"), 400, "malformed-identifier")
    assert task_count(regional) == 0


# ---- unavailable and remote resources ---------------------------------------------------------


def test_unknown_and_withdrawn_resources_are_not_found(regional: Any, gpu: str) -> None:
    problem_of(submit(regional, mint_resource_id("R4400001E", "GPU", 999)), 404, "not-found")
    deleted = regional.client.delete(
        f"/v1/resources/{gpu}", headers=regional.auth("catalogue:write")
    )
    assert deleted.status_code == 204
    problem_of(submit(regional, gpu), 404, "not-found")
    assert task_count(regional) == 0


def test_a_resource_not_in_production_is_conflict(regional: Any) -> None:
    draining = register(regional, {**GPU, "servingState": "draining"})
    body = problem_of(submit(regional, draining), 409, "conflict")
    assert "draining" in body["detail"]
    assert task_count(regional) == 0


def test_remote_resources_wait_for_forwarding(regional: Any) -> None:
    """The federation hook: until forwarding exists the owning node counts as unreachable."""
    copy_id = mint_resource_id("I44C3801D", "GPU", 1)
    record = {
        **copy.deepcopy(GPU),
        "resourceId": copy_id,
        "issuer": "I44C3801D",
        "origin": "I44C3801D",
        "createdAt": "2026-03-03T04:00:00.000Z",
        "updatedAt": "2026-03-03T04:00:00.000Z",
    }
    with regional.node.store.transaction() as db:
        write_entry(db, record, origin="I44C3801D")
    problem_of(submit(regional, copy_id), 502, "upstream-unavailable")
    problem_of(
        submit(regional, mint_resource_id("I44C3801D", "NPU", 7)), 502, "upstream-unavailable"
    )
    assert task_count(regional) == 0
    answer = regional.client.get(f"/v1/resources/{copy_id}/capacity", headers=regional.auth(READ))
    problem_of(answer, 404, "not-found")


def test_a_resource_outside_the_named_selection_is_400(regional: Any, gpu: str) -> None:
    other = register(regional, GPU)
    selection_id = "2b9f4d6e-8a1c-4e3b-9d5f-7c0a2e4b6d81"
    with regional.node.store.transaction() as db:
        db.execute(
            "INSERT INTO selections (selection_id, created_at, record) VALUES (?, ?, ?)",
            (
                selection_id,
                "2026-03-05T03:05:00.000Z",
                json.dumps({"candidates": [{"resourceId": other}]}),
            ),
        )
    refused = problem_of(submit(regional, gpu, selectionId=selection_id), 400, "invalid-request")
    assert [e["rule"] for e in refused["errors"]] == ["CPIN-SCHED-016"]  # valid data: says why
    created(submit(regional, other, selectionId=selection_id))


# ---- capacity -------------------------------------------------------------------------------


def test_capacity_is_never_oversold_and_released_on_terminal_states(
    regional: Any, gpu: str, clock: Clock
) -> None:
    assert capacity(regional, gpu)["acceleratorsAvailable"] == 8
    short = created(submit(regional, gpu, 5, duration=10))["taskId"]
    assert capacity(regional, gpu)["acceleratorsAllocated"] == 5
    body = problem_of(submit(regional, gpu, 4), 409, "capacity-exhausted")
    assert "3 free" in body["detail"]
    assert task_count(regional) == 1
    held = created(submit(regional, gpu, 3, duration=600))["taskId"]
    assert capacity(regional, gpu)["acceleratorsAvailable"] == 0
    clock.offset = STARTED + 10
    assert capacity(regional, gpu)["acceleratorsAllocated"] == 3
    assert get(regional, short).json()["state"] == "COMPLETE"
    assert cancel(regional, held).status_code == 200
    assert capacity(regional, gpu) | {"asOf": None} == {
        "resourceId": gpu,
        "acceleratorsTotal": 8,
        "acceleratorsAllocated": 0,
        "acceleratorsAvailable": 8,
        "asOf": None,
    }


@pytest.mark.parametrize("count", [1, 3])
def test_concurrent_submits_never_oversell(regional: Any, gpu: str, count: int) -> None:
    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(lambda _: submit(regional, gpu, count), range(30)))
    statuses = Counter(a.status_code for a in answers)
    accepted = 8 // count
    assert statuses == {201: accepted, 409: 30 - accepted}
    for answer in answers:
        if answer.status_code == 409:
            problem_of(answer, 409, "capacity-exhausted")
    assert capacity(regional, gpu)["acceleratorsAllocated"] == accepted * count
    assert task_count(regional) == accepted


def test_capacity_of_unknown_or_foreign_resources_is_not_found(regional: Any) -> None:
    for resource_id in (
        mint_resource_id("R4400001E", "GPU", 5),
        mint_resource_id("I44C3801D", "GPU", 5),
    ):
        answer = regional.client.get(
            f"/v1/resources/{resource_id}/capacity", headers=regional.auth(READ)
        )
        problem_of(answer, 404, "not-found")


# ---- cancelTask -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "before"), [(0, "QUEUED"), (QUEUED_SECONDS, "INITIALIZING"), (5, "RUNNING")]
)
def test_cancel_a_live_task(
    regional: Any, gpu: str, clock: Clock, offset: float, before: str
) -> None:
    task_id = created(submit(regional, gpu, 8))["taskId"]
    clock.offset = offset
    answer = cancel(regional, task_id)
    assert answer.status_code == 200, answer.text
    task = answer.json()
    assert task["state"] == "CANCELED"
    assert [e["state"] for e in task["stateHistory"]][-2:] == [before, "CANCELED"]
    assert get(regional, task_id).json() == task
    assert audited(regional, "task.canceled") == [task_id]
    assert capacity(regional, gpu)["acceleratorsAvailable"] == 8


def test_cancel_of_a_terminal_task_is_refused_and_changes_nothing(
    regional: Any, gpu: str, clock: Clock
) -> None:
    complete = created(submit(regional, gpu, duration=1))["taskId"]
    canceled = created(submit(regional, gpu))["taskId"]
    assert cancel(regional, canceled).status_code == 200
    clock.offset = STARTED + 2
    for task_id in (complete, canceled):
        before = get(regional, task_id).json()
        problem_of(cancel(regional, task_id), 409, "illegal-state-transition")
        assert get(regional, task_id).json() == before
    assert audited(regional, "task.canceled") == [canceled]


# ---- visibility and listTasks ---------------------------------------------------------------


def test_tasks_are_visible_to_their_creator_only(regional: Any, gpu: str) -> None:
    task_id = created(submit(regional, gpu))["taskId"]
    token, _ = regional.node.security.issue("other-client", {READ, WRITE})
    other = {"Authorization": f"Bearer {token}"}
    problem_of(get(regional, task_id, other), 404, "not-found")
    problem_of(cancel(regional, task_id, other), 404, "not-found")
    assert regional.client.get("/v1/tasks", headers=other).json() == {"items": []}
    assert get(regional, task_id).json()["state"] == "QUEUED"
    problem_of(get(regional, "00000000-0000-4000-8000-000000000000"), 404, "not-found")


def list_all(running: Any, **query: Any) -> list[str]:
    ids: list[str] = []
    params = {"limit": 2, **query}
    while True:
        answer = running.client.get("/v1/tasks", params=params, headers=running.auth(READ))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["items"]) <= params["limit"]
        ids += [item["taskId"] for item in body["items"]]
        if "nextCursor" not in body:
            return ids
        params["cursor"] = body["nextCursor"]


def test_list_newest_first_with_filters_across_pages(regional: Any, gpu: str, clock: Clock) -> None:
    other = register(regional, GPU)
    on_gpu = [created(submit(regional, gpu, duration=1))["taskId"] for _ in range(3)]
    on_other = [created(submit(regional, other, duration=600))["taskId"] for _ in range(2)]
    assert cancel(regional, on_gpu[0]).status_code == 200
    clock.offset = STARTED + 2
    newest_first = list(reversed(on_gpu + on_other))
    assert list_all(regional) == newest_first
    assert list_all(regional, limit=20) == newest_first
    assert list_all(regional, resourceId=other) == list(reversed(on_other))
    assert list_all(regional, state="RUNNING") == list(reversed(on_other))
    assert list_all(regional, state="COMPLETE") == list(reversed(on_gpu[1:]))
    assert list_all(regional, state="CANCELED", resourceId=gpu) == [on_gpu[0]]
    assert list_all(regional, state="QUEUED") == []


def test_a_foreign_cursor_is_400(regional: Any) -> None:
    answer = regional.client.get(
        "/v1/tasks", params={"cursor": "bm90LWEtc2Vx"}, headers=regional.auth(READ)
    )
    problem_of(answer, 400, "invalid-request")
