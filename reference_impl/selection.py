"""Resource selection as a pure function: a demand and a catalogue in, a ranked selection out.

Pure so that determinism (CPIN-SEL-011) is a property of this code and not of a database: the
same demand, resources and availability give byte-identical output. The HTTP layer adds
`selectionId` and `createdAt` and stores the result.

Every constraint of the demand is a hard filter (CPIN-SEL-002..009, 019); the five criteria
only rank the resources that pass (CPIN-SEL-010, 012, 013). Performance is read at the demanded
precision alone: figures at other precisions are never looked at, let alone summed (SEL-003).

Criterion values, each in [0, 1]:

    performance   peak at the demanded precision / the best such peak among the matches
    price         (dearest - own) / (dearest - cheapest), prices per accelerator-second of the
                  matches priced per unit of time; 1 when they are all equal; 0 without one
    green         (renewable share + 1 / PUE) / 2; 0 without energy figures
    latency       x-max-rtt-ms of the tightest latency class / that of the resource's class
    availability  accelerators available now / accelerators in total
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from spec import Spec

HEALTHY = "ok"
"""The one health state a candidate may be in (CPIN-SEL-009); the code list has no flag for it."""

_MICRO = Decimal("0.000001")
_CRITERION_ZH = {
    "performance": "性能",
    "price": "价格",
    "green": "绿色低碳",
    "latency": "时延",
    "availability": "可用性",
}

Record = Mapping[str, Any]


@dataclass(frozen=True)
class Rules:
    """What selection reads from the spec: criteria and constraints in their order, how many
    candidates a demand gets by default, the serving states that take work, latency classes
    by round trip, and time units in seconds."""

    criteria: tuple[str, ...]
    constraints: tuple[str, ...]
    default_limit: int
    serving: frozenset[str]
    rtt_ms: Mapping[str, float]
    seconds: Mapping[str, float]

    @classmethod
    def from_spec(cls, spec: Spec) -> Rules:
        defs = spec.load("schemas/selection.json")
        excluded = defs["properties"]["excluded"]["properties"]["byConstraint"]
        return cls(
            criteria=tuple(defs["$defs"]["ScoreComponent"]["properties"]["criterion"]["enum"]),
            constraints=tuple(excluded["propertyNames"]["enum"]),
            default_limit=int(spec.load("schemas/demand.json")["properties"]["limit"]["default"]),
            # SEL-009 admits production only: the one state that both accepts and runs work.
            serving=frozenset(
                e["const"] for e in spec.codelist("serving-state") if e["x-accepts"] and e["x-runs"]
            ),
            rtt_ms={e["const"]: float(e["x-max-rtt-ms"]) for e in spec.codelist("latency-class")},
            seconds={
                e["const"]: float(e["x-si"])
                for e in spec.codelist("unit")
                if e.get("x-quantity") == "time"
            },
        )


@dataclass(frozen=True)
class _Match:
    """A resource that met every constraint, with the figures its score is computed from."""

    resource: Record
    peak: Record
    available: int
    total: int


def select(
    demand: Record,
    resources: Sequence[Record],
    *,
    rules: Rules,
    default_weights: Mapping[str, float],
    available: Mapping[str, int],
) -> dict[str, Any]:
    """The selection body without `selectionId` and `createdAt`.

    `resources` is the catalogue (withdrawn entries left out); `available` maps a resourceId to
    its accelerators available now, and a resource absent from it counts its whole capacity.
    """
    ordered = sorted(resources, key=lambda r: str(r["resourceId"]))
    free = {r["resourceId"]: _available(r, available) for r in ordered}
    matches: list[_Match] = []
    failures: dict[str, int] = {}
    excluded = 0
    for resource in ordered:
        failed, peak = _failures(demand, resource, free[resource["resourceId"]], rules)
        if failed:
            excluded += 1
            for constraint in failed:
                failures[constraint] = failures.get(constraint, 0) + 1
        elif peak is not None:
            total = int(resource.get("capacity", {}).get("acceleratorsTotal", 0))
            matches.append(_Match(resource, peak, free[resource["resourceId"]], total))
    weights = _weights(demand.get("weights") or default_weights, rules.criteria)
    scored = [_score(match, matches, weights, demand, rules) for match in matches]
    scored.sort(key=lambda c: (-Decimal(str(c["score"])), c["resourceId"]))
    limit = int(demand.get("limit", rules.default_limit))
    candidates = [{"rank": i + 1, **c} for i, c in enumerate(scored[:limit])]
    return {
        "demand": demand,
        "catalogueVersion": catalogue_version(ordered, free),
        "matched": len(matches),
        "candidates": candidates,
        "excluded": {
            "count": excluded,
            "byConstraint": {c: failures[c] for c in rules.constraints if c in failures},
        },
    }


def catalogue_version(resources: Sequence[Record], available: Mapping[str, int]) -> str:
    """Fingerprint of everything a selection reads: the records and the availability of each."""
    state = [[r, available.get(r["resourceId"])] for r in resources]
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _available(resource: Record, available: Mapping[str, int]) -> int:
    total = int(resource.get("capacity", {}).get("acceleratorsTotal", 0))
    return max(0, min(total, available.get(resource["resourceId"], total)))


def _failures(
    demand: Record, resource: Record, free: int, rules: Rules
) -> tuple[list[str], Record | None]:
    """The constraints `resource` fails, and the peak figure used when it fails none.

    Constraints on the accelerators are judged only when the ones before them hold (a CPU
    resource fails acceleratorType, not also precision); the others are judged independently,
    so a resource is counted under every constraint it fails (CPIN-SEL-017).
    """
    failed, peak = _accelerator_failures(demand, resource, free)
    location, regions = resource["location"]["province"], demand.get("regions")
    if regions is not None and location not in regions:
        failed.append("regions")
    wanted = demand.get("latencyClass")
    if wanted is not None and rules.rtt_ms[resource["latencyClass"]] > rules.rtt_ms[wanted]:
        failed.append("latencyClass")
    cap, price = demand.get("maxPrice"), resource.get("price")
    if cap is not None and not (
        price is not None
        and price["currency"] == cap["currency"]
        and price["per"] == cap["per"]
        and price["amount"] <= cap["amount"]
    ):
        failed.append("maxPrice")
    share, energy = demand.get("minRenewableShare"), resource.get("energy")
    if share is not None and (energy is None or energy["renewableShare"] < share):
        failed.append("minRenewableShare")
    if resource["servingState"] not in rules.serving:
        failed.append("servingState")
    if resource["healthState"] != HEALTHY:
        failed.append("healthState")
    return failed, (peak if not failed else None)


def _accelerator_failures(
    demand: Record, resource: Record, free: int
) -> tuple[list[str], Record | None]:
    """Type, precision, peak, memory, count and capacity, judged on the accelerator groups.

    A group qualifies when it is of the demanded type, has a figure at the demanded precision
    that reaches `minPeak` and has the memory asked for; the best qualifying figure is returned.
    """
    groups = [g for g in resource.get("accelerators", []) if g["kind"] == demand["acceleratorType"]]
    if not groups:
        return ["acceleratorType"], None
    at_precision = [
        (group, peak)
        for group in groups
        for peak in group["peak"]
        if peak["precision"] == demand["precision"]
    ]
    if not at_precision:
        return ["precision"], None
    floor, memory = demand.get("minPeak"), demand.get("minAcceleratorMemoryGiB")

    def fast(peak: Record) -> bool:
        return floor is None or (peak["unit"] == floor["unit"] and peak["value"] >= floor["value"])

    def roomy(group: Record) -> bool:
        return memory is None or group["memoryGiB"] >= memory

    failed = [
        name
        for name, met in (
            ("minPeak", any(fast(p) for _, p in at_precision)),
            ("minAcceleratorMemoryGiB", any(roomy(g) for g, _ in at_precision)),
        )
        if not met
    ]
    qualifying = [(g, p) for g, p in at_precision if fast(p) and roomy(g)]
    if not qualifying:
        return failed or ["minPeak", "minAcceleratorMemoryGiB"], None
    count = int(demand["acceleratorCount"])
    if sum(g["count"] for g, _ in qualifying) < count:
        return ["acceleratorCount"], None
    if free < count:
        return ["capacity"], None
    return [], max((p for _, p in qualifying), key=lambda p: p["value"])


def _weights(given: Mapping[str, float], criteria: Sequence[str]) -> dict[str, Decimal]:
    """Weights normalised to sum exactly 1 at 6 decimal places (largest remainder, CPIN-SEL-013)."""
    raw = {c: Fraction(Decimal(repr(float(given.get(c, 0))))) for c in criteria}
    total = sum(raw.values())
    shares = {c: raw[c] / total * 1_000_000 for c in criteria}
    micro = {c: int(shares[c]) for c in criteria}
    short = 1_000_000 - sum(micro.values())
    by_remainder = sorted(criteria, key=lambda c: (-(shares[c] - micro[c]), criteria.index(c)))
    for criterion in by_remainder[:short]:
        micro[criterion] += 1
    return {c: Decimal(micro[c]) * _MICRO for c in criteria}


def _score(
    match: _Match,
    matches: Sequence[_Match],
    weights: Mapping[str, Decimal],
    demand: Record,
    rules: Rules,
) -> dict[str, Any]:
    """One candidate (without its rank): components in criterion order, and their sum."""
    values = {
        "performance": _performance(match, matches, demand),
        "price": _price(match, matches, rules),
        "green": _green(match),
        "latency": _latency(match, rules),
        "availability": _availability(match),
    }
    components = []
    total = Decimal(0)
    for criterion in rules.criteria:
        value, reason = values[criterion]
        contribution = (weights[criterion] * value).quantize(_MICRO, ROUND_HALF_UP)
        total += contribution
        components.append(
            {
                "criterion": criterion,
                "weight": float(weights[criterion]),
                "value": float(value),
                "contribution": float(contribution),
                "reason": reason,
            }
        )
    resource = match.resource
    return {
        "resourceId": resource["resourceId"],
        "nodeCode": resource["issuer"],
        "score": float(total),
        "components": components,
        "reason": _summary(total, components),
    }


def _fraction(numerator: float, denominator: float) -> Decimal:
    """numerator / denominator in [0, 1], rounded down to 6 places so it never passes 1."""
    if denominator <= 0:
        return Decimal(0)
    exact = Decimal(repr(float(numerator))) / Decimal(repr(float(denominator)))
    return min(Decimal(1), max(Decimal(0), exact)).quantize(_MICRO, ROUND_FLOOR)


def _performance(
    match: _Match, matches: Sequence[_Match], demand: Record
) -> tuple[Decimal, dict[str, str]]:
    best = max(m.peak["value"] for m in matches)
    own, unit, precision = match.peak["value"], match.peak["unit"], demand["precision"]
    value = _fraction(own, best)
    return value, {
        "zh": f"{precision}单卡峰值{_num(own)} {unit}，匹配资源中最高为{_num(best)} {unit}，"
        f"{_num(own)} ÷ {_num(best)} = {_num(value)}。",
        "en": f"{precision} peak {_num(own)} {unit} per accelerator against the best match's "
        f"{_num(best)} {unit}: {_num(own)} / {_num(best)} = {_num(value)}.",
    }


def _per_second(resource: Record, rules: Rules) -> float | None:
    """Price of one accelerator-second, when the resource is priced per unit of time."""
    price = resource.get("price")
    if price is None or price["per"] not in rules.seconds:
        return None
    return float(price["amount"]) / rules.seconds[price["per"]]


def _price(
    match: _Match, matches: Sequence[_Match], rules: Rules
) -> tuple[Decimal, dict[str, str]]:
    own = _per_second(match.resource, rules)
    if own is None:
        return Decimal(0), {
            "zh": "未给出按时间计费的单卡价格，价格得分为0。",
            "en": "No price per accelerator per unit of time is given, so the value is 0.",
        }
    prices = [p for p in (_per_second(m.resource, rules) for m in matches) if p is not None]
    low, high = min(prices), max(prices)
    value = Decimal(1) if high == low else _fraction(high - own, high - low)
    price = match.resource["price"]
    per, scale = price["per"], rules.seconds[price["per"]]
    amount, cheapest, dearest = _num(price["amount"]), _num(low * scale), _num(high * scale)
    return value, {
        "zh": f"单卡价格{amount}元/{per}，匹配资源价格区间{cheapest}至{dearest}元/{per}，"
        f"归一化得分{_num(value)}。",
        "en": f"Price CNY {amount} per accelerator per {per}, within the range of the matches "
        f"from CNY {cheapest} to {dearest} per {per}, normalised to {_num(value)}.",
    }


def _green(match: _Match) -> tuple[Decimal, dict[str, str]]:
    energy = match.resource.get("energy")
    if energy is None:
        return Decimal(0), {
            "zh": "未给出能效数据（绿电占比、PUE），绿色低碳得分为0。",
            "en": "No energy figures (renewable share, PUE) are given, so the value is 0.",
        }
    share, pue = energy["renewableShare"], energy["pue"]
    exact = (Decimal(repr(float(share))) + 1 / Decimal(repr(float(pue)))) / 2
    value = min(Decimal(1), exact).quantize(_MICRO, ROUND_FLOOR)
    formula = f"({_num(share)} + 1 ÷ {_num(pue)}) ÷ 2 = {_num(value)}"
    return value, {
        "zh": f"绿电占比{_num(share)}，PUE {_num(pue)}：{formula}。",
        "en": f"Renewable share {_num(share)}, PUE {_num(pue)}: {formula.replace('÷', '/')}.",
    }


def _latency(match: _Match, rules: Rules) -> tuple[Decimal, dict[str, str]]:
    latency_class = match.resource["latencyClass"]
    own, tightest = rules.rtt_ms[latency_class], min(rules.rtt_ms.values())
    value = _fraction(tightest, own)
    return value, {
        "zh": f"时延等级{latency_class}（往返时延不超过{_num(own)}毫秒），最严等级为"
        f"{_num(tightest)}毫秒：{_num(tightest)} ÷ {_num(own)} = {_num(value)}。",
        "en": f"Latency class {latency_class} (round trip at most {_num(own)} ms) against the "
        f"tightest class's {_num(tightest)} ms: {_num(tightest)} / {_num(own)} = {_num(value)}.",
    }


def _availability(match: _Match) -> tuple[Decimal, dict[str, str]]:
    value = _fraction(match.available, match.total)
    return value, {
        "zh": f"可用加速卡{match.available}张，共{match.total}张，比例{_num(value)}。",
        "en": f"{match.available} of {match.total} accelerators available: {_num(value)}.",
    }


def _summary(score: Decimal, components: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Why the candidate ranks where it does: its score and the criterion that weighs most."""
    top = max(components, key=lambda c: c["contribution"])
    if top["contribution"] == 0:
        return {
            "zh": f"满足需求的全部约束，综合得分{_num(score)}，各项加权得分均为0。",
            "en": f"Meets every constraint of the demand; score {_num(score)}, "
            "no criterion contributes.",
        }
    lead = _num(top["contribution"])
    return {
        "zh": f"满足需求的全部约束，综合得分{_num(score)}，贡献最大的是"
        f"{_CRITERION_ZH.get(top['criterion'], top['criterion'])}（{lead}）。",
        "en": f"Meets every constraint of the demand; score {_num(score)}, "
        f"led by {top['criterion']} ({lead}).",
    }


def _num(number: float | Decimal) -> str:
    """A figure as people write it: at most 6 decimals, no trailing zeros, no exponent."""
    exact = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    text = format(exact.quantize(_MICRO, ROUND_HALF_UP).normalize(), "f")
    return "0" if text in {"-0", "0"} else text
