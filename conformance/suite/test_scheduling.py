"""Scheduling class: TES-style tasks, their state machine, cancellation, capacity that is never
oversold, and forwarding to the node that owns the resource."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.provisioning import Provisioner
from conformance.session import Certifier, RequirementFailure
from conformance.suite._scheduling import (
    CANCEL_DEADLINE_S,
    MIRROR_DEADLINE_S,
    TERMINAL_DEADLINE_S,
    Placement,
    capacity,
    create_task,
    get_task,
    own_placement,
    pages,
    peer_placement,
    poll_task,
    task_body,
    terminal_states,
    transitions,
    unknown_resource_id,
)
from spec import Spec

TASK = "schemas/task.json"
CONCURRENT_SUBMITS = 8


@pytest.fixture(scope="session")
def peer(
    node: NodeClient, role: str, service_info: dict[str, Any], certifier: Certifier
) -> Iterator[Placement]:
    with peer_placement(node, role, service_info["nodeCode"], certifier) as found:
        yield found


@pytest.fixture(scope="session")
def placement(
    request: pytest.FixtureRequest,
    node: NodeClient,
    role: str,
    provision: Provisioner,
    service_info: dict[str, Any],
) -> Placement:
    """Where the target runs tasks: its own catalogue, or (national) a regional peer's."""
    if role == "national":
        remote: Placement = request.getfixturevalue("peer")
        return remote
    return own_placement(node, provision, service_info)


def _state_failure(message: str, *ids: str) -> RequirementFailure:
    return RequirementFailure(message, ids)


def _check_history(task: dict[str, Any], spec: Spec) -> None:
    """CPIN-SCHED-002 (every step allowed) and CPIN-SCHED-003 (order, times, last = current)."""
    history = task["stateHistory"]
    allowed = transitions(spec)
    if history[0]["state"] != "QUEUED":
        raise _state_failure(f"the history starts with {history[0]['state']}, not QUEUED",
                             "CPIN-SCHED-002", "CPIN-SCHED-003")  # fmt: skip
    for before, after in pairwise(history):
        if after["state"] not in allowed[before["state"]]:
            raise _state_failure(
                f"task {task['taskId']} moved {before['state']} -> {after['state']}, which the "
                f"task-state code list does not allow: {[h['state'] for h in history]}",
                "CPIN-SCHED-002",
            )
        if _instant(after["time"]) < _instant(before["time"]):
            raise _state_failure(
                f"stateHistory times go backwards: {before} then {after}", "CPIN-SCHED-003"
            )
    if history[-1]["state"] != task["state"]:
        raise _state_failure(
            f"the last stateHistory entry is {history[-1]['state']}, the task is {task['state']}",
            "CPIN-SCHED-003",
        )
    for entry in history:
        if not entry["time"].endswith("Z"):
            raise _state_failure(f"history time {entry['time']} is not UTC (Z)", "CPIN-SCHED-003")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _create(
    node: NodeClient, provision: Provisioner, contract: Contract, body: dict[str, Any]
) -> dict[str, Any]:
    response = create_task(node, provision, body)
    expect_status(response, 201)
    return dict(contract.expect_json(response, TASK))


@pytest.mark.requirement("CPIN-SCHED-001")
def test_created_task_is_queued_with_one_entry_history(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement
) -> None:
    resource = placement.resource(2)
    response = create_task(node, provision, task_body(provision.namespace,
                                                      resource["resourceId"], 1, 30))  # fmt: skip
    expect_status(response, 201)
    task = contract.expect_json(response, TASK)
    assert task["state"] == "QUEUED", f"a new task is {task['state']}, the spec requires QUEUED"
    states = [entry["state"] for entry in task["stateHistory"]]
    assert states == ["QUEUED"], f"a new task's stateHistory is {states}, not [QUEUED] alone"
    assert task["resourceId"] == resource["resourceId"], "the task names another resource"


@pytest.mark.requirement("CPIN-SCHED-002", "CPIN-SCHED-003")
def test_task_moves_only_along_allowed_transitions(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement, spec: Spec
) -> None:
    resource = placement.resource(2)
    task = _create(node, provision, contract, task_body(provision.namespace,
                                                        resource["resourceId"]))  # fmt: skip
    terminal = terminal_states(spec)
    last, readings = poll_task(node, task["taskId"], lambda t: t["state"] in terminal,
                               TERMINAL_DEADLINE_S)  # fmt: skip
    time.sleep(0.3)
    readings.append(get_task(node, task["taskId"]))
    previous: list[dict[str, Any]] = task["stateHistory"]
    for reading in readings:
        contract.expect_valid(reading, TASK, "the getTask body")
        _check_history(reading, spec)
        history = reading["stateHistory"]
        if history[: len(previous)] != previous:
            raise _state_failure(
                f"the task's history was rewritten: {previous} became {history}",
                "CPIN-SCHED-002", "CPIN-SCHED-003",
            )  # fmt: skip
        previous = history
    precondition(last["state"] in terminal,
                 f"a 1 s task was still {last['state']} after {TERMINAL_DEADLINE_S} s")  # fmt: skip
    if readings[-1]["state"] != last["state"]:
        raise _state_failure(
            f"the task left terminal state {last['state']} for {readings[-1]['state']}",
            "CPIN-SCHED-002",
        )


