"""A building block for selection faults: createSelection computed over a changed demand or
changed resource records, or answering a changed result, while the demand it echoes and
stores is the one it received (so the bug shows only where the fault puts it)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from reference_impl.calls import Call, Handler, Reply
from reference_impl.faults import FaultSite
from reference_impl.node import json_record

Record = dict[str, Any]
LISTED = "SELECT record FROM resources WHERE withdrawn_at IS NULL ORDER BY resource_id"


def reselect(
    site: FaultSite,
    *,
    demand: Callable[[Record], Record] | None = None,
    resource: Callable[[Record, Record], Record] | None = None,
    result: Callable[[Record], Record] | None = None,
) -> None:
    """`demand(received)` is what the ranking reads, `resource(demand, record)` each record it
    ranks (own and federation), `result(body)` what is answered and stored."""
    node = site.node
    received: list[Record] = []

    if resource is not None:
        see = resource
        rows = node.store.rows
        index = node.federation.national_index

        def rows_seen(sql: str, params: Any = ()) -> Any:
            found = rows(sql, params)
            if not received or sql.strip() != LISTED:
                return found
            return [{"record": json.dumps(see(received[-1], json_record(row)))} for row in found]

        async def index_seen() -> list[Record]:
            records = await index()
            return [see(received[-1], r) for r in records] if received else records

        node.store.rows = rows_seen  # type: ignore[method-assign]
        node.federation.national_index = index_seen  # type: ignore[method-assign]

    def wrap(handler: Handler) -> Handler:
        async def changed(call: Call) -> Reply:
            received.append(call.body)
            try:
                used = demand(dict(call.body)) if demand is not None else call.body
                reply = await handler(dataclasses.replace(call, body=used))
            finally:
                received.pop()
            body = {**reply.body, "demand": call.body}
            if result is not None:
                body = result(body)
            with node.store.transaction() as db:
                db.execute(
                    "UPDATE selections SET record = ? WHERE selection_id = ?",
                    (json.dumps(body, ensure_ascii=False), body["selectionId"]),
                )
            return Reply(reply.status, body, reply.headers)

        return changed

    site.wrap_handler("createSelection", wrap)
