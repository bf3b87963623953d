"""Helpers of the monitoring tests: metric records, bounded waits for records to arrive or go
stale, and the roll-up re-derived from the node's own fresh records.

Records are told apart from everything else on the node by their L0 `name`
(`conformance.r<run>.<what>`) and their timestamps. The roll-up check reads the roll-up, every
fresh record and the roll-up again, and judges only when the two roll-ups agree (records keep
arriving and expiring), at most `ROLLUP_ATTEMPTS` times.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from spec import Spec

ARRIVAL_DEADLINE_S = 60.0  # upward flows: the 60 s CPIN-MON-011 allows, and no less
POLL_S = 0.25
PAGE_LIMIT = 100
MAX_PAGES = 50
ROLLUP_ATTEMPTS = 3
MAX_ROLLUP_RESOURCES = 300


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now_at(offset_s: float = 0.0) -> str:
    return stamp(datetime.now(UTC) + timedelta(seconds=offset_s))


def probe_name(run_id: str, what: str) -> str:
    """A unique L0 name; `what` is lower-case letters, digits and underscores."""
    return f"conformance.r{run_id[:8].lower()}.{what}_{uuid.uuid4().hex[:8]}"


def subject(node_code: str, resource_id: str | None = None) -> dict[str, str]:
    return {"nodeCode": node_code, **({"resourceId": resource_id} if resource_id else {})}


def l0(
    about: dict[str, str],
    name: str,
    value: float,
    unit: str = "percent",
    *,
    timestamp: str | None = None,
    validity_s: int = 300,
    precision: str | None = None,
    category: str = "compute",
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "subject": about,
        "level": "L0",
        "category": category,
        "name": name,
        "value": value,
        "unit": unit,
        "timestamp": timestamp or now_at(),
        "validitySeconds": validity_s,
    }
    if precision is not None:
        record["precision"] = precision
    return record


def score(
    about: dict[str, str], level: str, value: float, *, category: str | None = None,
    timestamp: str | None = None, validity_s: int = 300,
) -> dict[str, Any]:  # fmt: skip
    record: dict[str, Any] = {
        "subject": about,
        "level": level,
        "value": value,
        "unit": "score",
        "timestamp": timestamp or now_at(),
        "validitySeconds": validity_s,
    }
    if category is not None:
        record["category"] = category
    return record


def push(node: NodeClient, records: list[dict[str, Any]]) -> Any:
    return node.post("/v1/metrics", json={"records": records})


def push_accepted(node: NodeClient, contract: Contract, records: list[dict[str, Any]]) -> None:
    """A push every record of which the node must take (the test's own data)."""
    response = push(node, records)
    expect_status(response, 200)
    result = contract.expect_json(response, "schemas/metric-record.json#/$defs/MetricPushResult")
    assert not result["rejected"], f"valid, fresh records were refused: {result['rejected']}"


def query(node: NodeClient, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every record queryMetrics gives for `params`, at most MAX_PAGES pages."""
    sent = {**params, "limit": PAGE_LIMIT}
    for _ in range(MAX_PAGES):
        response = node.get("/v1/metrics", params=sent)
        expect_status(response, 200)
        page = body_of(response)
        yield from page.get("items", [])
        if not page.get("nextCursor"):
            return
        sent["cursor"] = page["nextCursor"]


def same_measurement(stored: dict[str, Any], pushed: dict[str, Any]) -> bool:
    keys = ("level", "category", "name", "precision")
    return (
        stored.get("subject") == pushed["subject"]
        and all(stored.get(k) == pushed.get(k) for k in keys)
        and instant(stored["timestamp"]) == instant(pushed["timestamp"])
    )


def stored_copies(node: NodeClient, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The records the node holds for this measurement."""
    params = {"nodeCode": record["subject"]["nodeCode"], "level": record["level"],
              "since": record["timestamp"]}  # fmt: skip
    if "resourceId" in record["subject"]:
        params["resourceId"] = record["subject"]["resourceId"]
    return [item for item in query(node, params) if same_measurement(item, record)]


def wait_for(check: Callable[[], bool], deadline_s: float) -> bool:
    ends = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() >= ends:
            return False
        time.sleep(POLL_S)
    return True


def wait_until_stale(record: dict[str, Any]) -> None:
    """Sleep until now - timestamp exceeds the record's validity, with a margin."""
    ends = instant(record["timestamp"]) + timedelta(seconds=record["validitySeconds"] + 0.5)
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()))


# -- roll-up ------------------------------------------------------------------------------


@cache
def _unit_factors(spec: Spec) -> dict[str, float]:
    return {e["const"]: float(e["x-si"]) for e in spec.codelist("unit") if "x-si" in e}


