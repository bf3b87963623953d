"""federation: what a child node reports upward, who a node exchanges with, and the
federation's part in other classes' operations.

A report is accepted only from a direct child (its parent in the national registry is this
node: CPIN-FED-004), and each item only when it lies in the child's subtree, that is it
carries the child's NodeCode or that of one of the child's own children (CPIN-FED-005).
An aggregated copy keeps the record of origin unchanged (CPIN-AGG-022) and says in `origin`
which node holds that record (resource.json).

Wired into selection at import (the hook it leaves for the federation layer): selection
sees the national index (CPIN-SEL-015).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from reference_impl.api import selection
from reference_impl.api.aggregation import write_entry
from reference_impl.api.identification import rules, store_reported
from reference_impl.calls import Call, Reply, decode_cursor, handles, page
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem

log = logging.getLogger("reference_impl.federation")


@handles("reportIdentifiers")
async def report_identifiers(call: Call) -> Reply:
    items = call.body["identifiers"]
    with _registry_needed():
        caller = await _child_caller(call)
        accepted, rejected = await _split(call, caller, items, lambda item: item["identifier"])
    with call.node.store.transaction() as db:
        for item in accepted:
            store_reported(db, item)
        call.node.audit(db, call, "federation.identifiers.reported", caller, status=200)
    return Reply(200, {"accepted": len(accepted), "rejected": rejected})


@handles("pushCatalogue")
async def push_catalogue(call: Call) -> Reply:
    upserts = call.body.get("upserts", [])
    withdrawals = call.body.get("withdrawals", [])
    with _registry_needed():
        caller = await _child_caller(call)
        kept, refused = await _split(call, caller, upserts, lambda record: record["resourceId"])
        gone, refused_gone = await _split(call, caller, withdrawals, lambda item: item)
    now = timestamp(call.node.now())
    with call.node.store.transaction() as db:
        for record in kept:
            write_entry(db, {**record, "origin": record["issuer"]}, origin=caller)
        for resource_id in gone:
            _withdraw_copy(db, resource_id, caller, now)
        call.node.audit(db, call, "federation.catalogue.pushed", caller, status=200)
    return Reply(200, {"accepted": len(kept) + len(gone), "rejected": refused + refused_gone})


@handles("listPeers")
async def list_peers(call: Call) -> Reply:
    """CPIN-FED-006: parent, children and the national node, as the registry gives them, and
    the other nodes this node has called (`peer`), ordered by NodeCode."""
    after = decode_cursor(call.query.get("cursor"))
    if after is not None and rules(call.node.spec).node_code_flaw(after):
        raise Problem("invalid-request", "The cursor is not one this node issued.")
    with _registry_needed():
        peers = await _peers(call.node)
    limit = call.query["limit"]
    ordered = [
        p for p in sorted(peers, key=lambda p: p["nodeCode"]) if not after or p["nodeCode"] > after
    ]
    return Reply(200, page(ordered[: limit + 1], limit, "nodeCode"))


@contextlib.contextmanager
def _registry_needed() -> Iterator[None]:
    """These operations document no 502/504: a national registry that cannot be read now
    makes the node unable to serve them for the moment, 503 (the caller retries)."""
    try:
        yield
    except Problem as problem:
        if problem.slug not in {"upstream-unavailable", "upstream-timeout"}:
            raise
        raise Problem(
            "service-unavailable",
            f"The national registry cannot be read now: {problem.detail}",
            headers={"Retry-After": "5"},
        ) from None


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
        if not federation.national:
            raise Problem("upstream-unavailable", "the national node has not been reached yet")
        for relation, info in (("national", federation.national), ("parent", federation.parent)):
            record = await federation.lookup(info["nodeCode"])
            if record is not None:
                found[record["nodeCode"]] = _peer(record, relation)
    for record in await federation.children():
        found.setdefault(record["nodeCode"], _peer(record, "child"))
    for code in federation.contacts.keys() - found.keys() - {node.node_code}:
        if (record := await federation.lookup(code)) is not None:
            found[code] = _peer(record, "peer")
    for code, peer in found.items():
        if code in federation.contacts:
            peer["lastContactAt"] = timestamp(federation.contacts[code])
    return list(found.values())


def _peer(record: dict[str, Any], relation: str) -> dict[str, Any]:
    fields = ("nodeCode", "role", "endpoint", "status")
    return {"relation": relation, **{key: record[key] for key in fields}}


# -- selection: the whole federation (CPIN-SEL-015) ----------------------------------------


async def _federation_resources(node: Node) -> list[dict[str, Any]]:
    """The national index without what this node holds itself: its own table knows those
    better, withdrawals included, than a copy that is still on its way up."""
    index = await node.federation.national_index()
    if not index:
        return []
    known = {row["resource_id"] for row in node.store.rows("SELECT resource_id FROM resources")}
    return [record for record in index if record["resourceId"] not in known]


selection.federation_resources = _federation_resources
