"""Faults of the selection class: constraints not applied, ranking and scores wrong, results
not stored as answered, the federation left out."""

from __future__ import annotations

import dataclasses
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from reference_impl.calls import Call, Handler, Reply
from reference_impl.faults import FaultSite, fault
from reference_impl.faults._aggregation_tools import rewrite_request_json
from reference_impl.faults._selection_tools import Record, reselect
from reference_impl.node import json_record
from reference_impl.problems import Problem

_MICRO = Decimal("0.000001")


def _dropping(member: str) -> Any:
    return lambda demand: {k: v for k, v in demand.items() if k != member}


@fault(
    "demand-share-clamped",
    breaks=["CPIN-SEL-001"],
    summary="a minimum renewable share above 1 is clamped to 1 instead of refused",
)
def demand_share_clamped(site: FaultSite) -> None:
    def clamp(body: Any) -> Any:
        if isinstance(body, dict) and isinstance(body.get("minRenewableShare"), int | float):
            body["minRenewableShare"] = min(1.0, body["minRenewableShare"])
        return body

    site.wrap_app(rewrite_request_json({"POST"}, "/v1/selections", clamp))


def _groups(record: Record) -> list[Record]:
    return list(record.get("accelerators", []))


@fault("accelerator-type-ignored", breaks=["CPIN-SEL-002"],
       summary="selection takes any accelerator kind for the demanded one")  # fmt: skip
def accelerator_type_ignored(site: FaultSite) -> None:
    def any_kind(demand: Record, record: Record) -> Record:
        groups = [{**g, "kind": demand["acceleratorType"]} for g in _groups(record)]
        return {**record, "accelerators": groups} if groups else record

    reselect(site, resource=any_kind)


@fault(
    "precision-fallback",
    breaks=["CPIN-SEL-002", "CPIN-SEL-003"],
    summary="a device without a figure at the demanded precision is judged by its best other one",
)
def precision_fallback(site: FaultSite) -> None:
    def fallback(demand: Record, record: Record) -> Record:
        precision = demand["precision"]
        groups = []
        for group in _groups(record):
            if not any(p["precision"] == precision for p in group["peak"]):
                best = max(group["peak"], key=lambda p: p["value"])
                unit = demand.get("minPeak", {}).get("unit", best["unit"])
                borrowed = {**best, "precision": precision, "unit": unit}
                group = {**group, "peak": [*group["peak"], borrowed]}
            groups.append(group)
        return {**record, "accelerators": groups} if groups else record

    reselect(site, resource=fallback)


@fault(
    "peak-summed-across-precisions",
    breaks=["CPIN-SEL-003"],
    summary="the demanded precision's figure is taken as the sum over all of a device's figures",
)
def peak_summed_across_precisions(site: FaultSite) -> None:
    def summed(demand: Record, record: Record) -> Record:
        groups = []
        for group in _groups(record):
            total = sum(p["value"] for p in group["peak"])
            peaks = [{**p, "value": total} if p["precision"] == demand["precision"] else p
                     for p in group["peak"]]  # fmt: skip
            groups.append({**group, "peak": peaks})
        return {**record, "accelerators": groups} if groups else record

    reselect(site, resource=summed)


@fault("memory-ignored", breaks=["CPIN-SEL-004"],
       summary="selection ignores minAcceleratorMemoryGiB")  # fmt: skip
def memory_ignored(site: FaultSite) -> None:
    reselect(site, demand=_dropping("minAcceleratorMemoryGiB"))


@fault("regions-ignored", breaks=["CPIN-SEL-005"], summary="selection ignores regions")
def regions_ignored(site: FaultSite) -> None:
    reselect(site, demand=_dropping("regions"))


@fault("latency-class-ignored", breaks=["CPIN-SEL-006"],
       summary="selection ignores latencyClass")  # fmt: skip
def latency_class_ignored(site: FaultSite) -> None:
    reselect(site, demand=_dropping("latencyClass"))


@fault(
    "price-unit-ignored",
    breaks=["CPIN-SEL-007"],
    summary="maxPrice is compared with the amount of a price charged per another unit",
)
def price_unit_ignored(site: FaultSite) -> None:
    def same_unit(demand: Record, record: Record) -> Record:
        cap, price = demand.get("maxPrice"), record.get("price")
        if cap is None or price is None:
            return record
        return {**record, "price": {**price, "per": cap["per"]}}

    reselect(site, resource=same_unit)


@fault("green-share-ignored", breaks=["CPIN-SEL-008"],
       summary="selection ignores minRenewableShare")  # fmt: skip
def green_share_ignored(site: FaultSite) -> None:
    reselect(site, demand=_dropping("minRenewableShare"))


@fault(
    "unavailable-selected",
    breaks=["CPIN-SEL-009"],
    summary="resources that are draining or not healthy are selected as if in production",
)
def unavailable_selected(site: FaultSite) -> None:
    reselect(site, resource=lambda demand, r: {**r, "servingState": "production",
                                                "healthState": "ok"})  # fmt: skip


