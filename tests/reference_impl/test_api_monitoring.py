"""reference_impl/api/monitoring.py over HTTP: pushes with per-record refusals, queries with
filters and pagination, monitoring status and the roll-up by precision."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reference_impl.api.aggregation import write_entry
from reference_impl.ids import mint_resource_id
from reference_impl.node import timestamp
from tests.reference_impl.samples import gpu_pool

READ, WRITE = "metrics:read", "metrics:write"
PROBLEMS = "https://cpin.example/spec/v1/problems/"
START = datetime(2026, 3, 5, 3, 0, tzinfo=UTC)
NPU = "I44C3801D-NPU-00000001H"


class Clock:
    """The nodes' time, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def start(node_factory: Callable[..., Any], clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(role: str = "regional", **overrides: Any) -> Any:
        running = node_factory(role, **overrides)
        monkeypatch.setattr(running.node, "now", clock)
        return running

    return make


def at(seconds: float = 0) -> str:
    return timestamp(START + timedelta(seconds=seconds))


def peak(resource_id: str, value: float, precision: str = "FP16", **changes: Any) -> dict[str, Any]:
    record = {
        "subject": {"nodeCode": resource_id[:9], "resourceId": resource_id},
        "level": "L0",
        "category": "compute",
        "name": "compute.peak",
        "value": value,
        "unit": "TOPS" if precision.startswith("INT") else "TFLOPS",
        "precision": precision,
        "timestamp": at(),
        "validitySeconds": 300,
    }
    return {**record, **changes}


def score(node_code: str, **changes: Any) -> dict[str, Any]:
    record = {
        "subject": {"nodeCode": node_code},
        "level": "L2",
        "value": 7.2,
        "unit": "score",
        "timestamp": at(),
        "validitySeconds": 600,
    }
    return {**record, **changes}


def push(running: Any, *records: dict[str, Any], headers: Any = None) -> Any:
    return running.client.post(
        "/v1/metrics", json={"records": list(records)}, headers=headers or running.auth(WRITE)
    )


def stored(running: Any) -> int:
    row = running.node.store.row("SELECT COUNT(*) AS n FROM metric_records")
    return int(row["n"])


def register_gpu(running: Any, fp16: float = 148, fp32: float = 44) -> str:
    body = gpu_pool(512, [("FP32", fp32, "TFLOPS"), ("FP16", fp16, "TFLOPS")])
    answer = running.client.post(
        "/v1/resources", json=body, headers=running.auth("catalogue:write")
    )
    assert answer.status_code == 201, answer.text
    resource_id: str = answer.json()["resourceId"]
    return resource_id


# ---- pushMetrics ----------------------------------------------------------------------------


def test_push_stores_records_and_refuses_each_bad_one_alone(start: Any) -> None:
    regional = start("regional")
    gpu = register_gpu(regional)
    answer = push(
        regional,
        peak(gpu, 75776),
        score("R4400001E", timestamp=at(-601)),  # stale on arrival
        score("R4400001E", timestamp=at(61)),  # too far ahead
        score("R4400001E", timestamp=at(60)),  # within the 60 s allowed
        score("I44C3801D"),  # not a subject a client of this node reports on
        score("R4400001E", timestamp=at(-600)),  # exactly validitySeconds old: fresh
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 3
    refused = {item["index"]: item["problem"] for item in body["rejected"]}
    assert sorted(refused) == [1, 2, 4]
    assert refused[1]["type"] == PROBLEMS + "stale-metric"
    assert refused[1]["status"] == 422
    assert refused[2]["type"] == PROBLEMS + "stale-metric"
    assert refused[4]["type"] == PROBLEMS + "forbidden"
    assert stored(regional) == 3
    events = regional.node.store.rows(
        "SELECT record FROM audit_events WHERE action = 'metrics.pushed'"
    )
    assert len(events) == 1
    assert json.loads(events[0]["record"])["target"] == "R4400001E"


def test_a_record_pushed_again_is_stored_once(start: Any) -> None:
    regional = start("regional")
    first = push(regional, score("R4400001E"), score("R4400001E", value=3.0))
    again = push(regional, score("R4400001E", timestamp=START.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
    assert first.json() == {"accepted": 2, "rejected": []}
    assert again.json() == {"accepted": 1, "rejected": []}
    assert stored(regional) == 1


def test_a_resource_of_another_node_is_refused(start: Any) -> None:
    regional = start("regional")
    foreign = {"nodeCode": "R4400001E", "resourceId": NPU}
    answer = push(regional, score("R4400001E", subject=foreign))
    assert answer.json()["rejected"][0]["problem"]["type"] == PROBLEMS + "forbidden"


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"name": "compute.utilisation", "unit": "percent", "value": 101}, "/records/1/value"),
        ({"unit": "TOPS"}, "/records/1/unit"),
        ({"window": {"start": at(), "end": at(-1)}}, "/records/1/window"),
    ],
)
def test_checks_beyond_the_schema_refuse_the_whole_batch(
    start: Any, change: dict[str, Any], pointer: str
) -> None:
    regional = start("regional")
    bad = peak(mint_resource_id("R4400001E", "GPU", 1), 1) | change
    if change.get("unit") == "percent":
        bad.pop("precision")
    answer = push(regional, score("R4400001E"), bad)
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == PROBLEMS + "invalid-request"
    assert [e["pointer"] for e in answer.json()["errors"]] == [pointer]
    assert stored(regional) == 0