@cache
def precision_units(spec: Spec) -> dict[str, str]:
    return {e["const"]: e["x-unit"] for e in spec.codelist("precision")}


def _expected(
    spec: Spec, records: list[dict[str, Any]], listed: dict[str, bool]
) -> dict[str, tuple[float, int, float, int]]:
    """Per precision: (peak, resources) from listed resources, and the same with the
    resources the catalogue does not know added (either reading of the spec is accepted)."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["precision"], record["subject"]["resourceId"])
        kept = newest.get(key)
        if kept is None or instant(record["timestamp"]) > instant(kept["timestamp"]):
            newest[key] = record
    factors, units = _unit_factors(spec), precision_units(spec)
    figures: dict[str, tuple[float, int, float, int]] = {}
    for (precision, resource), record in newest.items():
        value = float(record["value"]) * factors[record["unit"]] / factors[units[precision]]
        peak, count, peak_all, count_all = figures.get(precision, (0.0, 0, 0.0, 0))
        if listed[resource]:
            peak, count = peak + value, count + 1
        figures[precision] = (peak, count, peak_all + value, count_all + 1)
    return figures


def rollup_findings(
    node: NodeClient, contract: Contract, spec: Spec
) -> tuple[dict[str, Any], list[str]]:
    """The roll-up and what is wrong with it against the node's fresh records: precisions
    listed twice, units that do not suit the precision, figures that are not the sum of each
    resource's most recent fresh record at that precision (CPIN-MON-014, CPIN-MON-015)."""
    listed: dict[str, bool] = {}
    for _ in range(ROLLUP_ATTEMPTS):
        before = _rollup(node, contract)
        records = [r for r in query(node, {"fresh": "true"})
                   if r.get("precision") and r["subject"].get("resourceId")]  # fmt: skip
        after = _rollup(node, contract)
        if before["byPrecision"] == after["byPrecision"]:
            break
    else:
        precondition(False, "the roll-up kept changing while the suite read the records")
    for resource in {r["subject"]["resourceId"] for r in records} - set(listed):
        precondition(len(listed) < MAX_ROLLUP_RESOURCES, "too many resources to re-derive")
        status = node.get(f"/v1/resources/{resource}").status_code
        listed[resource] = status == 200
    return after, _compare(after, _expected(spec, records, listed), spec)


def _rollup(node: NodeClient, contract: Contract) -> dict[str, Any]:
    response = node.get("/v1/monitoring/rollup")
    expect_status(response, 200)
    return dict(contract.expect_json(response, "schemas/rollup.json"))


def _compare(
    rollup: dict[str, Any], expected: dict[str, tuple[float, int, float, int]], spec: Spec
) -> list[str]:
    findings = []
    units = precision_units(spec)
    given: dict[str, dict[str, Any]] = {}
    for figure in rollup["byPrecision"]:
        precision = figure["precision"]
        if precision in given:
            findings.append(f"CPIN-MON-014: precision {precision} is listed twice")
        given[precision] = figure
        if figure["peak"]["unit"] != units[precision]:
            findings.append(f"CPIN-MON-014: {precision} is given in {figure['peak']['unit']}, "
                            f"not {units[precision]}")  # fmt: skip
    for precision in sorted(set(given) | set(expected)):
        peak, count, peak_all, count_all = expected.get(precision, (0.0, 0, 0.0, 0))
        figure = given.get(precision)
        value = figure["peak"]["value"] if figure else 0.0
        resources = figure["resourceCount"] if figure else 0
        if (_close(value, peak) and resources == count) or (
            _close(value, peak_all) and resources == count_all
        ):
            continue
        same_unit = [p for p in expected if units[p] == units[precision]]
        summed = sum(expected[p][0] for p in same_unit)
        requirement = "CPIN-MON-015:"
        if len(same_unit) > 1 and _close(value, summed):
            requirement = f"CPIN-MON-014: it adds up {', '.join(sorted(same_unit))};"
        findings.append(
            f"{requirement} {precision} is {value} {units[precision]} over {resources} "
            f"resources; the fresh records give {round(peak, 6)} over {count}"
        )
    return findings


def _close(value: float, wanted: float) -> bool:
    return math.isclose(value, wanted, rel_tol=1e-6, abs_tol=1e-4)


def finding_ids(findings: list[str]) -> tuple[str, ...]:
    """The requirement ids the findings name (each starts with its id)."""
    return tuple(sorted({finding.split(":", 1)[0] for finding in findings}))


def figure_at(rollup: dict[str, Any], precision: str) -> dict[str, Any] | None:
    return next((f for f in rollup["byPrecision"] if f["precision"] == precision), None)
