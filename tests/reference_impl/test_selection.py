"""reference_impl/selection.py: hard constraints, scoring, ranking and determinism."""

from __future__ import annotations

import copy
import json
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import spec
from reference_impl.ids import mint_resource_id
from reference_impl.selection import Rules, catalogue_version, select

RULES = Rules.from_spec(spec.default())
EQUAL = {"performance": 0.2, "price": 0.2, "green": 0.2, "latency": 0.2, "availability": 0.2}


def rid(serial: int, res_type: str = "GPU", node: str = "R4400001E") -> str:
    return mint_resource_id(node, res_type, serial)


def gpu(serial: int, **changes: Any) -> dict[str, Any]:
    """A GPU resource that meets DEMAND, changed by `changes` (None removes a member)."""
    record: dict[str, Any] = {
        "resourceId": rid(serial),
        "issuer": "R4400001E",
        "resType": "GPU",
        "name": {"zh": f"资源{serial}", "en": f"Resource {serial}"},
        "owner": {"uscc": "9144030071526726XG", "name": "广东粤算科技有限公司"},
        "location": {"province": "44"},
        "latencyClass": "5ms",
        "accelerators": [
            {
                "kind": "GPU",
                "model": "H20",
                "count": 128,
                "memoryGiB": 96,
                "peak": [
                    {"precision": "FP16", "value": 148, "unit": "TFLOPS"},
                    {"precision": "INT8", "value": 296, "unit": "TOPS"},
                ],
            }
        ],
        "energy": {"pue": 1.25, "renewableShare": 0.42},
        "price": {"amount": 9.8, "currency": "CNY", "per": "h"},
        "servingState": "production",
        "healthState": "ok",
        "capacity": {"acceleratorsTotal": 128},
        "createdAt": "2026-03-01T09:00:00Z",
        "updatedAt": "2026-03-01T09:00:00Z",
    }
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


DEMAND: dict[str, Any] = {
    "acceleratorType": "GPU",
    "precision": "FP16",
    "minPeak": {"value": 100, "unit": "TFLOPS"},
    "minAcceleratorMemoryGiB": 64,
    "acceleratorCount": 64,
    "regions": ["44", "45"],
    "latencyClass": "5ms",
    "maxPrice": {"amount": 12, "currency": "CNY", "per": "h"},
    "minRenewableShare": 0.3,
}


def run(
    resources: list[dict[str, Any]],
    demand: dict[str, Any] | None = None,
    available: dict[str, int] | None = None,
) -> dict[str, Any]:
    return select(
        demand if demand is not None else DEMAND,
        resources,
        rules=RULES,
        default_weights=EQUAL,
        available=available or {},
    )


def group(peaks: list[tuple[str, float]], count: int = 128, memory: float = 96) -> dict[str, Any]:
    return {
        "kind": "GPU",
        "model": "X",
        "count": count,
        "memoryGiB": memory,
        "peak": [
            {"precision": p, "value": v, "unit": "TOPS" if p.startswith("INT") else "TFLOPS"}
            for p, v in peaks
        ],
    }


def test_rules_read_from_spec() -> None:
    assert RULES.serving == {"production"}
    assert RULES.criteria == ("performance", "price", "green", "latency", "availability")
    assert RULES.rtt_ms == {"1ms": 1, "5ms": 5, "20ms": 20}
    assert RULES.seconds["h"] == 3600
    assert RULES.default_limit == 10


