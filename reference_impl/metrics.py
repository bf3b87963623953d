"""Monitoring rules as pure functions: freshness, per-record checks and the roll-up by precision.

Time is handled in integer microseconds since the epoch, so the freshness boundary is exact:
a record exactly `validitySeconds` old is still fresh (now - timestamp <= validitySeconds).
Units, ranges and precisions come from the spec's code lists; nothing here restates them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from spec import Spec

# CPIN-MON-005: how far ahead of the node's clock a timestamp may lie. The spec states it
# only in the requirement text, so it lives here once, named.
FUTURE_TOLERANCE_SECONDS = 60

_MICRO = 1_000_000
_INSTANT = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")

FieldError = dict[str, str]
"""problem.json#/$defs/FieldError: {"pointer", "message", "rule"}."""


def instant(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 UTC timestamp (fractions below 1 us are
    dropped, so two spellings of one instant compare equal)."""
    match = _INSTANT.fullmatch(text)
    if match is None:
        raise ValueError(f"not a UTC RFC 3339 timestamp: {text}")
    whole = datetime.fromisoformat(match[1]).replace(tzinfo=UTC)
    micros = int((match[2] or "0").ljust(6, "0")[:6])
    return int(whole.timestamp()) * _MICRO + micros


def micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, without float rounding."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _MICRO + delta.microseconds


def is_fresh(measured: int, validity_seconds: int, now: int) -> bool:
    """The freshness rule: now - timestamp <= validitySeconds (CPIN-MON-007, CPIN-MON-008)."""
    return now - measured <= validity_seconds * _MICRO


def arrival_refusal(record: Mapping[str, Any], now: int) -> str | None:
    """Why a record is refused as stale-metric on arrival (CPIN-MON-005, CPIN-MON-007)."""
    measured = instant(record["timestamp"])
    ahead = measured - now
    if ahead > FUTURE_TOLERANCE_SECONDS * _MICRO:
        return (
            f"timestamp is {ahead / _MICRO:g} s after the node's time,"
            f" more than {FUTURE_TOLERANCE_SECONDS} s."
        )
    if not is_fresh(measured, record["validitySeconds"], now):
        age = (now - measured) / _MICRO
        return (
            f"now - timestamp is {age:g} s, more than validitySeconds {record['validitySeconds']}."
        )
    return None


def subject_refusal(subject: Mapping[str, str], allowed: Iterable[str]) -> str | None:
    """Why the caller may not report on this subject (CPIN-MON-013): the subject's node must be
    one the caller answers for, and a resource is held by the node whose NodeCode it carries."""
    node_code = subject["nodeCode"]
    if node_code not in set(allowed):
        return f"{node_code} is neither the pushing node nor a node below it."
    resource = subject.get("resourceId")
    if resource is not None and resource[:9] != node_code:
        return f"{resource} is not a resource of {node_code}: it carries {resource[:9]}."
    return None


def batch_errors(spec: Spec, records: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """What the batch schema cannot say, each a 400 for the whole batch: a value outside its
    unit's x-range (score 0-10, percent 0-100; CPIN-MON-003), a throughput unit that does not
    suit its precision (CPIN-MON-014) and a window that ends before it starts."""
    errors: list[FieldError] = []
    ranges, quantities = _unit_ranges(spec), _unit_quantities(spec)
    precision_units = _precision_units(spec)
    for i, record in enumerate(records):
        unit, value = record["unit"], record["value"]
        if unit in ranges and not ranges[unit][0] <= value <= ranges[unit][1]:
            low, high = ranges[unit]
            errors.append(
                _error(i, "value", f"a value in {unit} lies in [{low}, {high}]", "CPIN-MON-003")
            )
        precision = record.get("precision")
        if precision is not None:
            expected = precision_units[precision]
            if quantities.get(unit) != quantities.get(expected):
                message = f"a {precision} figure is given in {expected} or a unit convertible to it"
                errors.append(_error(i, "unit", message, "CPIN-MON-014"))
        window = record.get("window")
        if window is not None and instant(window["end"]) < instant(window["start"]):
            errors.append(_error(i, "window", "the window ends before it starts", "CPIN-MON-001"))
    return errors


def dedup_key(record: Mapping[str, Any]) -> str:
    """Identity of a measurement (CPIN-MON-006): subject, level, category (L1) or name (L0),
    precision and the instant measured; a record with the same key is not stored twice."""
    subject = record["subject"]
    what = record.get("name") if record["level"] == "L0" else record.get("category")
    parts = [
        subject["nodeCode"],
        subject.get("resourceId", ""),
        record["level"],
        what or "",
        record.get("precision", ""),
        str(instant(record["timestamp"])),
    ]
    return "|".join(parts)


@dataclass(frozen=True)
class Resource:
    """What the roll-up needs of a catalogue entry: its province and accelerators."""

    province: str | None
    accelerators: tuple[Mapping[str, Any], ...]

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> Resource:
        province = entry.get("location", {}).get("province")
        return cls(province, tuple(entry.get("accelerators", [])))

    def devices_at(self, precision: str) -> int:
        """Accelerators with a peak figure at this precision."""
        return sum(
            int(group.get("count", 0))
            for group in self.accelerators
            if any(peak.get("precision") == precision for peak in group.get("peak", []))
        )


def rollup(
    spec: Spec,
    records: Iterable[Mapping[str, Any]],
    catalogue: Mapping[str, Resource],
    now: int,
    *,
    province: str | None = None,
) -> list[dict[str, Any]]:
    """Computing power per precision (rollup.json#/$defs/PrecisionFigures), each precision
    once and in code-list order, never adding figures of different precisions (CPIN-MON-014).

    Only records about resources count. Each resource counts once per precision, with its most
    recent fresh record, converted to the precision's x-unit (CPIN-MON-015); stale records are
    counted in staleRecords and left out of every figure (CPIN-MON-008). Accelerators come
    from the resource's catalogue entry. `province` keeps only that province's resources.
    """
    fresh: dict[str, int] = {}
    stale: dict[str, int] = {}
    newest: dict[tuple[str, str], tuple[int, Mapping[str, Any]]] = {}
    for record in records:
        precision, resource = record.get("precision"), record["subject"].get("resourceId")
        if precision is None or resource is None:
            continue
        if province is not None and _province_of(resource, catalogue) != province:
            continue
        measured = instant(record["timestamp"])
        if not is_fresh(measured, record["validitySeconds"], now):
            stale[precision] = stale.get(precision, 0) + 1
            continue
        fresh[precision] = fresh.get(precision, 0) + 1
        kept = newest.get((precision, resource))
        if kept is None or measured > kept[0]:
            newest[(precision, resource)] = (measured, record)
    figures = []
    for precision, unit in _precision_units(spec).items():
        if precision not in fresh and precision not in stale:
            continue
        counted = {res: rec for (p, res), (_, rec) in newest.items() if p == precision}
        peak = sum(_convert(spec, rec["value"], rec["unit"], unit) for rec in counted.values())
        devices = sum(catalogue[r].devices_at(precision) for r in counted if r in catalogue)
        figures.append(
            {
                "precision": precision,
                "peak": {"value": round(peak, 6), "unit": unit},
                "resourceCount": len(counted),
                "acceleratorCount": devices,
                "freshRecords": fresh.get(precision, 0),
                "staleRecords": stale.get(precision, 0),
            }
        )
    return figures


def rollup_by_province(
    spec: Spec,
    records: Sequence[Mapping[str, Any]],
    catalogue: Mapping[str, Resource],
    now: int,
) -> list[dict[str, Any]]:
    """The same figures per province present, in province-code order."""
    provinces = sorted(
        {
            p
            for r in records
            if (res := r["subject"].get("resourceId")) and r.get("precision")
            if (p := _province_of(res, catalogue)) is not None
        }
    )
    return [
        {"province": p, "byPrecision": rollup(spec, records, catalogue, now, province=p)}
        for p in provinces
    ]


def _province_of(resource_id: str, catalogue: Mapping[str, Resource]) -> str | None:
    """The catalogue's location; else the province field of the issuing NodeCode, unless it is
    the national "00" (identification.md: NodeCode = NodeType Province ...)."""
    entry = catalogue.get(resource_id)
    if entry is not None and entry.province is not None:
        return entry.province
    code = resource_id[1:3]
    return None if code == "00" else code


def _convert(spec: Spec, value: float, unit: str, target: str) -> float:
    """A value in `unit` expressed in `target`, both of one quantity (checked on arrival)."""
    factors = _unit_factors(spec)
    return float(value) * factors[unit] / factors[target]


def _error(index: int, member: str, message: str, rule: str) -> FieldError:
    return {"pointer": f"/records/{index}/{member}", "message": message, "rule": rule}


@cache
def _precision_units(spec: Spec) -> dict[str, str]:
    """Precision -> the unit of its peak figures (precision code list x-unit), in list order."""
    return {entry["const"]: entry["x-unit"] for entry in spec.codelist("precision")}


@cache
def _unit_ranges(spec: Spec) -> dict[str, tuple[float, float]]:
    return {e["const"]: tuple(e["x-range"]) for e in spec.codelist("unit") if "x-range" in e}


@cache
def _unit_quantities(spec: Spec) -> dict[str, str]:
    return {entry["const"]: entry["x-quantity"] for entry in spec.codelist("unit")}


@cache
def _unit_factors(spec: Spec) -> dict[str, float]:
    return {e["const"]: float(e["x-si"]) for e in spec.codelist("unit") if "x-si" in e}