@fault("accelerator-count-ignored", breaks=["CPIN-SEL-019"],
       summary="selection ignores acceleratorCount")  # fmt: skip
def accelerator_count_ignored(site: FaultSite) -> None:
    reselect(site, demand=lambda demand: {**demand, "acceleratorCount": 1})


def _ranked(candidates: list[Record]) -> list[Record]:
    return [{**c, "rank": i + 1} for i, c in enumerate(candidates)]


@fault("ranking-by-id", breaks=["CPIN-SEL-010"],
       summary="candidates are ordered by resourceId, not by score")  # fmt: skip
def ranking_by_id(site: FaultSite) -> None:
    def by_id(body: Record) -> Record:
        return {**body, "candidates": _ranked(sorted(body["candidates"],
                                                     key=lambda c: c["resourceId"]))}  # fmt: skip

    reselect(site, result=by_id)


@fault(
    "availability-read-live",
    breaks=["CPIN-SEL-011"],
    summary="availability is sampled live at each request but left out of catalogueVersion",
)
def availability_read_live(site: FaultSite) -> None:
    def live(body: Record) -> Record:
        candidates = []
        for candidate in body["candidates"]:
            components, score = [], Decimal(0)
            for component in candidate["components"]:
                if component["criterion"] == "availability":
                    value = Decimal(random.randint(500_000, 1_000_000)) * _MICRO
                    weight = Decimal(repr(component["weight"]))
                    contribution = (weight * value).quantize(_MICRO, ROUND_HALF_UP)
                    component = {**component, "value": float(value),
                                 "contribution": float(contribution)}  # fmt: skip
                score += Decimal(repr(component["contribution"]))
                components.append(component)
            candidates.append({**candidate, "components": components, "score": float(score)})
        candidates.sort(key=lambda c: (-c["score"], c["resourceId"]))
        return {**body, "candidates": _ranked(candidates)}

    reselect(site, result=live)


@fault("reasons-without-figures", breaks=["CPIN-SEL-012"],
       summary="score components give a stock reason that states no figure")  # fmt: skip
def reasons_without_figures(site: FaultSite) -> None:
    stock = {"zh": "满足需求。", "en": "Meets the demand."}

    def stock_reasons(body: Record) -> Record:
        candidates = [
            {**c, "components": [{**k, "reason": stock} for k in c["components"]]}
            for c in body["candidates"]
        ]
        return {**body, "candidates": candidates}

    reselect(site, result=stock_reasons)


@fault(
    "weights-not-normalised",
    breaks=["CPIN-SEL-013"],
    summary="components report the demand's raw weights instead of weights summing to 1",
)
def weights_not_normalised(site: FaultSite) -> None:
    def raw(body: Record) -> Record:
        given = body["demand"].get("weights", {})
        candidates = [
            {
                **c,
                "components": [
                    {**k, "weight": given.get(k["criterion"], k["weight"])} for k in c["components"]
                ],
            }
            for c in body["candidates"]
        ]
        return {**body, "candidates": candidates}

    reselect(site, result=raw)


@fault("empty-selection-404", breaks=["CPIN-SEL-014"],
       summary="a demand nothing meets is answered 404")  # fmt: skip
def empty_selection_404(site: FaultSite) -> None:
    def not_found(body: Record) -> Record:
        if body["matched"] == 0:
            raise Problem("not-found", "No resource meets the demand.")
        return body

    reselect(site, result=not_found)


@fault(
    "selection-ignores-federation",
    breaks=["CPIN-SEL-015"],
    summary="selection ranks only what the node lists itself, not the national index",
    roles=["industry", "national"],
)
def selection_ignores_federation(site: FaultSite) -> None:
    async def nothing() -> list[Record]:
        return []

    site.node.federation.national_index = nothing  # type: ignore[method-assign]


@fault(
    "selection-recomputed-on-read",
    breaks=["CPIN-SEL-016"],
    summary="getSelection computes the selection again from its demand instead of storing it",
)
def selection_recomputed_on_read(site: FaultSite) -> None:
    create = site.handlers.get("createSelection")

    def wrap(handler: Handler) -> Handler:
        async def recomputed(call: Call) -> Reply:
            row = call.node.store.row(
                "SELECT record FROM selections WHERE selection_id = ?",
                (call.path["selectionId"],),
            )
            if row is None or create is None:
                return await handler(call)
            stored = json_record(row)
            fresh = await create(dataclasses.replace(call, body=stored["demand"]))
            return Reply(200, {**fresh.body, "selectionId": stored["selectionId"]})

        return recomputed

    site.wrap_handler("getSelection", wrap)


@fault("exclusions-not-counted", breaks=["CPIN-SEL-017"],
       summary="a selection reports no excluded resources")  # fmt: skip
def exclusions_not_counted(site: FaultSite) -> None:
    reselect(site, result=lambda body: {**body, "excluded": {"count": 0, "byConstraint": {}}})
