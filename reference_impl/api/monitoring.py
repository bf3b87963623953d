"""monitoring: metric records pushed upward, queried, and turned into status and roll-up.

A push is judged in two steps (openapi pushMetrics): the app has already answered 400 to a
batch its schema refuses; `batch_errors` adds the checks the schema cannot make, still 400 for
the whole batch. Then each record is judged alone: stale or too far ahead (stale-metric), or
about a subject the caller does not answer for (forbidden), and listed in `rejected` by index;
the others are stored, each measurement once (CPIN-MON-006).

A client of this node reports on this node and its resources; another node (a node-to-node
assertion) on itself, the nodes below it in the registry and their resources (CPIN-MON-013).
Each node-to-node push is remembered in `metric_reports`: those are the node's children in
getMonitoringStatus, with the nodes the registry lists below it.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping
from typing import Any

from reference_impl import metrics
from reference_impl.calls import Call, Reply, decode_cursor, encode_cursor, handles
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem
from reference_impl.store import schema

schema("""
CREATE TABLE IF NOT EXISTS metric_records (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  dedup_key TEXT NOT NULL UNIQUE,
  node_code TEXT NOT NULL,
  resource_id TEXT,
  level TEXT NOT NULL,
  category TEXT,
  measured INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  pushed_by TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_records_time ON metric_records(measured, seq);
CREATE INDEX IF NOT EXISTS metric_records_node ON metric_records(node_code, measured);
CREATE INDEX IF NOT EXISTS metric_records_resource ON metric_records(resource_id, measured);
CREATE INDEX IF NOT EXISTS metric_records_pusher ON metric_records(pushed_by, measured);
CREATE TABLE IF NOT EXISTS metric_reports (
  node_code TEXT PRIMARY KEY,
  last_report_at TEXT NOT NULL
);
""")

# `measured` and `expires` are microseconds since the epoch: fresh while now <= expires.
_SUBTREE = """
WITH RECURSIVE below(code) AS (
  SELECT node_code FROM nodes WHERE parent = ?
  UNION SELECT n.node_code FROM nodes n JOIN below b ON n.parent = b.code
) SELECT code FROM below"""
_FILTERS = {
    "nodeCode": "node_code = :nodeCode",
    "resourceId": "resource_id = :resourceId",
    "level": "level = :level",
    "category": "category = :category",
    "since": "measured >= :since",
}


@handles("pushMetrics")
async def push_metrics(call: Call) -> Reply:
    node = call.node
    own = _own_code(node)
    records: list[dict[str, Any]] = call.body["records"]
    if errors := metrics.batch_errors(node.spec, records):
        raise Problem("invalid-request", "The batch holds invalid records.", errors=errors[:100])
    pusher = call.principal.node_code or own
    now = metrics.micros(node.now())
    rejected = []
    with node.store.transaction() as db:
        allowed = {pusher, *(row[0] for row in db.execute(_SUBTREE, (pusher,)))}
        for index, record in enumerate(records):
            refusal = _refusal(record, allowed, now)
            if refusal is not None:
                problem = Problem(*refusal)
                body = node.problems.body(problem, call.request.url.path, call.request_id)
                rejected.append({"index": index, "problem": body})
                continue
            store_record(db, record, pusher)
        if call.principal.node_code is not None and pusher != own:
            db.execute(
                "INSERT OR REPLACE INTO metric_reports (node_code, last_report_at) VALUES (?, ?)",
                (pusher, timestamp(node.now())),
            )
        node.audit(db, call, "metrics.pushed", pusher, status=200)
    return Reply(200, {"accepted": len(records) - len(rejected), "rejected": rejected})


@handles("queryMetrics")
async def query_metrics(call: Call) -> Reply:
    node, query = call.node, call.query
    limit = int(query["limit"])
    params: dict[str, Any] = {**query, "now": metrics.micros(node.now()), "limit": limit + 1}
    clauses = [sql for name, sql in _FILTERS.items() if name in query]
    if "since" in query:
        params["since"] = metrics.instant(query["since"])
    if "fresh" in query:
        clauses.append(":now <= expires" if query["fresh"] else ":now > expires")
    if (after := _position(query.get("cursor"))) is not None:
        clauses.append("(measured < :at OR (measured = :at AND seq < :seq))")
        params.update(at=after[0], seq=after[1])
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = node.store.rows(
        f"SELECT seq, measured, record FROM metric_records {where}"
        " ORDER BY measured DESC, seq DESC LIMIT :limit",
        params,
    )
    body: dict[str, Any] = {"items": [json_record(row) for row in rows[:limit]]}
    if len(rows) > limit:
        last = rows[limit - 1]
        body["nextCursor"] = encode_cursor(f"{last['measured']}.{last['seq']}")
    return Reply(200, body)


@handles("getMonitoringStatus")
async def get_monitoring_status(call: Call) -> Reply:
    node = call.node
    own = _own_code(node)
    now = metrics.micros(node.now())
    resources = []
    for row in node.store.rows(
        "SELECT resource_id, record FROM resources WHERE origin = ? AND withdrawn_at IS NULL"
        " ORDER BY resource_id",
        (own,),
    ):
        entry = json_record(row)
        status = {
            "resourceId": entry["resourceId"],
            "healthState": entry["healthState"],
            "servingState": entry["servingState"],
            "fresh": False,
        }
        newest = node.store.row(
            "SELECT record, expires FROM metric_records WHERE resource_id = ?"
            " ORDER BY measured DESC, seq DESC LIMIT 1",
            (row["resource_id"],),
        )
        if newest is not None:
            status["lastMetricAt"] = json_record(newest)["timestamp"]
            status["fresh"] = now <= newest["expires"]
        resources.append(status)
    body = {
        "nodeCode": own,
        "health": _own_health(node),
        "time": timestamp(node.now()),
        "resources": resources,
        "children": _children(node, own, now),
    }
    return Reply(200, body)


@handles("getRollup")
async def get_rollup(call: Call) -> Reply:
    node = call.node
    own = _own_code(node)
    now = metrics.micros(node.now())
    catalogue: dict[str, metrics.Resource] = {}
    withdrawn: set[str] = set()
    for row in node.store.rows("SELECT resource_id, withdrawn_at, record FROM resources"):
        if row["withdrawn_at"] is not None:
            withdrawn.add(row["resource_id"])
        else:
            catalogue[row["resource_id"]] = metrics.Resource.of(json_record(row))
    records = [
        json_record(row)
        for row in node.store.rows(
            "SELECT record, resource_id FROM metric_records"
            " WHERE resource_id IS NOT NULL AND json_extract(record, '$.precision') IS NOT NULL"
        )
        if row["resource_id"] not in withdrawn
    ]
    body = {
        "scope": own,
        "time": timestamp(node.now()),
        "byPrecision": metrics.rollup(node.spec, records, catalogue, now),
        "byProvince": metrics.rollup_by_province(node.spec, records, catalogue, now),
    }
    return Reply(200, body)


def _refusal(record: Mapping[str, Any], allowed: set[str], now: int) -> tuple[str, str] | None:
    """The per-record refusal (problem type, detail), or None when the record is stored."""
    if detail := metrics.subject_refusal(record["subject"], allowed):
        return "forbidden", detail
    if detail := metrics.arrival_refusal(record, now):
        return "stale-metric", detail
    return None


def store_record(db: sqlite3.Connection, record: Mapping[str, Any], pusher: str) -> None:
    """Store one record under a new recordId, unless the same measurement is stored already."""
    measured = metrics.instant(record["timestamp"])
    stored = {"recordId": str(uuid.uuid4()), **record}
    db.execute(
        "INSERT OR IGNORE INTO metric_records (dedup_key, node_code, resource_id, level,"
        " category, measured, expires, pushed_by, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            metrics.dedup_key(record),
            record["subject"]["nodeCode"],
            record["subject"].get("resourceId"),
            record["level"],
            record.get("category"),
            measured,
            measured + record["validitySeconds"] * 1_000_000,
            pusher,
            json.dumps(stored, ensure_ascii=False),
        ),
    )


def _children(node: Node, own: str, now: int) -> list[dict[str, Any]]:
    """Nodes that pushed to this one, and those the registry lists below it. Health is what
    can be observed: ok while the child's newest pushed record is fresh, unknown otherwise
    (health-state code list: unknown means no fresh measurement)."""
    reports = {
        row["node_code"]: row["last_report_at"]
        for row in node.store.rows("SELECT node_code, last_report_at FROM metric_reports")
    }
    registered = {
        row["node_code"]
        for row in node.store.rows("SELECT node_code FROM nodes WHERE parent = ?", (own,))
    }
    children = []
    for code in sorted(set(reports) | registered):
        newest = node.store.row(
            "SELECT expires FROM metric_records WHERE pushed_by = ?"
            " ORDER BY measured DESC, seq DESC LIMIT 1",
            (code,),
        )
        fresh = newest is not None and now <= newest["expires"]
        child: dict[str, Any] = {
            "nodeCode": code,
            "healthState": "ok" if fresh else "unknown",
            "fresh": fresh,
        }
        if code in reports:
            child["lastReportAt"] = reports[code]
        children.append(child)
    return children


def _own_health(node: Node) -> str:
    """The node's own health, as getHealth judges it: ok while its store answers."""
    try:
        node.store.row("SELECT 1")
    except sqlite3.Error:
        return "critical"
    return "ok"


def _position(cursor: str | None) -> tuple[int, int] | None:
    """(measured, seq) of the last item of the previous page, from a cursor this node made."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    measured, _, seq = position.partition(".")
    if not (measured.lstrip("-").isdigit() and seq.isdigit()):
        raise Problem("invalid-request", "The cursor is not one this node issued.")
    return int(measured), int(seq)


def _own_code(node: Node) -> str:
    if node.node_code is None:
        raise Problem("service-unavailable", "This node has no NodeCode yet.")
    return node.node_code
