"""Faults of the aggregation class: registration checks, filters, ETag/If-Match, withdrawal,
and the upward catalogue flow."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from reference_impl.api.aggregation import current
from reference_impl.calls import Call, Handler, Reply, etag_of
from reference_impl.faults import FaultSite, fault
from reference_impl.faults._aggregation_tools import rewrite_query, rewrite_request_json
from reference_impl.ids import uscc_check
from reference_impl.node import json_record
from reference_impl.problems import Problem

WRITES = {"POST", "PATCH"}
RESOURCES = "/v1/resources"
FILTERS = ("resType", "province", "servingState", "healthState", "latencyClass", "precision")


def _each_peak(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    groups = [g for g in body.get("accelerators", []) if isinstance(g, dict)]
    peaks = [p for g in groups for p in g.get("peak", []) if isinstance(p, dict)]
    cpu = body.get("cpu")
    if isinstance(cpu, dict):
        peaks += [p for p in cpu.get("peak", []) if isinstance(p, dict)]
    return peaks


def _energy(body: Any) -> dict[str, Any]:
    energy = body.get("energy") if isinstance(body, dict) else None
    return energy if isinstance(energy, dict) else {}


@fault(
    "precision-defaulted",
    breaks=["CPIN-AGG-002"],
    summary="a peak figure without a precision is taken as FP32 instead of refused",
    roles=["regional", "industry"],
)
def precision_defaulted(site: FaultSite) -> None:
    def default(body: Any) -> Any:
        for peak in _each_peak(body):
            peak.setdefault("precision", "FP32")
        return body

    site.wrap_app(rewrite_request_json(WRITES, RESOURCES, default))


@fault(
    "pue-clamped",
    breaks=["CPIN-AGG-003"],
    summary="a PUE below 1.0 is silently raised to 1.0 instead of refused",
    roles=["regional", "industry"],
)
def pue_clamped(site: FaultSite) -> None:
    def clamp(body: Any) -> Any:
        energy = _energy(body)
        if isinstance(energy.get("pue"), int | float):
            energy["pue"] = max(1.0, energy["pue"])
        return body

    site.wrap_app(rewrite_request_json(WRITES, RESOURCES, clamp))


@fault(
    "renewable-share-clamped",
    breaks=["CPIN-AGG-004"],
    summary="a renewable share outside [0, 1] is silently clamped instead of refused",
    roles=["regional", "industry"],
)
def renewable_share_clamped(site: FaultSite) -> None:
    def clamp(body: Any) -> Any:
        energy = _energy(body)
        if isinstance(energy.get("renewableShare"), int | float):
            energy["renewableShare"] = min(1.0, max(0.0, energy["renewableShare"]))
        return body

    site.wrap_app(rewrite_request_json(WRITES, RESOURCES, clamp))


@fault(
    "uscc-check-corrected",
    breaks=["CPIN-AGG-005"],
    summary="an owner USCC with a wrong check character is corrected instead of refused",
    roles=["regional", "industry"],
)
def uscc_check_corrected(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def lenient(call: Call) -> Reply:
            owner = dict(call.body.get("owner", {}))
            uscc = str(owner.get("uscc", ""))
            if len(uscc) == 18:
                owner["uscc"] = uscc[:17] + uscc_check(uscc[:17])
            return await handler(dataclasses.replace(call, body={**call.body, "owner": owner}))

        return lenient

    site.wrap_handler("registerResource", wrap)


def _query_fault(site: FaultSite, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    def wrap(handler: Handler) -> Handler:
        async def changed(call: Call) -> Reply:
            return await handler(dataclasses.replace(call, query=change(dict(call.query))))

        return changed

    site.wrap_handler("listResources", wrap)


def _without(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda query: {k: v for k, v in query.items() if k != name}


@fault("type-filter-ignored", breaks=["CPIN-AGG-006"],
       summary="listResources ignores the resType filter")  # fmt: skip
def type_filter_ignored(site: FaultSite) -> None:
    _query_fault(site, _without("resType"))


@fault("province-filter-ignored", breaks=["CPIN-AGG-008"],
       summary="listResources ignores the province filter")  # fmt: skip
def province_filter_ignored(site: FaultSite) -> None:
    _query_fault(site, _without("province"))


@fault("health-filter-ignored", breaks=["CPIN-AGG-009"],
       summary="listResources ignores the healthState filter")  # fmt: skip
def health_filter_ignored(site: FaultSite) -> None:
    _query_fault(site, _without("healthState"))


@fault("only-first-filter-applied", breaks=["CPIN-AGG-010"],
       summary="listResources applies only the first of several filters")  # fmt: skip
def only_first_filter_applied(site: FaultSite) -> None:
    def first_only(query: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in FILTERS if name in query]
        dropped = set(given[1:]) | ({"minPeak"} if "precision" in given[1:] else set())
        return {k: v for k, v in query.items() if k not in dropped}

    _query_fault(site, first_only)


@fault(
    "peak-filter-sums-precisions",
    breaks=["CPIN-AGG-007"],
    summary="minPeak is compared with the sum of a device's figures over all precisions",
)
def peak_filter_sums_precisions(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def summed(call: Call) -> Reply:
            query = dict(call.query)
            if "minPeak" not in query or "precision" not in query:
                return await handler(call)
            floor = float(query.pop("minPeak"))
            query.pop("precision")
            reply = await handler(dataclasses.replace(call, query=query))
            reply.body["items"] = [
                item
                for item in reply.body["items"]
                if any(
                    sum(p["value"] for p in group["peak"]) >= floor
                    for group in item.get("accelerators", [])
                )
            ]
            return reply

        return summed

    site.wrap_handler("listResources", wrap)


@fault(
    "invalid-filters-ignored",
    breaks=["CPIN-AGG-011"],
    summary="listResources drops filter values it does not know instead of answering 400",
)
def invalid_filters_ignored(site: FaultSite) -> None:
    spec = site.node.spec
    codes = {
        name: {str(e["const"]) for e in spec.codelist(codelist)}
        for name, codelist in (("resType", "resource-type"), ("precision", "precision"),
                               ("province", "province"), ("servingState", "serving-state"),
                               ("healthState", "health-state"), ("latencyClass", "latency-class"))
    }  # fmt: skip

    def valid(name: str, value: str) -> bool:
        if name == "minPeak":
            try:
                return float(value) > 0
            except ValueError:
                return False
        return name not in codes or (value in codes[name] and value != "00")

    site.wrap_app(
        rewrite_query({"GET"}, RESOURCES, lambda pairs: [(k, v) for k, v in pairs if valid(k, v)])
    )


@fault("resource-etag-weak", breaks=["CPIN-AGG-012"],
       summary="getResource answers a weak ETag (W/...)")  # fmt: skip
def resource_etag_weak(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def weak(call: Call) -> Reply:
            reply = await handler(call)
            if "ETag" in reply.headers:
                reply.headers["ETag"] = "W/" + reply.headers["ETag"]
            return reply

        return weak

    site.wrap_handler("getResource", wrap)


def _update_fault(site: FaultSite, if_match: Callable[[str | None, str], str | None]) -> None:
    """updateResource sees the If-Match that `if_match(given, current ETag)` makes of it."""

    def wrap(handler: Handler) -> Handler:
        async def lenient(call: Call) -> Reply:
            headers = {k: v for k, v in call.headers.items() if k != "if-match"}
            try:
                etag = etag_of(current(call.node, call.path["resourceId"]))
            except Problem:
                return await handler(call)
            changed = if_match(call.headers.get("if-match"), etag)
            if changed is not None:
                headers["if-match"] = changed
            return await handler(dataclasses.replace(call, headers=headers))

        return lenient

    site.wrap_handler("updateResource", wrap)


@fault("etag-ignored", breaks=["CPIN-AGG-013"],
       summary="updateResource without If-Match is applied instead of 428",
       roles=["regional", "industry"])  # fmt: skip
def etag_ignored(site: FaultSite) -> None:
    _update_fault(site, lambda given, etag: given if given is not None else etag)


@fault("stale-etag-accepted", breaks=["CPIN-AGG-014"],
       summary="updateResource applies a change whose If-Match is stale",
       roles=["regional", "industry"])  # fmt: skip
def stale_etag_accepted(site: FaultSite) -> None:
    _update_fault(site, lambda given, etag: etag if given is not None else None)


@fault(
    "merge-patch-replaces-objects",
    breaks=["CPIN-AGG-015"],
    summary="updateResource replaces nested objects instead of merging them (not RFC 7396)",
    roles=["regional", "industry"],
)
def merge_patch_replaces_objects(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def replacing(call: Call) -> Reply:
            try:
                record = current(call.node, call.path["resourceId"])
            except Problem:
                return await handler(call)
            body = dict(call.body)
            for name, value in body.items():
                if isinstance(value, dict) and isinstance(record.get(name), dict):
                    body[name] = {**{member: None for member in record[name]}, **value}
            return await handler(dataclasses.replace(call, body=body))

        return replacing

    site.wrap_handler("updateResource", wrap)


@fault("withdrawn-still-readable", breaks=["CPIN-AGG-016"],
       summary="getResource still answers 200 for a withdrawn resource",
       roles=["regional", "industry"])  # fmt: skip
def withdrawn_still_readable(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def readable(call: Call) -> Reply:
            try:
                return await handler(call)
            except Problem as problem:
                row = call.node.store.row(
                    "SELECT record FROM resources WHERE resource_id = ?",
                    (call.path["resourceId"],),
                )
                if problem.slug != "not-found" or row is None:
                    raise
                record = json_record(row)
                return Reply(200, record, {"ETag": etag_of(record)})

        return readable

    site.wrap_handler("getResource", wrap)


@fault("withdrawn-still-listed", breaks=["CPIN-AGG-017"],
       summary="listResources forgets to leave withdrawn resources out")  # fmt: skip
def withdrawn_still_listed(site: FaultSite) -> None:
    store = site.node.store
    rows = store.rows

    def every_row(sql: str, params: Any = ()) -> Any:
        return rows(sql.replace("withdrawn_at IS NULL AND resource_id >", "resource_id >"), params)

    store.rows = every_row  # type: ignore[method-assign]


@fault("foreign-prefix-not-found", breaks=["CPIN-AGG-018"],
       summary="update and withdrawal of another node's resource answer 404, not 403",
       roles=["regional", "industry"])  # fmt: skip
def foreign_prefix_not_found(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def looked_up(call: Call) -> Reply:
            resource_id = call.path["resourceId"]
            if resource_id[:9] != call.node.node_code:
                current(call.node, resource_id)
            return await handler(call)

        return looked_up

    site.wrap_handler("updateResource", wrap)
    site.wrap_handler("withdrawResource", wrap)


@fault(
    "catalogue-not-pushed",
    breaks=["CPIN-AGG-019", "CPIN-AGG-020"],
    summary="the node never pushes its catalogue to its parent",
    roles=["regional", "industry"],
)
def catalogue_not_pushed(site: FaultSite) -> None:
    async def nothing() -> int:
        return 0

    site.node.federation.report_catalogue = nothing  # type: ignore[method-assign]


@fault(
    "catalogue-push-late",
    breaks=["CPIN-AGG-020"],
    summary="catalogue changes wait 12 s before they are pushed to the parent",
    roles=["regional", "industry"],
)
def catalogue_push_late(site: FaultSite) -> None:
    federation = site.node.federation
    push = federation.report_catalogue
    first_seen: dict[int, float] = {}

    async def late() -> int:
        after = int(federation.remembered("reported.catalogue") or 0)
        row = site.node.store.row("SELECT MAX(seq) AS last FROM resources WHERE seq > ?", (after,))
        if row is None or row["last"] is None:
            return 0
        since = first_seen.setdefault(int(row["last"]), time.monotonic())
        return await push() if time.monotonic() - since >= 12.0 else 0

    federation.report_catalogue = late  # type: ignore[method-assign]


def _push_fault(site: FaultSite, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Upward catalogue pushes carry `change(body)`; None sends nothing (as if accepted)."""
    federation = site.node.federation
    push = federation._push

    async def changed(path: str, scope: str, body: Mapping[str, Any]) -> None:
        if path != "/v1/federation/catalogue":
            return await push(path, scope, body)
        sent = change(dict(body))
        if sent is not None:
            await push(path, scope, sent)
        return None

    federation._push = changed  # type: ignore[method-assign]