def test_schema_violations_store_nothing(start: Any) -> None:
    regional = start("regional")
    answer = push(regional, score("R4400001E"), score("R4400001E", unit="furlongs"))
    assert answer.status_code == 400
    answer = push(regional, score("R4400001E"), score("R4400001E", value=10.5))
    assert answer.status_code == 400
    assert stored(regional) == 0


def test_push_needs_the_write_scope(start: Any) -> None:
    regional = start("regional")
    answer = push(regional, score("R4400001E"), headers=regional.auth(READ))
    assert answer.status_code == 403


# ---- queryMetrics -------------------------------------------------------------------------


def query(running: Any, **params: Any) -> list[dict[str, Any]]:
    """Every record the query returns, following nextCursor to the end."""
    items: list[dict[str, Any]] = []
    params.setdefault("limit", 2)
    while True:
        answer = running.client.get("/v1/metrics", params=params, headers=running.auth(READ))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["items"]) <= params["limit"]
        items += body["items"]
        if "nextCursor" not in body:
            return items
        params["cursor"] = body["nextCursor"]


def test_query_filters_and_pages_newest_first(start: Any, clock: Clock) -> None:
    regional = start("regional")
    gpu = register_gpu(regional)
    push(
        regional,
        peak(gpu, 1, timestamp=at(-200)),
        peak(gpu, 2, timestamp=at(-100)),
        score("R4400001E", timestamp=at(-50)),
        score("R4400001E", level="L1", category="energy", timestamp=at(-50)),
        score("R4400001E", level="L1", category="compute", timestamp=at(-10)),
    )
    clock.advance(150)  # the first record is now 350 s old: stale
    everything = query(regional)
    assert len(everything) == 5
    times = [item["timestamp"] for item in everything]
    assert times == sorted(times, reverse=True)
    assert len({item["recordId"] for item in everything}) == 5
    assert [i["value"] for i in query(regional, resourceId=gpu)] == [2, 1]
    assert len(query(regional, nodeCode="R4400001E")) == 5
    assert query(regional, nodeCode="I44C3801D") == []
    assert len(query(regional, level="L1")) == 2
    assert [i["category"] for i in query(regional, level="L1", category="energy")] == ["energy"]
    assert len(query(regional, since=at(-50))) == 3
    assert [i["value"] for i in query(regional, fresh=False)] == [1]
    assert len(query(regional, fresh=True, limit=100)) == 4
    clock.advance(1000)
    assert query(regional, fresh=True) == []


def test_query_refuses_a_cursor_it_did_not_make(start: Any) -> None:
    regional = start("regional")
    answer = regional.client.get(
        "/v1/metrics", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=regional.auth(READ)
    )
    assert answer.status_code == 400


# ---- getMonitoringStatus ------------------------------------------------------------------


def test_status_reports_resources_and_their_freshness(start: Any, clock: Clock) -> None:
    regional = start("regional")
    gpu = register_gpu(regional)
    other = register_gpu(regional)
    push(regional, peak(gpu, 75776, timestamp=at(-10)))
    answer = regional.client.get("/v1/monitoring/status", headers=regional.auth(READ))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["nodeCode"], body["health"], body["children"]) == ("R4400001E", "ok", [])
    resources = {r["resourceId"]: r for r in body["resources"]}
    assert resources[gpu] == {
        "resourceId": gpu,
        "healthState": "ok",
        "servingState": "production",
        "lastMetricAt": at(-10),
        "fresh": True,
    }
    assert resources[other]["fresh"] is False and "lastMetricAt" not in resources[other]
    clock.advance(291)
    later = regional.client.get("/v1/monitoring/status", headers=regional.auth(READ)).json()
    assert later["resources"][0]["fresh"] is False


