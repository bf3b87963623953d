"""federation: what a child node reports upward, and who a node exchanges with.

A report is accepted only from a direct child (its parent in the national registry is this
node: CPIN-FED-004), and each item only when it lies in the child's subtree, that is it
carries the child's NodeCode or that of one of the child's own children (CPIN-FED-005).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from reference_impl.api.aggregation import write_entry
from reference_impl.api.identification import store_reported
from reference_impl.calls import Call, Reply, decode_cursor, handles, page
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem

DEFAULT_LIMIT = 20


@handles("reportIdentifiers")
async def report_identifiers(call: Call) -> Reply:
    caller = await _child_caller(call)
    items = call.body["identifiers"]
    accepted, rejected = await _split(call, caller, items, lambda item: item["identifier"])
    with call.node.store.transaction() as db:
        for item in accepted:
            store_reported(db, item)
        call.node.audit(db, call, "federation.identifiers.reported", caller, status=200)
    return Reply(200, {"accepted": len(accepted), "rejected": rejected})


@handles("pushCatalogue")
async def push_catalogue(call: Call) -> Reply:
    caller = await _child_caller(call)
    upserts = call.body.get("upserts", [])
    withdrawals = call.body.get("withdrawals", [])
    kept, refused = await _split(call, caller, upserts, lambda record: record["resourceId"])
    gone, refused_gone = await _split(call, caller, withdrawals, lambda resource_id: resource_id)
    now = timestamp(call.node.now())
    with call.node.store.transaction() as db:
        for record in kept:
            write_entry(db, record, origin=caller)
        for resource_id in gone:
            _withdraw_copy(db, resource_id, caller, now)
        call.node.audit(db, call, "federation.catalogue.pushed", caller, status=200)
    return Reply(200, {"accepted": len(kept) + len(gone), "rejected": refused + refused_gone})


@handles("listPeers")
async def list_peers(call: Call) -> Reply:
    """CPIN-FED-006: parent, children and the national node, as the registry gives them."""
    peers = await _peers(call.node)
    after = decode_cursor(call.query.get("cursor"))
    limit = call.query.get("limit", DEFAULT_LIMIT)
    ordered = [
        p for p in sorted(peers, key=lambda p: p["nodeCode"]) if not after or p["nodeCode"] > after
    ]
    return Reply(200, page(ordered[: limit + 1], limit, "nodeCode"))


async def _child_caller(call: Call) -> str:
    caller = call.principal.node_code
    if caller is None or call.body.get("reporter") != caller:
        raise Problem("forbidden", "Reports come from a node, naming itself as reporter.")
    record = await call.node.federation.lookup(caller)
    if record is None or record.get("parentNodeCode") != call.node.node_code:
        raise Problem("forbidden", f"{caller} does not report to {call.node.node_code}.")
    return caller


async def _split(
    call: Call, caller: str, items: Iterable[Any], identifier_of: Callable[[Any], str]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Items in the caller's subtree, and a foreign-prefix refusal for each of the others."""
    accepted, rejected = [], []
    for item in items:
        identifier = identifier_of(item)
        if await _in_subtree(call.node, identifier[:9], caller):
            accepted.append(item)
        else:
            problem = Problem("foreign-prefix", f"{identifier} is outside {caller}'s subtree.")
            body = call.node.problems.body(problem, call.request.url.path, call.request_id)
            rejected.append({"item": identifier, "problem": body})
    return accepted, rejected


async def _in_subtree(node: Node, issuer: str, caller: str) -> bool:
    if issuer == caller:
        return True
    record = await node.federation.lookup(issuer)
    return record is not None and record.get("parentNodeCode") == caller


def _withdraw_copy(db: sqlite3.Connection, resource_id: str, origin: str, now: str) -> None:
    row = db.execute(
        "SELECT record FROM resources WHERE resource_id = ?", (resource_id,)
    ).fetchone()
    if row is not None:
        write_entry(db, json_record(row), origin=origin, withdrawn_at=now)


async def _peers(node: Node) -> list[dict[str, Any]]:
    federation = node.federation
    found: dict[str, dict[str, Any]] = {}
    if node.config.role != "national":
        for relation, info in (("national", federation.national), ("parent", federation.parent)):
            record = await federation.lookup(info["nodeCode"])
            if record is not None:
                found[record["nodeCode"]] = _peer(record, relation)
    for record in await federation.children():
        found.setdefault(record["nodeCode"], _peer(record, "child"))
    return list(found.values())


def _peer(record: dict[str, Any], relation: str) -> dict[str, Any]:
    fields = ("nodeCode", "role", "endpoint", "status")
    return {"relation": relation, **{key: record[key] for key in fields}}