@pytest.mark.requirement("CPIN-SCHED-004")
def test_cancel_of_a_live_task_ends_in_canceled(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement
) -> None:
    resource = placement.resource(2)
    task = _create(node, provision, contract, task_body(provision.namespace,
                                                        resource["resourceId"], 1, 60))  # fmt: skip
    response = node.post(f"/v1/tasks/{task['taskId']}/cancel")
    expect_status(response, 200)
    contract.expect_json(response, TASK)
    last, _ = poll_task(node, task["taskId"], lambda t: t["state"] == "CANCELED",
                        CANCEL_DEADLINE_S)  # fmt: skip
    assert last["state"] == "CANCELED", (
        f"{CANCEL_DEADLINE_S:g} s after cancelTask answered 200 the task is {last['state']}, "
        "the spec requires CANCELED"
    )


@pytest.mark.requirement("CPIN-SCHED-005", "CPIN-SCHED-002")
def test_cancel_of_a_terminal_task_is_refused_and_changes_nothing(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement, spec: Spec
) -> None:
    resource = placement.resource(2)
    label = provision.namespace
    finishing = _create(node, provision, contract, task_body(label, resource["resourceId"]))
    canceled = _create(node, provision, contract, task_body(label, resource["resourceId"]))
    answer = node.post(f"/v1/tasks/{canceled['taskId']}/cancel")
    expect_status(answer, 200)
    terminal = terminal_states(spec)
    done, _ = poll_task(node, finishing["taskId"], lambda t: t["state"] in terminal,
                        TERMINAL_DEADLINE_S)  # fmt: skip
    precondition(done["state"] in terminal,
                 f"a 1 s task was still {done['state']} after {TERMINAL_DEADLINE_S} s")  # fmt: skip
    time.sleep(0.3)  # the canceled task's own 1 s would be over by now
    for task in (done, get_task(node, canceled["taskId"])):
        refused = node.post(f"/v1/tasks/{task['taskId']}/cancel")
        if refused.status_code != 409:
            raise _state_failure(
                f"cancelTask of a {task['state']} task answered {refused.status_code}, the spec "
                "requires 409 illegal-state-transition", "CPIN-SCHED-005", "CPIN-SCHED-002",
            )  # fmt: skip
        contract.expect_problem(refused, 409, "illegal-state-transition")
        after = get_task(node, task["taskId"])
        if (after["state"], after["stateHistory"]) != (task["state"], task["stateHistory"]):
            raise _state_failure(
                f"a {task['state']} task changed to {after['state']} "
                f"({[h['state'] for h in after['stateHistory']]})",
                "CPIN-SCHED-005", "CPIN-SCHED-002",
            )  # fmt: skip
    still = get_task(node, canceled["taskId"])
    if still["state"] != "CANCELED":
        raise _state_failure(f"a CANCELED task became {still['state']}", "CPIN-SCHED-002")


@pytest.mark.requirement("CPIN-SCHED-006")
def test_task_beyond_available_capacity_is_refused(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement
) -> None:
    resource = placement.resource(4)
    rid, label = resource["resourceId"], provision.namespace
    _create(node, provision, contract, task_body(label, rid, 3, 60))
    refused = create_task(node, provision, task_body(label, rid, 2, 60))
    contract.expect_problem(refused, 409, "capacity-exhausted")
    too_big = create_task(node, provision, task_body(label, rid, 5, 60))
    contract.expect_problem(too_big, 409, "capacity-exhausted")
    counts = [t["resources"]["acceleratorCount"] for t in pages(node, "/v1/tasks",
                                                                {"resourceId": rid})]  # fmt: skip
    assert sorted(counts) == [3], f"tasks on the resource after two refusals: {counts}, not [3]"