@fault(
    "withdrawals-not-pushed",
    breaks=["CPIN-AGG-021"],
    summary="withdrawals never travel upward: the parent keeps listing withdrawn resources",
    roles=["regional", "industry"],
)
def withdrawals_not_pushed(site: FaultSite) -> None:
    def upserts_only(body: dict[str, Any]) -> dict[str, Any] | None:
        body.pop("withdrawals", None)
        return body if body.get("upserts") else None

    _push_fault(site, upserts_only)


@fault(
    "copies-sum-precisions",
    breaks=["CPIN-AGG-022"],
    summary="pushed copies carry one peak figure per device: the sum over all precisions",
    roles=["regional", "industry"],
)
def copies_sum_precisions(site: FaultSite) -> None:
    def summed(body: dict[str, Any]) -> dict[str, Any]:
        upserts = []
        for record in body.get("upserts", []):
            groups = []
            for group in record.get("accelerators", []):
                first = group["peak"][0]
                total = sum(p["value"] for p in group["peak"])
                groups.append({**group, "peak": [{**first, "value": total}]})
            upserts.append({**record, **({"accelerators": groups} if groups else {})})
        return {**body, **({"upserts": upserts} if upserts else {})}

    _push_fault(site, summed)


@fault("conditional-get-ignored", breaks=["CPIN-AGG-023"],
       summary="getResource ignores If-None-Match and always answers 200")  # fmt: skip
def conditional_get_ignored(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def unconditional(call: Call) -> Reply:
            headers = {k: v for k, v in call.headers.items() if k != "if-none-match"}
            return await handler(dataclasses.replace(call, headers=headers))

        return unconditional

    site.wrap_handler("getResource", wrap)


@fault("list-etag-constant", breaks=["CPIN-AGG-024"],
       summary="listResources sends the same ETag whatever the page holds")  # fmt: skip
def list_etag_constant(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def constant(call: Call) -> Reply:
            reply = await handler(call)
            reply.headers["ETag"] = '"catalogue"'
            return reply

        return constant

    site.wrap_handler("listResources", wrap)
