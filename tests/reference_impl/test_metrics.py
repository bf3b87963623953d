"""reference_impl/metrics.py: freshness boundaries, arrival refusals, per-record checks,
duplicate keys and the roll-up by precision."""

from __future__ import annotations

from typing import Any

import pytest

import spec
from reference_impl import metrics
from reference_impl.metrics import Resource

SPEC = spec.default()
NOW = metrics.instant("2026-03-05T03:00:00Z")
GPU = "R4400001E-GPU-00000123K"
NPU = "I44C3801D-NPU-00000001H"


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "subject": {"nodeCode": "R4400001E", "resourceId": GPU},
        "level": "L0",
        "category": "compute",
        "name": "compute.peak",
        "value": 75.776,
        "unit": "PFLOPS",
        "precision": "FP16",
        "timestamp": "2026-03-05T03:00:00Z",
        "validitySeconds": 300,
    }
    return {**base, **changes}


def test_instant_ignores_spelling() -> None:
    assert metrics.instant("2026-03-05T03:00:00Z") == metrics.instant("2026-03-05T03:00:00.000Z")
    assert metrics.instant("2026-03-05T03:00:00.123456789Z") - NOW == 123456
    with pytest.raises(ValueError):
        metrics.instant("2026-03-05T03:00:00+08:00")


def test_exactly_validity_seconds_old_is_fresh() -> None:
    assert metrics.is_fresh(NOW - 300_000_000, 300, NOW)
    assert not metrics.is_fresh(NOW - 300_000_001, 300, NOW)


def test_arrival_refuses_stale_records_and_accepts_the_boundary() -> None:
    assert metrics.arrival_refusal(record(timestamp="2026-03-05T02:55:00Z"), NOW) is None
    detail = metrics.arrival_refusal(record(timestamp="2026-03-05T02:54:59.999Z"), NOW)
    assert detail is not None and "validitySeconds 300" in detail


def test_arrival_refuses_timestamps_more_than_60_s_ahead() -> None:
    assert metrics.arrival_refusal(record(timestamp="2026-03-05T03:01:00Z"), NOW) is None
    detail = metrics.arrival_refusal(record(timestamp="2026-03-05T03:01:00.001Z"), NOW)
    assert detail is not None and "60 s" in detail


def test_subject_must_be_answered_for_by_the_caller() -> None:
    assert (
        metrics.subject_refusal({"nodeCode": "R4400001E", "resourceId": GPU}, {"R4400001E"}) is None
    )
    assert metrics.subject_refusal({"nodeCode": "I44C3801D"}, {"R4400001E"}) is not None
    mismatch = {"nodeCode": "R4400001E", "resourceId": NPU}
    assert metrics.subject_refusal(mismatch, {"R4400001E", "I44C3801D"}) is not None


def test_batch_errors_beyond_the_schema() -> None:
    records = [
        record(),
        record(name="compute.utilisation", unit="percent", value=100.5, precision=None),
        record(unit="TOPS"),
        record(window={"start": "2026-03-05T03:00:00Z", "end": "2026-03-05T02:59:00Z"}),
    ]
    records[1].pop("precision")
    errors = metrics.batch_errors(SPEC, records)
    assert [e["pointer"] for e in errors] == [
        "/records/1/value",
        "/records/2/unit",
        "/records/3/window",
    ]
    assert errors[0]["rule"] == "CPIN-MON-003"


def test_dedup_key_is_the_measurement_not_its_value() -> None:
    assert metrics.dedup_key(record()) == metrics.dedup_key(
        record(value=1.0, timestamp="2026-03-05T03:00:00.000Z")
    )
    assert metrics.dedup_key(record()) != metrics.dedup_key(record(precision="INT8"))
    assert metrics.dedup_key(record()) != metrics.dedup_key(record(name="compute.sustained"))


def group(count: int, *precisions: str) -> dict[str, Any]:
    return {"count": count, "peak": [{"precision": p} for p in precisions]}


CATALOGUE = {
    GPU: Resource("44", (group(512, "FP16", "FP32"),)),
    NPU: Resource("44", (group(256, "FP16", "INT8"),)),
}


def test_rollup_never_sums_across_precisions() -> None:
    records = [
        record(),
        record(value=22.528, precision="FP32"),
        record(subject={"nodeCode": "I44C3801D", "resourceId": NPU}, value=81.92),
    ]
    figures = metrics.rollup(SPEC, records, CATALOGUE, NOW)
    assert [f["precision"] for f in figures] == ["FP32", "FP16"]
    fp32, fp16 = figures
    assert fp16["peak"] == {"value": 157696, "unit": "TFLOPS"}
    assert (fp16["resourceCount"], fp16["acceleratorCount"], fp16["freshRecords"]) == (2, 768, 2)
    assert fp32["peak"] == {"value": 22528, "unit": "TFLOPS"}
    assert fp32["acceleratorCount"] == 512


def test_rollup_units_follow_the_precision() -> None:
    int8 = record(value=0.16384, unit="POPS", precision="INT8")
    (figure,) = metrics.rollup(SPEC, [int8], CATALOGUE, NOW)
    assert figure["peak"] == {"value": 163.84, "unit": "TOPS"}
    assert figure["acceleratorCount"] == 0  # the GPU group has no INT8 figure


def test_rollup_counts_each_resource_once_with_its_newest_fresh_record() -> None:
    records = [
        record(value=70, timestamp="2026-03-05T02:58:00Z"),
        record(value=75, timestamp="2026-03-05T02:59:00Z"),
        record(value=99, timestamp="2026-03-05T02:50:00Z"),  # newest-looking value, but stale
    ]
    (fp16,) = metrics.rollup(SPEC, records, CATALOGUE, NOW)
    assert fp16["peak"]["value"] == 75000
    assert (fp16["resourceCount"], fp16["freshRecords"], fp16["staleRecords"]) == (1, 2, 1)


def test_rollup_keeps_a_precision_with_only_stale_records_at_zero() -> None:
    (fp16,) = metrics.rollup(SPEC, [record(timestamp="2026-03-05T02:00:00Z")], CATALOGUE, NOW)
    assert fp16["peak"]["value"] == 0
    assert (fp16["resourceCount"], fp16["staleRecords"]) == (0, 1)


def test_rollup_leaves_out_records_about_nodes_and_non_throughput() -> None:
    score = {
        "subject": {"nodeCode": "R4400001E"},
        "level": "L2",
        "value": 7.2,
        "unit": "score",
        "timestamp": "2026-03-05T03:00:00Z",
        "validitySeconds": 600,
    }
    assert metrics.rollup(SPEC, [score], CATALOGUE, NOW) == []


def test_rollup_by_province() -> None:
    beijing = "R1100001F-GPU-00000001A"
    records = [record(), record(subject={"nodeCode": "R1100001F", "resourceId": beijing})]
    provinces = metrics.rollup_by_province(SPEC, records, CATALOGUE, NOW)
    assert [p["province"] for p in provinces] == ["11", "44"]
    assert provinces[1]["byPrecision"][0]["acceleratorCount"] == 512