def test_industry_node_serves_its_status(start: Any) -> None:
    industry = start("industry")
    answer = industry.client.get("/v1/monitoring/status", headers=industry.auth(READ))
    assert answer.status_code == 200, answer.text
    assert answer.json()["nodeCode"] == "I44C3801D"


# ---- getRollup ----------------------------------------------------------------------------


def test_rollup_gives_each_precision_apart(start: Any, clock: Clock) -> None:
    regional = start("regional")
    gpu = register_gpu(regional)
    push(
        regional,
        peak(gpu, 75.776, unit="PFLOPS"),
        peak(gpu, 22528, precision="FP32"),
        peak(gpu, 70000, timestamp=at(-400)),  # stale on arrival: never stored
    )
    answer = regional.client.get("/v1/monitoring/rollup", headers=regional.auth(READ))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scope"] == "R4400001E"
    figures = {f["precision"]: f for f in body["byPrecision"]}
    assert sorted(figures) == ["FP16", "FP32"]
    assert figures["FP16"]["peak"] == {"value": 75776, "unit": "TFLOPS"}
    assert figures["FP32"]["peak"] == {"value": 22528, "unit": "TFLOPS"}
    assert figures["FP16"]["acceleratorCount"] == 512
    assert body["byProvince"][0]["province"] == "44"
    clock.advance(301)
    stale = regional.client.get("/v1/monitoring/rollup", headers=regional.auth(READ)).json()
    fp16 = next(f for f in stale["byPrecision"] if f["precision"] == "FP16")
    assert fp16["peak"]["value"] == 0
    assert (fp16["resourceCount"], fp16["freshRecords"], fp16["staleRecords"]) == (0, 0, 1)


def test_rollup_leaves_withdrawn_resources_out(start: Any) -> None:
    regional = start("regional")
    gpu = register_gpu(regional)
    push(regional, peak(gpu, 100))
    answer = regional.client.delete(
        f"/v1/resources/{gpu}", headers=regional.auth("catalogue:write")
    )
    assert answer.status_code == 204
    body = regional.client.get("/v1/monitoring/rollup", headers=regional.auth(READ)).json()
    assert body["byPrecision"] == []


# ---- node-to-node pushes at the national node ---------------------------------------------


def enrol(national: Any, child: Any, parent: str) -> None:
    """Put a node in the national registry, as node-registry would, keys and parent included."""
    code = child.node.node_code
    record = {"nodeCode": code, "role": child.node.config.role, "status": "active"}
    record |= {"parentNodeCode": parent, "jwks": child.node.security.jwks()}
    with national.node.store.transaction() as db:
        db.execute(
            "INSERT INTO nodes (node_code, role, parent, status, record) VALUES (?, ?, ?, ?, ?)",
            (code, record["role"], parent, "active", json.dumps(record)),
        )


def test_a_child_node_reports_on_its_subtree_only(start: Any) -> None:
    national = start("national")
    regional = start("regional")
    industry = start("industry")
    enrol(national, regional, "N0000001U")
    enrol(national, industry, "R4400001E")
    with national.node.store.transaction() as db:
        write_entry(db, {"resourceId": NPU, "location": {"province": "44"}}, origin="R4400001E")
    token = regional.node.security.node_assertion("N0000001U", {WRITE})
    answer = push(
        national,
        score("R4400001E"),
        score("I44C3801D"),
        peak(NPU, 81.92, unit="PFLOPS"),
        score("R1100001F"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 3
    assert [r["index"] for r in answer.json()["rejected"]] == [3]
    status = national.client.get("/v1/monitoring/status", headers=national.auth(READ)).json()
    assert status["children"] == [
        {"nodeCode": "R4400001E", "healthState": "ok", "lastReportAt": at(), "fresh": True}
    ]
    rollup = national.client.get("/v1/monitoring/rollup", headers=national.auth(READ)).json()
    assert rollup["byPrecision"][0]["peak"] == {"value": 81920, "unit": "TFLOPS"}