def test_result_is_valid_against_the_selection_schema() -> None:
    body = run([gpu(1), gpu(2, price={"amount": 6.5, "currency": "CNY", "per": "h"})])
    document = {
        "selectionId": "2b9f4d6e-8a1c-4e3b-9d5f-7c0a2e4b6d81",
        "createdAt": "2026-03-05T03:00:00Z",
        **body,
    }
    shipped = spec.default()
    validator = Draft202012Validator(
        {"$ref": shipped.uri("schemas/selection.json")},
        registry=shipped.registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    assert list(validator.iter_errors(document)) == []
    assert body["matched"] == 2


def test_same_inputs_give_byte_identical_output_whatever_the_order() -> None:
    resources = [
        gpu(i, price={"amount": 5 + i, "currency": "CNY", "per": "h"}) for i in range(1, 8)
    ]
    resources += [gpu(20, healthState="warning"), gpu(21, resType="STO", accelerators=None)]
    available = {rid(3): 100, rid(5): 64}
    first = json.dumps(run(resources, available=available), ensure_ascii=False)
    for seed in range(5):
        shuffled = resources[:]
        random.Random(seed).shuffle(shuffled)
        again = json.dumps(
            run(copy.deepcopy(shuffled), available=dict(available)), ensure_ascii=False
        )
        assert again == first


def test_equal_scores_are_ordered_by_resource_id() -> None:
    body = run([gpu(9), gpu(3), gpu(7)])
    assert [c["resourceId"] for c in body["candidates"]] == [rid(3), rid(7), rid(9)]
    assert [c["rank"] for c in body["candidates"]] == [1, 2, 3]
    assert len({c["score"] for c in body["candidates"]}) == 1


def test_ranked_by_descending_score() -> None:
    slow = gpu(1, accelerators=[group([("FP16", 110)])])
    fast = gpu(2, accelerators=[group([("FP16", 220)])])
    body = run([slow, fast], {**DEMAND, "weights": {"performance": 1}})
    assert [c["resourceId"] for c in body["candidates"]] == [rid(2), rid(1)]
    assert [c["score"] for c in body["candidates"]] == [1.0, 0.5]


def test_score_is_the_sum_of_contributions_and_weights_sum_to_one() -> None:
    resources = [
        gpu(1),
        gpu(2, price={"amount": 6.5, "currency": "CNY", "per": "h"}, latencyClass="1ms"),
        gpu(3, energy={"pue": 1.6, "renewableShare": 0.9}),
    ]
    demand = {**DEMAND, "weights": {"performance": 1, "price": 1, "green": 1}}
    for candidate in run(resources, demand, {rid(2): 10})["candidates"]:
        components = candidate["components"]
        assert [c["criterion"] for c in components] == list(RULES.criteria)
        weights = [Decimal(repr(c["weight"])) for c in components]
        assert sum(weights) == 1
        assert weights == [Decimal("0.333334"), Decimal("0.333333"), Decimal("0.333333"), 0, 0]
        for c in components:
            product = Decimal(repr(c["weight"])) * Decimal(repr(c["value"]))
            assert Decimal(repr(c["contribution"])) == product.quantize(
                Decimal("0.000001"), ROUND_HALF_UP
            )
            assert 0 <= c["value"] <= 1
            assert c["reason"]["zh"] and c["reason"]["en"]
        total = sum(Decimal(repr(c["contribution"])) for c in components)
        assert Decimal(repr(candidate["score"])) == total


def test_default_weights_apply_when_the_demand_gives_none() -> None:
    components = run([gpu(1)])["candidates"][0]["components"]
    assert [c["weight"] for c in components] == [0.2] * 5


def test_component_values_and_reasons_state_the_figures() -> None:
    cheap = gpu(1, price={"amount": 6.5, "currency": "CNY", "per": "h"})
    dear = gpu(2, accelerators=[group([("FP16", 296)])], capacity={"acceleratorsTotal": 128})
    body = run([cheap, dear], available={rid(2): 96})
    by_id = {
        c["resourceId"]: {x["criterion"]: x for x in c["components"]} for c in body["candidates"]
    }
    assert by_id[rid(1)]["performance"]["value"] == 0.5
    assert by_id[rid(2)]["performance"]["value"] == 1
    assert by_id[rid(1)]["price"]["value"] == 1
    assert by_id[rid(2)]["price"]["value"] == 0
    assert by_id[rid(2)]["availability"]["value"] == 0.75
    assert by_id[rid(1)]["latency"]["value"] == 0.2
    assert by_id[rid(1)]["green"]["value"] == 0.61
    assert "148 TFLOPS" in by_id[rid(1)]["performance"]["reason"]["en"]
    assert "296 TFLOPS" in by_id[rid(1)]["performance"]["reason"]["en"]
    assert "CNY 6.5" in by_id[rid(1)]["price"]["reason"]["en"]
    assert "96 of 128" in by_id[rid(2)]["availability"]["reason"]["en"]
    assert "0.42" in by_id[rid(1)]["green"]["reason"]["zh"]


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        (
            {"resType": "NPU", "accelerators": [{**group([("FP16", 300)]), "kind": "NPU"}]},
            "acceleratorType",
        ),
        ({"resType": "CPU", "accelerators": None, "cpu": {"cores": 64}}, "acceleratorType"),
        ({"accelerators": [group([("BF16", 300), ("INT8", 600)])]}, "precision"),
        ({"accelerators": [group([("FP16", 99.9)])]}, "minPeak"),
        ({"accelerators": [group([("FP16", 148)], memory=32)]}, "minAcceleratorMemoryGiB"),
        (
            {
                "accelerators": [group([("FP16", 148)], count=32)],
                "capacity": {"acceleratorsTotal": 32},
            },
            "acceleratorCount",
        ),
        ({"location": {"province": "11"}}, "regions"),
        ({"latencyClass": "20ms"}, "latencyClass"),
        ({"price": None}, "maxPrice"),
        ({"price": {"amount": 12.01, "currency": "CNY", "per": "h"}}, "maxPrice"),
        ({"price": {"amount": 0.001, "currency": "CNY", "per": "s"}}, "maxPrice"),
        ({"energy": {"pue": 1.1, "renewableShare": 0.29}}, "minRenewableShare"),
        ({"energy": None}, "minRenewableShare"),
        ({"servingState": "draining"}, "servingState"),
        ({"servingState": "queueing"}, "servingState"),
        ({"servingState": "closed"}, "servingState"),
        ({"healthState": "warning"}, "healthState"),
        ({"healthState": "unknown"}, "healthState"),
    ],
)
def test_each_constraint_excludes(changes: dict[str, Any], constraint: str) -> None:
    body = run([gpu(1), gpu(2, **changes)])
    assert [c["resourceId"] for c in body["candidates"]] == [rid(1)]
    assert body["matched"] == 1
    assert body["excluded"] == {"count": 1, "byConstraint": {constraint: 1}}