@pytest.mark.requirement("CPIN-SCHED-007")
def test_concurrent_submissions_never_oversell(
    node: NodeClient, provision: Provisioner, placement: Placement, contract: Contract
) -> None:
    total = 4
    resource = placement.resource(total)
    body = task_body(provision.namespace, resource["resourceId"], 1, 60)
    node.token()  # one token for all threads, fetched before they start
    with ThreadPoolExecutor(max_workers=CONCURRENT_SUBMITS) as pool:
        answers = list(pool.map(lambda _: create_task(node, provision, body),
                                range(CONCURRENT_SUBMITS)))  # fmt: skip
    accepted = [a for a in answers if a.status_code == 201]
    assert len(accepted) <= total, (
        f"{len(accepted)} concurrent 1-accelerator tasks were accepted on a resource with "
        f"{total} accelerators"
    )
    for answer in answers:
        if answer.status_code != 201:
            contract.expect_problem(answer, 409, "capacity-exhausted")
    listed = list(pages(node, "/v1/tasks", {"resourceId": resource["resourceId"]}))
    live = sum(t["resources"]["acceleratorCount"] for t in listed if t["state"] != "CANCELED")
    assert live <= total, f"the node lists tasks holding {live} of {total} accelerators"


@pytest.mark.requirement("CPIN-SCHED-008", "CPIN-SCHED-009")
def test_capacity_follows_the_tasks_and_is_released_on_terminal_states(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement, spec: Spec
) -> None:
    resource = placement.resource(4)
    rid, label = resource["resourceId"], provision.namespace
    terminal = terminal_states(spec)

    def reading(expected_allocated: int, when: str, requirement: str) -> None:
        response = node.get(f"/v1/resources/{rid}/capacity")
        expect_status(response, 200)
        figures = contract.expect_json(response, "schemas/capacity.json")
        total, held = figures["acceleratorsTotal"], figures["acceleratorsAllocated"]
        if figures["acceleratorsAvailable"] != total - held or figures["acceleratorsAvailable"] < 0:
            raise _state_failure(f"{when}: capacity {figures} breaks available = total - "
                                 "allocated", "CPIN-SCHED-009")  # fmt: skip
        if total != 4:
            raise _state_failure(f"{when}: acceleratorsTotal {total}, the resource has 4",
                                 "CPIN-SCHED-009")  # fmt: skip
        if held != expected_allocated:
            raise _state_failure(
                f"{when}: acceleratorsAllocated is {held}, the live tasks hold "
                f"{expected_allocated}",
                requirement,
            )

    reading(0, "before any task", "CPIN-SCHED-009")
    short = _create(node, provision, contract, task_body(label, rid, 2, 1))
    long = _create(node, provision, contract, task_body(label, rid, 1, 60))
    reading(3, "with a 2- and a 1-accelerator task live", "CPIN-SCHED-009")
    expect_status(node.post(f"/v1/tasks/{long['taskId']}/cancel"), 200)
    canceled = get_task(node, long["taskId"])
    precondition(canceled["state"] == "CANCELED", "the canceled task is not CANCELED yet")
    done, _ = poll_task(node, short["taskId"], lambda t: t["state"] in terminal,
                        TERMINAL_DEADLINE_S)  # fmt: skip
    precondition(done["state"] in terminal,
                 f"a 1 s task was still {done['state']} after {TERMINAL_DEADLINE_S} s")  # fmt: skip
    reading(0, "once both tasks were terminal", "CPIN-SCHED-008")


@pytest.mark.requirement("CPIN-SCHED-010", "CPIN-SCHED-011")
def test_task_on_a_remote_resource_is_forwarded_and_mirrored(
    node: NodeClient, provision: Provisioner, contract: Contract, peer: Placement, spec: Spec
) -> None:
    resource = peer.resource(4)
    rid = resource["resourceId"]
    task = _create(node, provision, contract, task_body(provision.namespace, rid, 3, 1))
    missing = [key for key in ("forwardedTo", "forwardedTaskId") if key not in task]
    if missing or task["nodeCode"] != peer.node_code:
        raise _state_failure(
            f"a task on {rid}, held by {peer.node_code}, was answered with nodeCode "
            f"{task['nodeCode']!r} and without {missing or 'nothing'}", "CPIN-SCHED-010",
        )  # fmt: skip
    if task["forwardedTo"] == peer.node_code:
        held = capacity(peer.client, rid)["acceleratorsAllocated"]
        if held != 3:
            raise _state_failure(
                f"{peer.node_code} shows {held} accelerators allocated on {rid}, not the 3 of "
                "the forwarded task: the task does not exist there", "CPIN-SCHED-010",
            )  # fmt: skip
    ends = time.monotonic() + TERMINAL_DEADLINE_S
    while capacity(peer.client, rid)["acceleratorsAllocated"] and time.monotonic() < ends:
        time.sleep(0.2)
    precondition(capacity(peer.client, rid)["acceleratorsAllocated"] == 0,
                 f"the 1 s task did not end at {peer.node_code}")  # fmt: skip
    terminal = terminal_states(spec)
    mirrored, _ = poll_task(node, task["taskId"], lambda t: t["state"] in terminal,
                            MIRROR_DEADLINE_S)  # fmt: skip
    if mirrored["state"] not in terminal:
        raise _state_failure(
            f"{MIRROR_DEADLINE_S:g} s after the task ended at {peer.node_code} the receiving "
            f"node still shows {mirrored['state']}", "CPIN-SCHED-011",
        )  # fmt: skip


