"""scheduling: TES-style tasks on the node's own resources, with capacity never oversold.

A task's state is derived from the clock (reference_impl.tasks) and written back whenever the
task is read, so the stored record always carries the history up to the last read. Admission
reads the resource, brings its tasks up to date, sums what they hold and inserts the new task
in one `BEGIN IMMEDIATE` transaction: concurrent submits are serialised by the write lock and
can never together take more than was free (CPIN-SCHED-006, CPIN-SCHED-007).

A task belongs to the client that created it (`owner`); everyone else gets 404 (CPIN-SCHED-014).
A task for a resource whose record of origin another node holds is created at that node
through `node.federation` and mirrored here: `forwardedTo`/`forwardedTaskId` name it, getTask
and cancelTask ask the owner (CPIN-SCHED-010/011, CPIN-FED-007/008).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Mapping
from typing import Any

from reference_impl.api.identification import rules
from reference_impl.calls import Call, Reply, decode_cursor, encode_cursor, handles
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem
from reference_impl.store import schema
from reference_impl.tasks import advance, allocated, cancel, machine, new_task

log = logging.getLogger("reference_impl.scheduling")

schema("""
CREATE TABLE IF NOT EXISTS tasks (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT NOT NULL UNIQUE,
  owner TEXT NOT NULL,
  resource_id TEXT NOT NULL,
  state TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks(owner, seq);
CREATE INDEX IF NOT EXISTS tasks_resource ON tasks(resource_id, state);
""")

_RESOURCE = "SELECT origin, withdrawn_at, record FROM resources WHERE resource_id = ?"


@handles("createTask")
async def create_task(call: Call) -> Reply:
    node, body = call.node, call.body
    resource_id = body["resourceId"]
    if flaw := rules(node.spec).resource_id_flaw(resource_id):
        raise Problem(flaw[0], f"resourceId: {flaw[1]}")
    _check_selection(node, body)
    own = _own_code(node)
    if _held_elsewhere(node.store.row(_RESOURCE, (resource_id,)), resource_id, own):
        return await _forward(call)  # decided before the write lock: it waits on the network
    with node.store.transaction() as db:
        resource = db.execute(_RESOURCE, (resource_id,)).fetchone()
        if resource is None or resource["withdrawn_at"] is not None:
            raise Problem("not-found", f"No resource {resource_id} in the catalogue.")
        total = _admissible_total(json_record(resource))
        held = allocated(_live(db, node, resource_id), machine(node.spec))
        wanted = int(body["resources"]["acceleratorCount"])
        if wanted > total - held:
            raise Problem(
                "capacity-exhausted",
                f"{resource_id} has {total - held} free accelerators; {wanted} requested.",
            )
        task = new_task(str(uuid.uuid4()), body, own, node.now())
        db.execute(
            "INSERT INTO tasks (task_id, owner, resource_id, state, record) VALUES (?, ?, ?, ?, ?)",
            (task["taskId"], _owner(call), resource_id, task["state"], _dump(task)),
        )
        node.audit(db, call, "task.created", task["taskId"], status=201)
    return Reply(201, task, {"Location": f"/v1/tasks/{task['taskId']}"})


@handles("listTasks")
async def list_tasks(call: Call) -> Reply:
    """Newest first (by acceptance order); the cursor is the position of the last task given."""
    node, query = call.node, call.query
    if "resourceId" in query and (flaw := rules(node.spec).resource_id_flaw(query["resourceId"])):
        raise Problem(flaw[0], f"resourceId: {flaw[1]}")
    after = decode_cursor(query.get("cursor"))
    if after is not None and not after.isdigit():
        raise Problem("invalid-request", "The cursor is not one this node issued.")
    limit = int(query["limit"])
    with node.store.transaction() as db:
        _refresh(db, node, "owner = ?", (_owner(call),))
    clauses = ["owner = :owner"]
    params: dict[str, Any] = {"owner": _owner(call), "limit": limit + 1}
    if after is not None:
        clauses.append("seq < :after")
        params["after"] = int(after)
    for name, column in (("state", "state"), ("resourceId", "resource_id")):
        if name in query:
            clauses.append(f"{column} = :{name}")
            params[name] = query[name]
    rows = node.store.rows(
        f"SELECT seq, record FROM tasks WHERE {' AND '.join(clauses)}"
        " ORDER BY seq DESC LIMIT :limit",
        params,
    )
    body: dict[str, Any] = {"items": [json_record(r) for r in rows[:limit]]}
    if len(rows) > limit:
        body["nextCursor"] = encode_cursor(str(rows[limit - 1]["seq"]))
    return Reply(200, body)


@handles("getTask")
async def get_task(call: Call) -> Reply:
    node, task_id = call.node, call.path["taskId"]
    with node.store.transaction() as db:
        tasks = _refresh(db, node, "task_id = ? AND owner = ?", (task_id, _owner(call)))
    if not tasks:
        raise _unknown_task(task_id)
    task = tasks[0]
    if "forwardedTo" not in task or task["state"] in machine(node.spec).terminal:
        return Reply(200, task)
    try:
        remote = await node.federation.remote_task(
            task["forwardedTo"], task["forwardedTaskId"], call.request_id
        )
    except Problem as problem:  # getTask answers the last state known (no 502 documented)
        log.warning("task %s: no state from %s: %s", task_id, task["forwardedTo"], problem)
        return Reply(200, task)
    with node.store.transaction() as db:
        return Reply(200, _mirror(db, node, task_id, remote))


@handles("cancelTask")
async def cancel_task(call: Call) -> Reply:
    """CANCELED at once, accelerators released in the same write; 409 if already terminal."""
    node, task_id = call.node, call.path["taskId"]
    with node.store.transaction() as db:
        row = db.execute(
            "SELECT record FROM tasks WHERE task_id = ? AND owner = ?", (task_id, _owner(call))
        ).fetchone()
        if row is None:
            raise _unknown_task(task_id)
        task = json_record(row)
        forwarded = "forwardedTo" in task and task["state"] not in machine(node.spec).terminal
        if not forwarded:
            task = cancel(task, node.now(), machine(node.spec))
            _save(db, task)
            node.audit(db, call, "task.canceled", task_id, status=200)
            return Reply(200, task)
    remote = await node.federation.remote_task(
        task["forwardedTo"], task["forwardedTaskId"], call.request_id, cancel=True
    )
    with node.store.transaction() as db:
        mirrored = _mirror(db, node, task_id, remote)
        node.audit(db, call, "task.canceled", task_id, status=200)
    return Reply(200, mirrored)


@handles("getResourceCapacity")
async def get_resource_capacity(call: Call) -> Reply:
    """Only the node's own resources: it does not know what other nodes have allocated."""
    node, resource_id = call.node, call.path["resourceId"]
    with node.store.transaction() as db:
        resource = db.execute(_RESOURCE, (resource_id,)).fetchone()
        if (
            resource is None
            or resource["withdrawn_at"] is not None
            or resource["origin"] != node.node_code
        ):
            raise Problem("not-found", f"{resource_id} is not a resource of this node.")
        tasks = _live(db, node, resource_id)
    total = int(json_record(resource).get("capacity", {}).get("acceleratorsTotal", 0))
    held = allocated(tasks, machine(node.spec))
    body = {
        "resourceId": resource_id,
        "acceleratorsTotal": total,
        "acceleratorsAllocated": held,
        "acceleratorsAvailable": max(total - held, 0),
        "asOf": timestamp(node.now()),
    }
    return Reply(200, body)


def _refresh(
    db: sqlite3.Connection, node: Node, where: str, params: tuple[Any, ...]
) -> list[dict[str, Any]]:
    """The tasks matching `where`, brought up to the clock; those that moved are written back."""
    rules_ = machine(node.spec)
    now = node.now()
    tasks = []
    for row in db.execute(f"SELECT record FROM tasks WHERE {where}", params).fetchall():
        stored = json_record(row)
        task = advance(stored, now, rules_)
        if task != stored:
            _save(db, task)
        tasks.append(task)
    return tasks


def _live(db: sqlite3.Connection, node: Node, resource_id: str) -> list[dict[str, Any]]:
    """The tasks on a resource that were not terminal at their last write, brought up to now."""
    terminal = sorted(machine(node.spec).terminal)
    marks = ", ".join("?" * len(terminal))
    return _refresh(
        db, node, f"resource_id = ? AND state NOT IN ({marks})", (resource_id, *terminal)
    )


def _held_elsewhere(resource: sqlite3.Row | None, resource_id: str, own: str) -> bool:
    """Whether another node holds the record of origin: an aggregated copy still listed, or
    an id minted under another NodeCode that this node does not know."""
    if resource is None:
        return resource_id[:9] != own
    return bool(resource["origin"] != own and resource["withdrawn_at"] is None)


def _save(db: sqlite3.Connection, task: Mapping[str, Any]) -> None:
    db.execute(
        "UPDATE tasks SET state = ?, record = ? WHERE task_id = ?",
        (task["state"], _dump(task), task["taskId"]),
    )


def _admissible_total(resource: Mapping[str, Any]) -> int:
    """The accelerators a resource offers, or 409 conflict if it takes no tasks now
    (CPIN-SCHED-012: serving state other than production)."""
    state = resource["servingState"]
    if state != "production":
        raise Problem("conflict", f"{resource['resourceId']} is {state} and accepts no new tasks.")
    return int(resource.get("capacity", {}).get("acceleratorsTotal", 0))


def _check_selection(node: Node, body: Mapping[str, Any]) -> None:
    """CPIN-SCHED-016: a selection this node made must list the resource among its candidates.
    A selection unknown here (made elsewhere, or expired) is not judged."""
    if "selectionId" not in body:
        return
    row = node.store.row(
        "SELECT record FROM selections WHERE selection_id = ?", (body["selectionId"],)
    )
    if row is None:
        return
    candidates = {c["resourceId"] for c in json_record(row)["candidates"]}
    if body["resourceId"] not in candidates:
        message = f"{body['resourceId']} is not a candidate of selection {body['selectionId']}."
        raise Problem(
            "invalid-request",
            message,
            errors=[{"pointer": "/resourceId", "message": message, "rule": "CPIN-SCHED-016"}],
        )


async def _forward(call: Call) -> Reply:
    """CPIN-SCHED-010: the task created at the node whose NodeCode the resource carries; its
    404 and 409 reach the client unchanged, 502/504 when it cannot be had (CPIN-FED-007/008).
    The local record names the owner (`forwardedTo`, `forwardedTaskId`) and mirrors its state."""
    node, body = call.node, call.body
    received = node.now()
    remote = await node.federation.forward_task(body, call.request_id)
    task = new_task(str(uuid.uuid4()), body, remote["nodeCode"], received)
    task.update(forwardedTo=body["resourceId"][:9], forwardedTaskId=remote["taskId"])
    task.update(_state_of(remote))
    with node.store.transaction() as db:
        db.execute(
            "INSERT INTO tasks (task_id, owner, resource_id, state, record) VALUES (?, ?, ?, ?, ?)",
            (task["taskId"], _owner(call), body["resourceId"], task["state"], _dump(task)),
        )
        node.audit(db, call, "task.created", task["taskId"], status=201)
    return Reply(201, task, {"Location": f"/v1/tasks/{task['taskId']}"})


def _mirror(
    db: sqlite3.Connection, node: Node, task_id: str, remote: Mapping[str, Any]
) -> dict[str, Any]:
    """The local record with the owner's state, read and written in the caller's transaction.
    A terminal record stays as it is (CPIN-SCHED-002); otherwise the owner's answer wins,
    unless it is older than what is stored (a shorter history, from a slower concurrent read)
    and not final."""
    terminal = machine(node.spec).terminal
    row = db.execute("SELECT record FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    task: dict[str, Any] = json_record(row)
    older = len(remote["stateHistory"]) < len(task["stateHistory"])
    if task["state"] in terminal or (older and remote["state"] not in terminal):
        return task
    task.pop("failureReason", None)
    task.update(_state_of(remote))
    _save(db, task)
    return task


def _state_of(remote: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("state", "stateHistory", "updatedAt", "failureReason")
    return {key: remote[key] for key in keys if key in remote}


def _owner(call: Call) -> str:
    """The client a task belongs to: another node by its NodeCode, a client by its subject."""
    principal = call.principal
    return f"node:{principal.node_code}" if principal.node_code else f"client:{principal.subject}"


def _unknown_task(task_id: str) -> Problem:
    return Problem("not-found", f"There is no task {task_id} of this client at this node.")


def _own_code(node: Node) -> str:
    if node.node_code is None:
        raise Problem("service-unavailable", "This node has no NodeCode yet, so it runs no tasks.")
    return node.node_code


def _dump(task: Mapping[str, Any]) -> str:
    return json.dumps(task, ensure_ascii=False)
