"""node-registry: applications, NodeCode issuance, node records and suspension (national only).

The rules live in `reference_impl.registry`; this module reads the registry, decides inside
one write transaction (BEGIN IMMEDIATE, so concurrent applications are serialised) and writes.
Other modules read `nodes.record`, a node record of schemas/node.json (`jwks`, `status`).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from reference_impl.calls import Call, Reply, decode_cursor, etag_of, handles, page
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem
from reference_impl.registry import (
    NodeView,
    Snapshot,
    holding_statuses,
    identifier_rules,
    input_problem,
    lowest_free_seq,
    node_code,
    node_code_prefix,
    node_record,
    violations,
)
from reference_impl.store import schema

schema("""
CREATE TABLE IF NOT EXISTS node_applications (
  application_id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  submitted_at TEXT NOT NULL,
  node_code TEXT,
  record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
  node_code TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  province TEXT,
  industry TEXT,
  parent TEXT,
  status TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_province ON nodes(province, role, status);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent);
""")

# The operator named in the national node's own record when the deployment names none: the
# reference deployment's (fictional) operating institution, with a valid GB 32100 code.
REFERENCE_OPERATOR = {
    "legalName": "国家算力互联网服务节点参考运营单位",
    "uscc": "12100000MB0C00001N",
}

_FILTERS = ("role", "province", "industry", "status", "parent")
_SELECT_NODE = "SELECT record FROM nodes WHERE node_code = ?"


@handles("submitNodeApplication")
async def submit_node_application(call: Call) -> Reply:
    node, application = call.node, call.body
    if problem := input_problem(application, node.spec):
        raise problem
    application_id = str(uuid.uuid4())
    submitted = timestamp(node.now())
    with node.store.transaction() as db:
        snapshot = _snapshot(db, node, application)
        found = violations(application, snapshot, node.spec)
        record: dict[str, Any] = {
            "applicationId": application_id,
            "status": "rejected" if found else "approved",
            "submittedAt": submitted,
            "decidedAt": timestamp(node.now()),
            "input": application,
        }
        if found or snapshot.free_seq is None:  # no free Seq is itself a violation (REG-014)
            record["violations"] = found
        else:
            code = node_code(node_code_prefix(application, node.spec), snapshot.free_seq)
            record["nodeCode"] = code
            parent = application.get("parentNodeCode", node.node_code)
            _write_node(db, node_record(application, code, parent, record["decidedAt"]))
        db.execute(
            "INSERT INTO node_applications"
            " (application_id, status, submitted_at, node_code, record) VALUES (?, ?, ?, ?, ?)",
            (
                application_id,
                record["status"],
                submitted,
                record.get("nodeCode"),
                json.dumps(record, ensure_ascii=False),
            ),
        )
        node.audit(db, call, "node.application.submitted", application_id, status=201)
    return Reply(201, record, {"Location": f"/v1/node-applications/{application_id}"})


@handles("getNodeApplication")
async def get_node_application(call: Call) -> Reply:
    application_id = call.path["applicationId"]
    row = call.node.store.row(
        "SELECT record FROM node_applications WHERE application_id = ?", (application_id,)
    )
    if row is None:
        raise Problem("not-found", f"No node application {application_id}.")
    return Reply(200, json_record(row))


@handles("listNodes")
async def list_nodes(call: Call) -> Reply:
    node = call.node
    clauses = [f"{name} = ?" for name in _FILTERS if name in call.query]
    params: list[Any] = [call.query[name] for name in _FILTERS if name in call.query]
    after = decode_cursor(call.query.get("cursor"))
    if after is not None:
        if identifier_rules(node.spec).node_code_flaw(after):
            raise Problem("invalid-request", "The cursor is not one this node issued.")
        clauses.append("node_code > ?")
        params.append(after)
    limit = int(call.query["limit"])
    where = " AND ".join(clauses) or "1"
    rows = node.store.rows(
        f"SELECT record FROM nodes WHERE {where} ORDER BY node_code LIMIT ?",
        (*params, limit + 1),
    )
    return Reply(200, page([json_record(row) for row in rows], limit, "nodeCode"))


@handles("getNode")
async def get_node(call: Call) -> Reply:
    code = call.path["nodeCode"]
    record = _found(call.node.store.row(_SELECT_NODE, (code,)), code)
    return Reply(200, record, {"ETag": etag_of(record)})


@handles("updateNode")
async def update_node(call: Call) -> Reply:
    """JSON Merge Patch of endpoint, jwks (replaced whole) and name (merged); the schema
    refuses every other member, identity fields included (CPIN-REG-017)."""
    code, patch = call.path["nodeCode"], call.body
    node = call.node
    with node.store.transaction() as db:
        record = _found(db.execute(_SELECT_NODE, (code,)).fetchone(), code)
        caller = call.principal.node_code
        if caller is not None and caller != code:
            raise Problem("forbidden", f"Node {caller} may update only its own record.")
        call.require_match(etag_of(record))
        updated = {**record, **patch, "name": {**record["name"], **patch.get("name", {})}}
        if updated != record:
            updated["updatedAt"] = timestamp(node.now())
            _write_node(db, updated)
        node.audit(db, call, "node.updated", code, status=200)
    return Reply(200, updated, {"ETag": etag_of(updated)})


@handles("suspendNode")
async def suspend_node(call: Call) -> Reply:
    """Idempotent: a suspended node stays suspended since its first suspension; a new reason
    replaces the old one (PUT sets the suspension's state)."""
    code, reason = call.path["nodeCode"], call.body["reason"]
    node = call.node
    with node.store.transaction() as db:
        record = _found(db.execute(_SELECT_NODE, (code,)).fetchone(), code)
        if code == node.node_code:
            raise Problem("forbidden", "The national node cannot suspend itself.")
        now = timestamp(node.now())
        updated = _moved(record, "suspended", node)
        since = record.get("suspension", {}).get("since", now)
        updated["suspension"] = {"reason": reason, "since": since}
        _save_if_changed(db, record, updated, now)
        node.audit(db, call, "node.suspended", code, status=200)
    return Reply(200, updated, {"ETag": etag_of(updated)})


@handles("reinstateNode")
async def reinstate_node(call: Call) -> Reply:
    code = call.path["nodeCode"]
    node = call.node
    with node.store.transaction() as db:
        record = _found(db.execute(_SELECT_NODE, (code,)).fetchone(), code)
        updated = _moved(record, "active", node)
        updated.pop("suspension", None)
        _save_if_changed(db, record, updated, timestamp(node.now()))
        node.audit(db, call, "node.reinstated", code, status=200)
    return Reply(200, updated, {"ETag": etag_of(updated)})


def ensure_national_record(node: Node, operator: dict[str, str] | None = None) -> None:
    """Put the national node's own record in its registry at start, or refresh its name,
    endpoint and keys when they changed since the last start (no request, so no audit)."""
    code = node.node_code
    if code is None:
        raise RuntimeError("the national node starts with its NodeCode configured")
    now = timestamp(node.now())
    with node.store.transaction() as db:
        row = db.execute(_SELECT_NODE, (code,)).fetchone()
        current = json_record(row) if row else None
        record = current or {
            "nodeCode": code,
            "role": "national",
            "status": "active",
            "createdAt": now,
        }
        wanted = {
            "name": node.config.name,
            "endpoint": node.config.base_url,
            "jwks": node.security.jwks(),
            "operator": operator or (current or {}).get("operator") or REFERENCE_OPERATOR,
        }
        if current is None or any(record.get(key) != value for key, value in wanted.items()):
            _write_node(db, {**record, **wanted, "updatedAt": now})


def _snapshot(db: sqlite3.Connection, node: Node, application: dict[str, Any]) -> Snapshot:
    statuses = sorted(holding_statuses(node.spec))
    holders = db.execute(
        "SELECT node_code, role, status, province FROM nodes WHERE role = 'regional'"
        f" AND province = ? AND status IN ({', '.join('?' * len(statuses))}) ORDER BY node_code",
        (application["province"], *statuses),
    ).fetchall()
    parent = None
    if "parentNodeCode" in application:
        parent = db.execute(
            "SELECT node_code, role, status, province FROM nodes WHERE node_code = ?",
            (application["parentNodeCode"],),
        ).fetchone()
    prefix = node_code_prefix(application, node.spec)
    allocated = db.execute(
        "SELECT substr(node_code, 7, 2) AS seq FROM nodes WHERE substr(node_code, 1, 6) = ?",
        (prefix,),
    ).fetchall()
    return Snapshot(
        province_holders=tuple(_view(row) for row in holders),
        parent=_view(parent) if parent else None,
        free_seq=lowest_free_seq(row["seq"] for row in allocated),
    )


def _view(row: sqlite3.Row) -> NodeView:
    return NodeView(row["node_code"], row["role"], row["status"], row["province"])


def _found(row: sqlite3.Row | None, code: str) -> dict[str, Any]:
    if row is None:
        raise Problem("not-found", f"No node {code} in the registry.")
    return json_record(row)


def _moved(record: dict[str, Any], target: str, node: Node) -> dict[str, Any]:
    """A copy of the record in status `target`; staying in it is allowed (idempotent), any
    other move must be a transition of the node-status code list (409 otherwise)."""
    current = record["status"]
    transitions = next(
        e["x-transitions"] for e in node.spec.codelist("node-status") if e["const"] == current
    )
    if current != target and target not in transitions:
        raise Problem(
            "illegal-state-transition",
            f"Node {record['nodeCode']} is {current} and cannot become {target}.",
        )
    return {**record, "status": target}


def _save_if_changed(
    db: sqlite3.Connection, record: dict[str, Any], updated: dict[str, Any], now: str
) -> None:
    if updated != record:
        updated["updatedAt"] = now
        _write_node(db, updated)


def _write_node(db: sqlite3.Connection, record: dict[str, Any]) -> None:
    """Insert or replace a node record; rows are never deleted, so every NodeCode ever
    issued stays in the table and its Seq is never allocated again (CPIN-REG-014)."""
    db.execute(
        "INSERT INTO nodes (node_code, role, province, industry, parent, status, record)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node_code) DO UPDATE SET"
        " status = excluded.status, record = excluded.record",
        (
            record["nodeCode"],
            record["role"],
            record.get("province"),
            record.get("industry"),
            record.get("parentNodeCode"),
            record["status"],
            json.dumps(record, ensure_ascii=False),
        ),
    )
