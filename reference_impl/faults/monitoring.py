"""Faults of the monitoring class: batch validation, the freshness rule, deduplication,
queries, the monitoring status, the upward flow and the roll-up by precision."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from reference_impl import metrics
from reference_impl.api import monitoring as api
from reference_impl.calls import Call, Handler, Reply
from reference_impl.faults import FaultSite, fault
from reference_impl.faults._monitoring_tools import each_record, rewrite_request_body
from reference_impl.node import json_record, timestamp
from reference_impl.problems import Problem

PUSH_ROLES = ["regional", "national"]


def _wrap(site: FaultSite, operation: str, wrap: Callable[[Handler], Handler]) -> None:
    site.wrap_handler(operation, wrap)


def _on_push_records(site: FaultSite, change: Callable[[Call, dict[str, Any]], None]) -> None:
    """Change each pushed record before the handler judges it."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            for record in call.body["records"]:
                change(call, record)
            return await handler(call)

        return wrapped

    _wrap(site, "pushMetrics", wrap)


@fault(
    "metric-batch-partly-stored",
    breaks=["CPIN-MON-001"],
    summary="an invalid batch is answered 400, but its valid records are stored first",
    roles=PUSH_ROLES,
)
def metric_batch_partly_stored(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            try:
                return await handler(call)
            except Problem as problem:
                records = call.body["records"]
                flawed = {
                    int(e["pointer"].split("/")[2]) for e in problem.members.get("errors", [])
                }
                with call.node.store.transaction() as db:
                    for index, record in enumerate(records):
                        if index not in flawed:
                            api.store_record(db, record, call.node.node_code or "")
                raise

        return wrapped

    _wrap(site, "pushMetrics", wrap)


@fault(
    "window-order-unchecked",
    breaks=["CPIN-MON-001"],
    summary="a measurement window that ends before it starts is accepted (the window dropped)",
    roles=PUSH_ROLES,
)
def window_order_unchecked(site: FaultSite) -> None:
    def change(call: Call, record: dict[str, Any]) -> None:
        window = record.get("window")
        if window and metrics.instant(window["end"]) < metrics.instant(window["start"]):
            del record["window"]

    _on_push_records(site, change)


@fault(
    "unknown-unit-accepted",
    breaks=["CPIN-MON-002"],
    summary="a unit outside the unit code list is taken as a plain count",
    roles=PUSH_ROLES,
)
def unknown_unit_accepted(site: FaultSite) -> None:
    units = {entry["const"] for entry in site.node.spec.codelist("unit")}

    def change(record: dict[str, Any]) -> None:
        if record.get("unit") not in units:
            record["unit"] = "count"

    site.wrap_app(rewrite_request_body("POST", "/v1/metrics", each_record(change)))


@fault(
    "score-clamped",
    breaks=["CPIN-MON-003"],
    summary="L1 and L2 scores outside 0-10 are clamped into range instead of refused",
    roles=PUSH_ROLES,
)
def score_clamped(site: FaultSite) -> None:
    def change(record: dict[str, Any]) -> None:
        value = record.get("value")
        if record.get("level") in {"L1", "L2"} and isinstance(value, int | float):
            record["value"] = min(10, max(0, value))

    site.wrap_app(rewrite_request_body("POST", "/v1/metrics", each_record(change)))


@fault(
    "l2-category-dropped",
    breaks=["CPIN-MON-004"],
    summary="an L2 record that names a category is accepted, the category dropped",
    roles=PUSH_ROLES,
)
def l2_category_dropped(site: FaultSite) -> None:
    def change(record: dict[str, Any]) -> None:
        if record.get("level") == "L2":
            record.pop("category", None)

    site.wrap_app(rewrite_request_body("POST", "/v1/metrics", each_record(change)))


@fault(
    "future-timestamp-clamped",
    breaks=["CPIN-MON-005"],
    summary="a timestamp more than 60 s ahead is set to the node's time and the record stored",
    roles=PUSH_ROLES,
)
def future_timestamp_clamped(site: FaultSite) -> None:
    def change(call: Call, record: dict[str, Any]) -> None:
        now = call.node.now()
        if metrics.instant(record["timestamp"]) > metrics.micros(now + timedelta(seconds=60)):
            record["timestamp"] = timestamp(now)

    _on_push_records(site, change)


@fault(
    "stale-metric-restamped",
    breaks=["CPIN-MON-007"],
    summary="a record older than its validity is stamped with its arrival time and stored",
    roles=PUSH_ROLES,
)
def stale_metric_restamped(site: FaultSite) -> None:
    def change(call: Call, record: dict[str, Any]) -> None:
        now = call.node.now()
        if not metrics.is_fresh(metrics.instant(record["timestamp"]), record["validitySeconds"],
                                metrics.micros(now)):  # fmt: skip
            record["timestamp"] = timestamp(now)

    _on_push_records(site, change)


@fault(
    "duplicate-records-stored",
    breaks=["CPIN-MON-006"],
    summary="every pushed record is stored under a new key, so a repeated push is kept twice",
    roles=PUSH_ROLES,
)
def duplicate_records_stored(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            reply = await handler(call)
            refused = {item["index"] for item in reply.body["rejected"]}
            with call.node.store.transaction() as db:
                for index, record in enumerate(call.body["records"]):
                    if index in refused:
                        continue
                    measured = metrics.instant(record["timestamp"])
                    db.execute(
                        "INSERT INTO metric_records (dedup_key, node_code, resource_id, level,"
                        " category, measured, expires, pushed_by, record)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            f"{metrics.dedup_key(record)}|{uuid.uuid4()}",
                            record["subject"]["nodeCode"],
                            record["subject"].get("resourceId"),
                            record["level"],
                            record.get("category"),
                            measured,
                            measured + record["validitySeconds"] * 1_000_000,
                            call.node.node_code or "",
                            json.dumps({"recordId": str(uuid.uuid4()), **record}),
                        ),
                    )
            return reply

        return wrapped

    _wrap(site, "pushMetrics", wrap)


def _rollup(
    site: FaultSite,
    records_seen: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    fresh_at: Callable[[list[dict[str, Any]], int], int],
) -> None:
    """getRollup built like the node's own, with a planted bug in which records it reads
    (`records_seen`) or in the instant freshness is judged at (`fresh_at`)."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            node = call.node
            now = metrics.micros(node.now())
            catalogue = {
                row["resource_id"]: metrics.Resource.of(json_record(row))
                for row in node.store.rows(
                    "SELECT resource_id, record FROM resources WHERE withdrawn_at IS NULL"
                )
            }
            records = records_seen(
                [
                    json_record(row)
                    for row in node.store.rows(
                        "SELECT record FROM metric_records WHERE resource_id IS NOT NULL"
                        " AND json_extract(record, '$.precision') IS NOT NULL"
                    )
                    if json_record(row)["subject"]["resourceId"] in catalogue
                ]
            )
            when = fresh_at(records, now)
            body = {
                "scope": node.node_code,
                "time": timestamp(node.now()),
                "byPrecision": metrics.rollup(node.spec, records, catalogue, when),
            }
            return Reply(200, body)

        return wrapped

    _wrap(site, "getRollup", wrap)


@fault(
    "stale-records-in-rollup",
    breaks=["CPIN-MON-008"],
    summary="the roll-up judges freshness at the oldest record's time, so stale records count",
    roles=PUSH_ROLES,
)
def stale_records_in_rollup(site: FaultSite) -> None:
    def oldest(records: list[dict[str, Any]], now: int) -> int:
        return min((metrics.instant(r["timestamp"]) for r in records), default=now)

    _rollup(site, lambda records: records, oldest)


@fault(
    "rollup-counts-every-record",
    breaks=["CPIN-MON-015"],
    summary="the roll-up adds up every fresh record of a resource, not only its most recent",
    roles=PUSH_ROLES,
)
def rollup_counts_every_record(site: FaultSite) -> None:
    def one_resource_each(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen = []
        for index, record in enumerate(records):
            copied = copy.deepcopy(record)
            copied["subject"]["resourceId"] = f"{record['subject']['resourceId']}#{index}"
            seen.append(copied)
        return seen

    _rollup(site, one_resource_each, lambda records, now: now)


@fault(
    "rollup-sums-precisions",
    breaks=["CPIN-MON-014"],
    summary="each floating-point figure of the roll-up is the sum over every float precision",
    roles=PUSH_ROLES,
)
def rollup_sums_precisions(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            reply = await handler(call)
            figures = reply.body["byPrecision"]
            floats = [f for f in figures if f["peak"]["unit"] == "TFLOPS"]
            total = round(sum(f["peak"]["value"] for f in floats), 6)
            for figure in floats:
                figure["peak"]["value"] = total
            return reply

        return wrapped

    _wrap(site, "getRollup", wrap)


@fault(
    "stale-resource-reported-fresh",
    breaks=["CPIN-MON-008"],
    summary="getMonitoringStatus reports a resource fresh whenever it has any metric record",
    roles=["regional", "industry"],
)
def stale_resource_reported_fresh(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            reply = await handler(call)
            for resource in reply.body["resources"]:
                resource["fresh"] = "lastMetricAt" in resource
            return reply

        return wrapped

    _wrap(site, "getMonitoringStatus", wrap)


@fault(
    "metric-level-filter-ignored",
    breaks=["CPIN-MON-009"],
    summary="queryMetrics ignores its level filter",
    roles=PUSH_ROLES,
)
def metric_level_filter_ignored(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            call.query = {k: v for k, v in call.query.items() if k != "level"}
            return await handler(call)

        return wrapped

    _wrap(site, "queryMetrics", wrap)


def _status_rewrite(site: FaultSite, change: Callable[[dict[str, Any]], None]) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            reply = await handler(call)
            change(reply.body)
            return reply

        return wrapped

    _wrap(site, "getMonitoringStatus", wrap)


@fault(
    "status-health-invented",
    breaks=["CPIN-MON-010"],
    summary="getMonitoringStatus gives the node's health as 'up', a code outside the list",
    roles=["regional", "industry", "national"],
)
def status_health_invented(site: FaultSite) -> None:
    def change(body: dict[str, Any]) -> None:
        body["health"] = "up"

    _status_rewrite(site, change)


@fault(
    "status-omits-resources",
    breaks=["CPIN-MON-010"],
    summary="getMonitoringStatus lists none of the node's resources",
    roles=["regional", "industry"],
)
def status_omits_resources(site: FaultSite) -> None:
    def change(body: dict[str, Any]) -> None:
        body["resources"] = []

    _status_rewrite(site, change)


@fault(
    "metrics-not-reported-upward",
    breaks=["CPIN-MON-011"],
    summary="the node never pushes its metric records to its parent",
    roles=["regional", "industry"],
)
def metrics_not_reported_upward(site: FaultSite) -> None:
    async def report_metrics() -> int:
        return 0

    site.node.federation.report_metrics = report_metrics  # type: ignore[method-assign]


@fault(
    "foreign-subject-accepted",
    breaks=["CPIN-MON-013"],
    summary="pushMetrics stores records about nodes and resources outside the caller's subtree",
    roles=PUSH_ROLES,
)
def foreign_subject_accepted(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            reply = await handler(call)
            kept: list[Mapping[str, Any]] = []
            with call.node.store.transaction() as db:
                for item in reply.body["rejected"]:
                    if str(item["problem"]["type"]).endswith("/forbidden"):
                        api.store_record(db, call.body["records"][item["index"]], "")
                    else:
                        kept.append(item)
            accepted = len(call.body["records"]) - len(kept)
            return Reply(200, {"accepted": accepted, "rejected": kept})

        return wrapped

    _wrap(site, "pushMetrics", wrap)
