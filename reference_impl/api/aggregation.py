"""aggregation: the resource catalogue (register, list with filters, read, update, withdraw).

One table holds the node's own entries and the aggregated copies of lower nodes' entries;
`origin` says through which node an entry reached this one (the node's own NodeCode for its
own), which is what the `origin` filter of listResources selects on. The federation layer
writes copies with `write_entry`; only the issuing node registers, updates or withdraws
(CPIN-AGG-018), so copies are never changed here.

Withdrawn entries stay in the table, marked, so that the withdrawal can travel upward; every
read leaves them out (CPIN-AGG-016, CPIN-AGG-017). `seq` orders every write, newest last, for
the upward push.

The app has validated every body against its schema (PUE >= 1.0, renewable share in [0, 1],
a precision on every peak figure); what a schema cannot say is checked here: the USCC check
character, each peak figure's unit against its precision's x-unit, one figure per precision,
and acceleratorsTotal equal to the devices of the accelerator groups.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from reference_impl.api.identification import allocate, merge_patch, rules
from reference_impl.api.identification import write_record as write_identifier
from reference_impl.calls import Call, Reply, decode_cursor, etag_of, handles, page
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem
from reference_impl.store import schema
from spec import Spec

schema("""
CREATE TABLE IF NOT EXISTS resources (
  resource_id TEXT PRIMARY KEY,
  origin TEXT NOT NULL,
  withdrawn_at TEXT,
  seq INTEGER NOT NULL UNIQUE,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS resources_origin ON resources(origin, resource_id);
""")

# listResources filters answered from the record itself: query parameter -> JSON path.
_RECORD_FILTERS = {
    "resType": "$.resType",
    "province": "$.location.province",
    "servingState": "$.servingState",
    "healthState": "$.healthState",
    "latencyClass": "$.latencyClass",
}
# A peak figure that meets {figure}, on an accelerator group or on the CPU complement: figures
# are compared one by one at the precision asked for, never summed or converted (CPIN-AGG-007).
_PEAK = """(
  EXISTS (SELECT 1 FROM json_each(record, '$.accelerators') AS g, json_each(g.value, '$.peak') AS p
          WHERE {figure})
  OR EXISTS (SELECT 1 FROM json_each(record, '$.cpu.peak') AS p WHERE {figure})
)"""
_AT_PRECISION = "json_extract(p.value, '$.precision') = :precision"
_AT_LEAST = " AND json_extract(p.value, '$.value') >= :minPeak"
_LISTED = "SELECT record FROM resources WHERE resource_id = ? AND withdrawn_at IS NULL"


def no_tasks(db: sqlite3.Connection, resource_id: str) -> int:
    """Until the scheduling layer is wired: no resource holds tasks."""
    return 0


tasks_holding: Callable[[sqlite3.Connection, str], int] = no_tasks
"""Number of tasks that are not terminal on one of the node's resources, read inside the
withdrawal's transaction: a resource that still runs work is not withdrawn (409 conflict).
Replaced by the scheduling layer."""


@handles("registerResource")
async def register_resource(call: Call) -> Reply:
    node = call.node
    node_code = _own_code(node)
    _check(node.spec, call.body)
    now = timestamp(node.now())
    with node.store.transaction() as db:
        resource_id = allocate(db, node_code, call.body["resType"])
        record = {
            "resourceId": resource_id,
            "issuer": node_code,
            **call.body,
            "createdAt": now,
            "updatedAt": now,
        }
        write_entry(db, record, origin=node_code)
        write_identifier(
            db,
            {
                "identifier": resource_id,
                "resType": record["resType"],
                "issuer": node_code,
                "owner": record["owner"],
                "state": "active",
                "resourceRef": f"{node.config.base_url}/v1/resources/{resource_id}",
                "createdAt": now,
                "updatedAt": now,
            },
        )
        node.audit(db, call, "resource.registered", resource_id, status=201)
    headers = {"Location": f"/v1/resources/{resource_id}", "ETag": etag_of(record)}
    return Reply(201, record, headers)


@handles("listResources")
async def list_resources(call: Call) -> Reply:
    node, query = call.node, call.query
    if "minPeak" in query and "precision" not in query:
        raise Problem(
            "precision-mismatch",
            "minPeak is compared at one precision only: give precision with it.",
        )
    if "origin" in query and (flaw := rules(node.spec).node_code_flaw(query["origin"])):
        raise Problem(flaw[0], f"origin: {flaw[1]}")
    after = decode_cursor(query.get("cursor"))
    if after is not None and not rules(node.spec).resource_id_pattern.fullmatch(after):
        raise Problem("invalid-request", "The cursor is not one this node issued.")
    limit = int(query["limit"])
    clauses = ["withdrawn_at IS NULL", "resource_id > :after"]
    params: dict[str, Any] = {**query, "after": after or "", "limit": limit + 1}
    clauses += [
        f"json_extract(record, '{path}') = :{name}"
        for name, path in _RECORD_FILTERS.items()
        if name in query
    ]
    if "origin" in query:
        clauses.append("origin = :origin")
    if "precision" in query:
        figure = _AT_PRECISION + (_AT_LEAST if "minPeak" in query else "")
        clauses.append(_PEAK.format(figure=figure))
    rows = node.store.rows(
        f"SELECT record FROM resources WHERE {' AND '.join(clauses)}"
        " ORDER BY resource_id LIMIT :limit",
        params,
    )
    body = page([json_record(r) for r in rows], limit, "resourceId")
    return Reply(200, body, {"ETag": etag_of(body)})


@handles("getResource")
async def get_resource(call: Call) -> Reply:
    record = current(call.node, call.path["resourceId"])
    etag = etag_of(record)
    if _matches(call.headers.get("if-none-match"), etag):
        return Reply(304, None, {"ETag": etag})
    return Reply(200, record, {"ETag": etag})


@handles("updateResource")
async def update_resource(call: Call) -> Reply:
    node, resource_id = call.node, call.path["resourceId"]
    _check_prefix(node, resource_id, "update")
    with node.store.transaction() as db:
        record = _current(db, resource_id)
        call.require_match(etag_of(record))
        updated = merge_patch(record, call.body)
        if updated != record:
            updated["updatedAt"] = timestamp(node.now())
        _check(node.spec, updated, whole=True)
        write_entry(db, updated, origin=resource_id[:9])
        node.audit(db, call, "resource.updated", resource_id, status=200)
    return Reply(200, updated, {"ETag": etag_of(updated)})


@handles("withdrawResource")
async def withdraw_resource(call: Call) -> Reply:
    node, resource_id = call.node, call.path["resourceId"]
    _check_prefix(node, resource_id, "withdraw")
    with node.store.transaction() as db:
        record = _current(db, resource_id)
        if held := tasks_holding(db, resource_id):
            raise Problem(
                "conflict", f"{resource_id} still has {held} task(s) that are not terminal."
            )
        now = timestamp(node.now())
        write_entry(db, record, origin=resource_id[:9], withdrawn_at=now)
        node.audit(db, call, "resource.withdrawn", resource_id, status=204)
    return Reply(204)


def write_entry(
    db: sqlite3.Connection,
    record: Mapping[str, Any],
    *,
    origin: str,
    withdrawn_at: str | None = None,
) -> None:
    """Insert or replace one catalogue entry inside the caller's transaction.

    `origin` is the NodeCode the entry came through: this node's own for its own resources,
    the pushing child's for an aggregated copy. `seq` is renewed on every write.
    """
    db.execute(
        "INSERT OR REPLACE INTO resources (resource_id, origin, withdrawn_at, seq, record)"
        " VALUES (?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM resources), ?)",
        (record["resourceId"], origin, withdrawn_at, json.dumps(record, ensure_ascii=False)),
    )


def current(node: Node, resource_id: str) -> dict[str, Any]:
    """The listed record of a resource (own or aggregated); 404 if absent or withdrawn."""
    row = node.store.row(_LISTED, (resource_id,))
    if row is None:
        raise Problem("not-found", f"{resource_id} is not in this node's catalogue.")
    return json_record(row)


def listed(node: Node) -> list[dict[str, Any]]:
    """Every resource the node lists, own and aggregated, withdrawn ones left out."""
    rows = node.store.rows(
        "SELECT record FROM resources WHERE withdrawn_at IS NULL ORDER BY resource_id"
    )
    return [json_record(r) for r in rows]


def _current(db: sqlite3.Connection, resource_id: str) -> dict[str, Any]:
    row = db.execute(_LISTED, (resource_id,)).fetchone()
    if row is None:
        raise Problem("not-found", f"{resource_id} is not in this node's catalogue.")
    return json_record(row)


def _check(spec: Spec, record: Mapping[str, Any], *, whole: bool = False) -> None:
    """400 invalid-request naming every defect; `whole` also validates against the Resource
    schema, for a merged patch that no schema has seen yet (CPIN-AGG-015)."""
    errors = _schema_errors(spec, record) if whole else []
    errors += _semantic_errors(spec, record)
    if errors:
        raise Problem("invalid-request", "The resource record is invalid.", errors=errors)


def _schema_errors(spec: Spec, record: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {"pointer": _pointer(*error.absolute_path), "message": error.message}
        for error in _resource_validator(spec).iter_errors(record)
    ]


def _semantic_errors(spec: Spec, record: Mapping[str, Any]) -> list[dict[str, str]]:
    errors = []
    uscc = record.get("owner", {}).get("uscc")
    if uscc is not None and (flaw := rules(spec).uscc_flaw(uscc)):
        errors.append(_error("/owner/uscc", flaw[1], "CPIN-AGG-005"))
    units = _precision_units(spec)
    peak_lists = [
        (_pointer("accelerators", i, "peak"), group.get("peak", []))
        for i, group in enumerate(record.get("accelerators", []))
    ]
    if "peak" in record.get("cpu", {}):
        peak_lists.append((_pointer("cpu", "peak"), record["cpu"]["peak"]))
    for where, peaks in peak_lists:
        seen: set[str] = set()
        for j, peak in enumerate(peaks):
            precision, unit = peak.get("precision"), peak.get("unit")
            if precision in units and unit != units[precision]:
                message = f"a {precision} figure is in {units[precision]}, not {unit}"
                errors.append(_error(f"{where}/{j}/unit", message, "CPIN-AGG-002"))
            if precision in seen:
                message = f"one figure per precision: {precision} is given twice"
                errors.append(_error(f"{where}/{j}/precision", message, "CPIN-AGG-002"))
            seen.add(str(precision))
    total = record.get("capacity", {}).get("acceleratorsTotal")
    devices = sum(int(group.get("count", 0)) for group in record.get("accelerators", []))
    if total is not None and "accelerators" in record and total != devices:
        message = f"acceleratorsTotal is {total}, but the accelerator groups hold {devices}"
        # resource.json states this equality in prose; no requirement of its own carries it, so
        # the error names the one that asks for a record valid against that schema.
        errors.append(_error("/capacity/acceleratorsTotal", message, "CPIN-AGG-001"))
    return errors


def _error(pointer: str, message: str, rule: str) -> dict[str, str]:
    return {"pointer": pointer, "message": message, "rule": rule}


def _pointer(*parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _check_prefix(node: Node, resource_id: str, verb: str) -> None:
    """CPIN-AGG-018: only the issuing node changes a resource, aggregated copies included."""
    if resource_id[:9] != node.node_code:
        raise Problem(
            "foreign-prefix",
            f"{node.node_code} may not {verb} {resource_id}: it was issued by {resource_id[:9]}.",
        )


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: `*` or a list of entity tags, one of them the current one."""
    if if_none_match is None:
        return False
    tags = {tag.strip() for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _own_code(node: Node) -> str:
    if node.node_code is None:
        raise Problem(
            "service-unavailable", "This node has no NodeCode yet, so it cannot mint resource ids."
        )
    return node.node_code


@cache
def _precision_units(spec: Spec) -> dict[str, str]:
    """Precision -> the unit its peak figures are given in (precision code list, x-unit)."""
    return {entry["const"]: entry["x-unit"] for entry in spec.codelist("precision")}


@cache
def _resource_validator(spec: Spec) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": spec.uri("schemas/resource.json")},
        registry=spec.registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
