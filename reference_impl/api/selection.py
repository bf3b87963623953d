"""selection: rank the catalogue's resources for a demand, store the answer, read it back.

The candidates are every resource this node lists, its own and the copies its lower nodes
pushed up (reference_impl.api.aggregation), plus what `federation_resources` brings from the
rest of the federation (CPIN-SEL-015): the national node holds the whole index itself, a
regional or industry node needs the resources outside its subtree from above. The ranking is
the pure `reference_impl.selection.select`; this module adds the id and the time, and stores
the answer so that getSelection returns it byte for byte, never computed again (SEL-016).

Default weights, used when a demand gives none: every criterion 0.2, so that no criterion is
favoured unless the user asks for it. Selections are kept for 7 days (CPIN-SEL-018 asks 24 h).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from functools import cache
from typing import Any

from reference_impl.api.aggregation import listed
from reference_impl.calls import Call, Reply, handles
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem
from reference_impl.selection import Rules, select
from reference_impl.store import schema
from spec import Spec

schema("""
CREATE TABLE IF NOT EXISTS selections (
  selection_id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS selections_created ON selections(created_at);
""")

DEFAULT_WEIGHTS = {
    "performance": 0.2,
    "price": 0.2,
    "green": 0.2,
    "latency": 0.2,
    "availability": 0.2,
}
RETENTION = timedelta(days=7)


async def nothing_beyond(node: Node) -> list[dict[str, Any]]:
    """Until the federation layer is wired: the node selects among what it lists."""
    return []


def whole_capacity(node: Node) -> Mapping[str, int]:
    """Until the scheduling layer is wired: every resource has all its accelerators free."""
    return {}


federation_resources: Callable[[Node], Awaitable[list[dict[str, Any]]]] = nothing_beyond
"""Resource records of the federation that this node does not list (at a regional or industry
node, those outside its subtree, from the national index). Raise Problem upstream-unavailable
or upstream-timeout when they cannot be had (CPIN-FED-008). Replaced by the federation layer."""

available_now: Callable[[Node], Mapping[str, int]] = whole_capacity
"""resourceId -> accelerators available now (total - allocated to tasks that are not terminal)
for the resources whose allocation this node knows; the others count their whole capacity.
Replaced by the scheduling layer."""


@handles("createSelection")
async def create_selection(call: Call) -> Reply:
    node = call.node
    resources = {r["resourceId"]: r for r in await federation_resources(node)}
    resources.update((r["resourceId"], r) for r in listed(node))
    ranked = select(
        call.body,
        list(resources.values()),
        rules=_rules(node.spec),
        default_weights=DEFAULT_WEIGHTS,
        available=available_now(node),
    )
    now = node.now()
    selection_id = str(uuid.uuid4())
    record = {"selectionId": selection_id, "createdAt": timestamp(now), **ranked}
    with node.store.transaction() as db:
        db.execute("DELETE FROM selections WHERE created_at < ?", (timestamp(now - RETENTION),))
        db.execute(
            "INSERT INTO selections (selection_id, created_at, record) VALUES (?, ?, ?)",
            (selection_id, record["createdAt"], json.dumps(record, ensure_ascii=False)),
        )
        node.audit(db, call, "selection.created", selection_id, status=201)
    return Reply(201, record, {"Location": f"/v1/selections/{selection_id}"})


@handles("getSelection")
async def get_selection(call: Call) -> Reply:
    selection_id = call.path["selectionId"]
    row = call.node.store.row(
        "SELECT record FROM selections WHERE selection_id = ?", (selection_id,)
    )
    if row is None:
        raise Problem("not-found", f"There is no selection {selection_id} at this node.")
    return Reply(200, json_record(row))


@cache
def _rules(spec: Spec) -> Rules:
    return Rules.from_spec(spec)