def test_too_few_available_now_is_capacity() -> None:
    body = run([gpu(1), gpu(2)], available={rid(2): 63})
    assert body["excluded"] == {"count": 1, "byConstraint": {"capacity": 1}}
    assert run([gpu(2)], available={rid(2): 64})["matched"] == 1


def test_boundaries_are_inclusive() -> None:
    edge = gpu(
        1,
        accelerators=[group([("FP16", 100)], count=64, memory=64)],
        capacity={"acceleratorsTotal": 64},
        price={"amount": 12, "currency": "CNY", "per": "h"},
        energy={"pue": 1.0, "renewableShare": 0.3},
        latencyClass="1ms",
    )
    assert run([edge])["matched"] == 1


def test_figures_at_other_precisions_are_never_summed_or_used() -> None:
    split = gpu(2, accelerators=[group([("FP16", 60), ("BF16", 60), ("FP8", 400)])])
    two_groups = gpu(
        3, accelerators=[group([("FP16", 60)], count=64), group([("FP16", 60)], count=64)]
    )
    body = run([gpu(1), split, two_groups])
    assert [c["resourceId"] for c in body["candidates"]] == [rid(1)]
    assert body["excluded"]["byConstraint"] == {"minPeak": 2}


def test_int_precision_compared_in_tops() -> None:
    demand = {**DEMAND, "precision": "INT8", "minPeak": {"value": 296, "unit": "TOPS"}}
    body = run([gpu(1), gpu(2, accelerators=[group([("FP16", 1000), ("INT8", 295)])])], demand)
    assert [c["resourceId"] for c in body["candidates"]] == [rid(1)]
    assert body["excluded"]["byConstraint"] == {"minPeak": 1}