@pytest.mark.requirement("CPIN-SCHED-012")
def test_task_on_an_unavailable_resource_is_refused(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement
) -> None:
    label = provision.namespace
    unknown = unknown_resource_id(placement.node_code)
    withdrawn = placement.resource(2)["resourceId"]
    expect_status(placement.client.delete(f"/v1/resources/{withdrawn}"), 204)
    draining = placement.resource(2, serving_state="draining")["resourceId"]
    for rid, status, slug in ((unknown, 404, "not-found"), (withdrawn, 404, "not-found"),
                              (draining, 409, "conflict")):  # fmt: skip
        answer = create_task(node, provision, task_body(label, rid, 1, 60))
        contract.expect_problem(answer, status, slug)
        created = list(pages(node, "/v1/tasks", {"resourceId": rid}))
        assert not created, f"the refused task on {rid} was created: {created[0]['taskId']}"


@pytest.mark.requirement("CPIN-SCHED-013")
def test_task_list_filtered_by_state_gives_exactly_that_state(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement
) -> None:
    resource = placement.resource(4)
    rid, label = resource["resourceId"], provision.namespace
    canceled = _create(node, provision, contract, task_body(label, rid, 1, 60))
    running = _create(node, provision, contract, task_body(label, rid, 1, 60))
    expect_status(node.post(f"/v1/tasks/{canceled['taskId']}/cancel"), 200)
    current, _ = poll_task(node, running["taskId"], lambda t: t["state"] == "RUNNING", 5.0)
    precondition(current["state"] == "RUNNING", f"a 60 s task is {current['state']}")
    for state, mine, other in (("CANCELED", canceled, running), ("RUNNING", running, canceled)):
        listed = list(pages(node, "/v1/tasks", {"state": state, "resourceId": rid}))
        wrong = [t["state"] for t in listed if t["state"] != state]
        assert not wrong, f"listTasks?state={state} returned tasks in {sorted(set(wrong))}"
        ids = {t["taskId"] for t in listed}
        assert mine["taskId"] in ids, f"listTasks?state={state} misses a task in {state}"
        assert other["taskId"] not in ids, f"listTasks?state={state} returns another task"
        first = node.get("/v1/tasks", params={"state": state})
        expect_status(first, 200)
        wrong = [t["state"] for t in body_of(first)["items"] if t["state"] != state]
        assert not wrong, f"listTasks?state={state} returned tasks in {sorted(set(wrong))}"


@pytest.mark.requirement("CPIN-SCHED-014")
def test_task_is_hidden_from_other_clients(
    node: NodeClient,
    limited_node: NodeClient,
    provision: Provisioner,
    contract: Contract,
    placement: Placement,
) -> None:
    resource = placement.resource(2)
    rid = resource["resourceId"]
    task = _create(node, provision, contract, task_body(provision.namespace, rid, 1, 60))
    contract.expect_problem(limited_node.get(f"/v1/tasks/{task['taskId']}"), 404, "not-found")
    listed = {t["taskId"] for t in pages(limited_node, "/v1/tasks", {"resourceId": rid})}
    assert task["taskId"] not in listed, "listTasks shows the task to another client"


@pytest.mark.requirement("CPIN-SCHED-016")
def test_task_outside_its_named_selection_is_refused(
    node: NodeClient, provision: Provisioner, contract: Contract, placement: Placement
) -> None:
    resource = placement.resource(2)
    demand = {"acceleratorType": "NPU", "precision": "INT8", "acceleratorCount": 1}
    made = node.post("/v1/selections", json=demand)
    precondition(made.status_code == 201, f"createSelection answered {made.status_code}")
    selection = body_of(made)
    candidates = {c.get("resourceId") for c in selection.get("candidates", [])}
    precondition(resource["resourceId"] not in candidates, "the GPU pool matched an NPU demand")
    body = {**task_body(provision.namespace, resource["resourceId"], 1, 60),
            "selectionId": selection["selectionId"]}  # fmt: skip
    contract.expect_problem(create_task(node, provision, body), 400, "invalid-request")
