"""Faults of the scheduling class: task creation, the state machine, cancellation, capacity,
forwarding, visibility and the selection check."""

from __future__ import annotations

import asyncio
import copy
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from reference_impl.api import scheduling as api
from reference_impl.calls import Call, Handler, Reply
from reference_impl.faults import FaultSite, fault
from reference_impl.node import json_record, timestamp
from reference_impl.problems import Problem
from reference_impl.tasks import INITIALIZING_SECONDS, QUEUED_SECONDS, allocated, machine, new_task

SCHEDULING_ROLES = ["regional", "industry", "national"]
OWN_CAPACITY_ROLES = ["regional", "industry"]


def _reply_rewrite(
    site: FaultSite, operation: str, rewrite: Callable[[Call, Reply], Reply]
) -> None:
    """Pass the answer of `operation` through `rewrite(call, reply) -> Reply`."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            return rewrite(call, await handler(call))

        return wrapped

    site.wrap_handler(operation, wrap)


def _tasks_of(reply: Reply) -> list[dict[str, Any]]:
    body = reply.body if isinstance(reply.body, dict) else {}
    return list(body.get("items", [body] if "taskId" in body else []))


async def _admit(
    call: Call, *, against_total: bool = False, pause_s: float | None = None,
    any_state: bool = False,
) -> Reply:  # fmt: skip
    """createTask for the node's own resources with a planted admission bug: the request
    judged against the total instead of what is free, the check made in one transaction and
    the insert `pause_s` later in another, or the serving state not looked at."""
    node, body = call.node, call.body
    resource_id = body["resourceId"]
    api._check_selection(node, body)
    own = api._own_code(node)
    if api._held_elsewhere(node.store.row(api._RESOURCE, (resource_id,)), resource_id, own):
        return await api._forward(call)
    task = new_task(str(uuid.uuid4()), body, own, node.now())
    with node.store.transaction() as db:
        resource = db.execute(api._RESOURCE, (resource_id,)).fetchone()
        if resource is None or resource["withdrawn_at"] is not None:
            raise Problem("not-found", f"No resource {resource_id} in the catalogue.")
        record = json_record(resource)
        total = int(record.get("capacity", {}).get("acceleratorsTotal", 0))
        if not any_state:
            total = api._admissible_total(record)
        live = [] if against_total else api._live(db, node, resource_id)
        held = allocated(live, machine(node.spec))
        if int(body["resources"]["acceleratorCount"]) > total - held:
            raise Problem("capacity-exhausted", f"{resource_id} has too few free accelerators.")
        if pause_s is None:
            _insert(db, call, task)
    if pause_s is not None:
        await asyncio.sleep(pause_s)
        with node.store.transaction() as db:
            _insert(db, call, task)
    return Reply(201, task, {"Location": f"/v1/tasks/{task['taskId']}"})


def _insert(db: sqlite3.Connection, call: Call, task: Mapping[str, Any]) -> None:
    db.execute(
        "INSERT INTO tasks (task_id, owner, resource_id, state, record) VALUES (?, ?, ?, ?, ?)",
        (task["taskId"], api._owner(call), task["resourceId"], task["state"], api._dump(task)),
    )


@fault(
    "task-created-with-200",
    breaks=["CPIN-SCHED-001"],
    summary="createTask answers 200 instead of 201 Created",
    roles=SCHEDULING_ROLES,
)
def task_created_with_200(site: FaultSite) -> None:
    def rewrite(call: Call, reply: Reply) -> Reply:
        return Reply(200, reply.body, reply.headers) if reply.status == 201 else reply

    _reply_rewrite(site, "createTask", rewrite)


@fault(
    "initializing-state-skipped",
    breaks=["CPIN-SCHED-002"],
    summary="tasks are reported going from QUEUED straight to RUNNING (INITIALIZING hidden)",
    roles=SCHEDULING_ROLES,
)
def initializing_state_skipped(site: FaultSite) -> None:
    def rewrite(call: Call, reply: Reply) -> Reply:
        for task in _tasks_of(reply):
            task["stateHistory"] = [
                entry for entry in task["stateHistory"] if entry["state"] != "INITIALIZING"
            ]
            if task["state"] == "INITIALIZING":
                task["state"] = "QUEUED"
        return reply

    _reply_rewrite(site, "getTask", rewrite)
    _reply_rewrite(site, "listTasks", rewrite)


@fault(
    "state-history-newest-first",
    breaks=["CPIN-SCHED-003"],
    summary="stateHistory is listed newest first",
    roles=SCHEDULING_ROLES,
)
def state_history_newest_first(site: FaultSite) -> None:
    def rewrite(call: Call, reply: Reply) -> Reply:
        for task in _tasks_of(reply):
            task["stateHistory"].reverse()
        return reply

    _reply_rewrite(site, "getTask", rewrite)


@fault(
    "cancel-ignored",
    breaks=["CPIN-SCHED-004"],
    summary="cancelTask answers 200 with the task but never cancels it",
    roles=SCHEDULING_ROLES,
)
def cancel_ignored(site: FaultSite) -> None:
    get_task = site.handlers["getTask"]

    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            return await get_task(call)

        return wrapped

    site.wrap_handler("cancelTask", wrap)


@fault(
    "terminal-task-cancel-accepted",
    breaks=["CPIN-SCHED-005", "CPIN-SCHED-002"],
    summary="cancelTask of a COMPLETE or CANCELED task answers 200 and marks it CANCELED",
    roles=SCHEDULING_ROLES,
)
def terminal_task_cancel_accepted(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            try:
                return await handler(call)
            except Problem as problem:
                if problem.slug != "illegal-state-transition":
                    raise
            node = call.node
            with node.store.transaction() as db:
                row = db.execute(
                    "SELECT record FROM tasks WHERE task_id = ?", (call.path["taskId"],)
                ).fetchone()
                task = json_record(row)
                task["state"] = "CANCELED"
                task["stateHistory"].append({"state": "CANCELED", "time": timestamp(node.now())})
                api._save(db, task)
            return Reply(200, task)

        return wrapped

    site.wrap_handler("cancelTask", wrap)


@fault(
    "canceled-task-completes",
    breaks=["CPIN-SCHED-002"],
    summary="a canceled task is reported COMPLETE once its declared run time is over",
    roles=SCHEDULING_ROLES,
)
def canceled_task_completes(site: FaultSite) -> None:
    def rewrite(call: Call, reply: Reply) -> Reply:
        for task in _tasks_of(reply):
            if task["state"] != "CANCELED" or "forwardedTo" in task:
                continue
            created = datetime.fromisoformat(task["createdAt"].replace("Z", "+00:00"))
            run = QUEUED_SECONDS + INITIALIZING_SECONDS + task["durationSeconds"]
            ends = created + timedelta(seconds=run)
            if ends <= call.node.now():
                task["state"] = "COMPLETE"
                task["stateHistory"].append({"state": "COMPLETE", "time": timestamp(ends)})
        return reply

    _reply_rewrite(site, "getTask", rewrite)


def _replace_create(site: FaultSite, **bug: Any) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            return await _admit(call, **bug)

        return wrapped

    site.wrap_handler("createTask", wrap)


@fault(
    "capacity-checked-against-total",
    breaks=["CPIN-SCHED-006"],
    summary="createTask compares the request with the resource's total, not what is free",
    roles=SCHEDULING_ROLES,
)
def capacity_checked_against_total(site: FaultSite) -> None:
    _replace_create(site, against_total=True)


@fault(
    "capacity-check-races",
    breaks=["CPIN-SCHED-007"],
    summary="capacity is checked in one transaction and the task inserted in a later one",
    roles=SCHEDULING_ROLES,
)
def capacity_check_races(site: FaultSite) -> None:
    _replace_create(site, pause_s=0.05)


@fault(
    "draining-resource-accepts-tasks",
    breaks=["CPIN-SCHED-012"],
    summary="createTask places tasks on resources whose serving state is not production",
    roles=SCHEDULING_ROLES,
)
def draining_resource_accepts_tasks(site: FaultSite) -> None:
    _replace_create(site, any_state=True)


@fault(
    "capacity-not-released-on-cancel",
    breaks=["CPIN-SCHED-008"],
    summary="getResourceCapacity still counts the accelerators of canceled tasks",
    roles=OWN_CAPACITY_ROLES,
)
def capacity_not_released_on_cancel(site: FaultSite) -> None:
    def rewrite(call: Call, reply: Reply) -> Reply:
        if reply.status != 200:
            return reply
        rows = call.node.store.rows(
            "SELECT record FROM tasks WHERE resource_id = ? AND state = 'CANCELED'",
            (call.path["resourceId"],),
        )
        held = sum(int(json_record(r)["resources"]["acceleratorCount"]) for r in rows)
        body = dict(reply.body)
        body["acceleratorsAllocated"] = min(body["acceleratorsTotal"],
                                            body["acceleratorsAllocated"] + held)  # fmt: skip
        body["acceleratorsAvailable"] = body["acceleratorsTotal"] - body["acceleratorsAllocated"]
        return Reply(200, body, reply.headers)

    _reply_rewrite(site, "getResourceCapacity", rewrite)


@fault(
    "capacity-available-is-total",
    breaks=["CPIN-SCHED-009"],
    summary="getResourceCapacity reports every accelerator as available, allocated or not",
    roles=OWN_CAPACITY_ROLES,
)
def capacity_available_is_total(site: FaultSite) -> None:
    def rewrite(call: Call, reply: Reply) -> Reply:
        if reply.status == 200:
            reply.body["acceleratorsAvailable"] = reply.body["acceleratorsTotal"]
        return reply

    _reply_rewrite(site, "getResourceCapacity", rewrite)


@fault(
    "remote-task-kept-locally",
    breaks=["CPIN-SCHED-010"],
    summary="a task on another node's resource is queued here and never forwarded",
    roles=SCHEDULING_ROLES,
)
def remote_task_kept_locally(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            node, body = call.node, call.body
            own = api._own_code(node)
            row = node.store.row(api._RESOURCE, (body["resourceId"],))
            if not api._held_elsewhere(row, body["resourceId"], own):
                return await handler(call)
            task = new_task(str(uuid.uuid4()), body, own, node.now())
            with node.store.transaction() as db:
                _insert(db, call, task)
            return Reply(201, task, {"Location": f"/v1/tasks/{task['taskId']}"})

        return wrapped

    site.wrap_handler("createTask", wrap)


@fault(
    "forwarded-state-frozen",
    breaks=["CPIN-SCHED-011"],
    summary="a forwarded task keeps showing the state the owning node gave when it was created",
    roles=SCHEDULING_ROLES,
)
def forwarded_state_frozen(site: FaultSite) -> None:
    first_answers: dict[str, dict[str, Any]] = {}

    def remember(call: Call, reply: Reply) -> Reply:
        if reply.status == 201 and "forwardedTo" in reply.body:
            first_answers[reply.body["taskId"]] = copy.deepcopy(reply.body)
        return reply

    def frozen(call: Call, reply: Reply) -> Reply:
        first = first_answers.get(reply.body.get("taskId", ""))
        return reply if first is None else Reply(200, copy.deepcopy(first), reply.headers)

    _reply_rewrite(site, "createTask", remember)
    _reply_rewrite(site, "getTask", frozen)


@fault(
    "task-state-filter-ignored",
    breaks=["CPIN-SCHED-013"],
    summary="listTasks ignores its state filter",
    roles=SCHEDULING_ROLES,
)
def task_state_filter_ignored(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            call.query = {k: v for k, v in call.query.items() if k != "state"}
            return await handler(call)

        return wrapped

    site.wrap_handler("listTasks", wrap)


@fault(
    "tasks-visible-to-every-client",
    breaks=["CPIN-SCHED-014"],
    summary="getTask answers any client's task to every client",
    roles=SCHEDULING_ROLES,
)
def tasks_visible_to_every_client(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            try:
                return await handler(call)
            except Problem as problem:
                row = call.node.store.row(
                    "SELECT record FROM tasks WHERE task_id = ?", (call.path["taskId"],)
                )
                if problem.slug != "not-found" or row is None:
                    raise
                return Reply(200, json_record(row))

        return wrapped

    site.wrap_handler("getTask", wrap)


@fault(
    "selection-not-checked",
    breaks=["CPIN-SCHED-016"],
    summary="createTask takes a selectionId without looking at the selection's candidates",
    roles=SCHEDULING_ROLES,
)
def selection_not_checked(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            body: Mapping[str, Any] = call.body
            call.body = {k: v for k, v in body.items() if k != "selectionId"}
            reply = await handler(call)
            if reply.status == 201 and "selectionId" in body:
                reply.body = {**copy.deepcopy(reply.body), "selectionId": body["selectionId"]}
            return reply

        return wrapped

    site.wrap_handler("createTask", wrap)