def test_qualifying_group_must_meet_peak_and_memory_together() -> None:
    mixed = gpu(
        2, accelerators=[group([("FP16", 300)], memory=32), group([("FP16", 50)], memory=128)]
    )
    body = run([mixed])
    assert body["matched"] == 0
    assert body["excluded"]["byConstraint"] == {"minPeak": 1, "minAcceleratorMemoryGiB": 1}


def test_a_resource_counts_once_and_under_every_constraint_it_fails() -> None:
    bad = gpu(2, location={"province": "11"}, healthState="critical", latencyClass="20ms")
    body = run([gpu(1), bad, gpu(3, servingState="closed")])
    assert body["excluded"] == {
        "count": 2,
        "byConstraint": {"regions": 1, "latencyClass": 1, "servingState": 1, "healthState": 1},
    }


def test_latency_class_admits_tighter_classes() -> None:
    body = run(
        [gpu(1, latencyClass="1ms"), gpu(2, latencyClass="5ms"), gpu(3, latencyClass="20ms")]
    )
    assert {c["resourceId"] for c in body["candidates"]} == {rid(1), rid(2)}
    assert run([gpu(3, latencyClass="20ms")], {**DEMAND, "latencyClass": "20ms"})["matched"] == 1


def test_optional_constraints_absent_admit_anything() -> None:
    demand = {"acceleratorType": "GPU", "precision": "FP16", "acceleratorCount": 1}
    loose = gpu(2, location={"province": "65"}, latencyClass="20ms", price=None, energy=None)
    body = run([gpu(1), loose], demand)
    assert body["matched"] == 2
    scores = {
        c["resourceId"]: {x["criterion"]: x["value"] for x in c["components"]}
        for c in body["candidates"]
    }
    assert scores[rid(2)]["price"] == 0
    assert scores[rid(2)]["green"] == 0


def test_limit_cuts_candidates_but_not_matched() -> None:
    body = run([gpu(i) for i in range(1, 16)])
    assert body["matched"] == 15
    assert len(body["candidates"]) == 10
    limited = run([gpu(i) for i in range(1, 16)], {**DEMAND, "limit": 3})
    assert [c["rank"] for c in limited["candidates"]] == [1, 2, 3]


def test_nothing_matches_is_an_empty_result() -> None:
    body = run([gpu(1, healthState="critical")], {**DEMAND, "regions": ["54"]})
    assert body["matched"] == 0
    assert body["candidates"] == []
    assert body["excluded"] == {"count": 1, "byConstraint": {"regions": 1, "healthState": 1}}
    assert run([])["excluded"] == {"count": 0, "byConstraint": {}}


def test_demand_is_echoed_as_received() -> None:
    demand = copy.deepcopy(DEMAND)
    assert run([gpu(1)], demand)["demand"] == DEMAND
    assert "limit" not in run([gpu(1)], demand)["demand"]


def test_nodecode_is_the_issuer() -> None:
    foreign = gpu(1, resourceId=rid(1, node="I44C3801D"), issuer="I44C3801D")
    assert run([foreign])["candidates"][0]["nodeCode"] == "I44C3801D"


def test_catalogue_version_follows_the_catalogue_state() -> None:
    resources = [gpu(1), gpu(2)]
    version = run(resources)["catalogueVersion"]
    assert version == catalogue_version(resources, {rid(1): 128, rid(2): 128})
    assert run(list(reversed(resources)))["catalogueVersion"] == version
    assert run([gpu(1), gpu(2, healthState="warning")])["catalogueVersion"] != version
    assert run(resources, available={rid(1): 5})["catalogueVersion"] != version
    assert run([gpu(1)])["catalogueVersion"] != version
    assert version.startswith("sha256:")
