"""reference_impl/api/selection.py over HTTP: a demand in, a stored ranked selection out,
over the node's own resources and the copies aggregated from lower nodes."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import reference_impl.api.selection as selection_api
from reference_impl.api.aggregation import write_entry
from reference_impl.ids import mint_resource_id
from tests.reference_impl.samples import gpu_pool

SELECT, WRITE = "selection", "catalogue:write"
PROBLEMS = "https://cpin.example/spec/v1/problems/"


GPU = gpu_pool(512, [("FP16", 148, "TFLOPS"), ("INT8", 296, "TOPS")])
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
    "limit": 5,
    "weights": {"performance": 0.4, "price": 0.3, "green": 0.2, "latency": 0.1},
}


def variant(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(GPU)
    body.update(changes)
    return body


@pytest.fixture
def regional(node_factory: Callable[..., Any]) -> Any:
    return node_factory("regional")


def register(running: Any, body: dict[str, Any]) -> str:
    answer = running.client.post("/v1/resources", json=body, headers=running.auth(WRITE))
    assert answer.status_code == 201, answer.text
    return str(answer.json()["resourceId"])


def create(running: Any, demand: Any) -> Any:
    return running.client.post("/v1/selections", json=demand, headers=running.auth(SELECT))


def test_selection_ranks_stores_and_reads_back(regional: Any) -> None:
    cheap = register(regional, variant(price={"amount": 6.5, "currency": "CNY", "per": "h"}))
    dear = register(regional, GPU)
    register(regional, variant(healthState="warning"))
    answer = create(regional, DEMAND)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert answer.headers["Location"] == f"/v1/selections/{body['selectionId']}"
    assert body["demand"] == DEMAND
    assert body["matched"] == 2
    assert [c["resourceId"] for c in body["candidates"]] == [cheap, dear]
    assert [c["nodeCode"] for c in body["candidates"]] == ["R4400001E"] * 2
    assert body["excluded"] == {"count": 1, "byConstraint": {"healthState": 1}}
    read = regional.client.get(
        f"/v1/selections/{body['selectionId']}", headers=regional.auth(SELECT)
    )
    assert read.status_code == 200
    assert read.content == answer.content
    actions = [r["action"] for r in regional.node.store.rows("SELECT action FROM audit_events")]
    assert actions.count("selection.created") == 1


def test_stored_selection_is_not_computed_again(regional: Any) -> None:
    register(regional, GPU)
    first = create(regional, DEMAND)
    register(regional, variant(price={"amount": 1, "currency": "CNY", "per": "h"}))
    read = regional.client.get(
        f"/v1/selections/{first.json()['selectionId']}", headers=regional.auth(SELECT)
    )
    assert read.content == first.content
    assert create(regional, DEMAND).json()["matched"] == 2


def test_same_catalogue_same_result(regional: Any) -> None:
    for amount in (6.5, 9.8, 11, 12):
        register(regional, variant(price={"amount": amount, "currency": "CNY", "per": "h"}))
    first, second = create(regional, DEMAND).json(), create(regional, DEMAND).json()
    assert first["selectionId"] != second["selectionId"]
    for key in ("catalogueVersion", "matched", "candidates", "excluded"):
        assert first[key] == second[key]


def test_catalogue_version_changes_with_the_catalogue(regional: Any) -> None:
    resource_id = register(regional, GPU)
    before = create(regional, DEMAND).json()["catalogueVersion"]
    regional.client.delete(f"/v1/resources/{resource_id}", headers=regional.auth(WRITE))
    after = create(regional, DEMAND).json()
    assert after["catalogueVersion"] != before
    assert after["matched"] == 0


def test_no_match_is_201_with_no_candidates(regional: Any) -> None:
    register(regional, GPU)
    answer = create(regional, {**DEMAND, "regions": ["54"]})
    assert answer.status_code == 201
    body = answer.json()
    assert body["matched"] == 0
    assert body["candidates"] == []
    assert body["excluded"] == {"count": 1, "byConstraint": {"regions": 1}}


def test_withdrawn_resources_are_not_candidates(regional: Any) -> None:
    kept, gone = register(regional, GPU), register(regional, GPU)
    regional.client.delete(f"/v1/resources/{gone}", headers=regional.auth(WRITE))
    body = create(regional, DEMAND).json()
    assert [c["resourceId"] for c in body["candidates"]] == [kept]
    assert body["excluded"]["count"] == 0


def test_aggregated_resources_of_lower_nodes_are_candidates(regional: Any) -> None:
    own = register(regional, GPU)
    lower = mint_resource_id("I44C3801D", "GPU", 1)
    aggregated = {
        "resourceId": lower,
        "issuer": "I44C3801D",
        "origin": "I44C3801D",
        **variant(price={"amount": 7, "currency": "CNY", "per": "h"}),
        "createdAt": "2026-03-03T04:00:00.000Z",
        "updatedAt": "2026-03-03T04:00:00.000Z",
    }
    with regional.node.store.transaction() as db:
        write_entry(db, aggregated, origin="I44C3801D")
    candidates = create(regional, DEMAND).json()["candidates"]
    assert {(c["resourceId"], c["nodeCode"]) for c in candidates} == {
        (own, "R4400001E"),
        (lower, "I44C3801D"),
    }


@pytest.mark.parametrize(
    "demand",
    [
        {**DEMAND, "precision": "FP4"},
        {**DEMAND, "minRenewableShare": 1.2},
        {**DEMAND, "acceleratorType": "CPU"},
        {**DEMAND, "precision": "INT8"},
        {**DEMAND, "weights": {"performance": 0}},
        {key: value for key, value in DEMAND.items() if key != "acceleratorCount"},
    ],
)
def test_invalid_demand_is_400(regional: Any, demand: dict[str, Any]) -> None:
    answer = create(regional, demand)
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == PROBLEMS + "invalid-request"


def test_unknown_selection_is_404(regional: Any) -> None:
    answer = regional.client.get(f"/v1/selections/{uuid.uuid4()}", headers=regional.auth(SELECT))
    assert answer.status_code == 404
    assert answer.json()["type"] == PROBLEMS + "not-found"


@pytest.mark.parametrize("role", ["national", "industry"])
def test_every_role_selects(node_factory: Callable[..., Any], role: str) -> None:
    running = node_factory(role)
    answer = create(running, DEMAND)
    assert answer.status_code == 201, answer.text
    assert answer.json()["matched"] == 0


def test_federation_resources_join_the_candidates(
    regional: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = register(regional, GPU)
    elsewhere = mint_resource_id("I44C3801D", "GPU", 1)
    stale_own = {"resourceId": own, "issuer": "R4400001E", **variant(healthState="critical")}
    remote = {
        "resourceId": elsewhere,
        "issuer": "I44C3801D",
        **variant(location={"province": "45"}),
        "createdAt": "2026-03-03T04:00:00.000Z",
        "updatedAt": "2026-03-03T04:00:00.000Z",
    }

    async def index(node: Any) -> list[dict[str, Any]]:
        return [remote, stale_own]

    monkeypatch.setattr(selection_api, "federation_resources", index)
    body = create(regional, DEMAND).json()
    assert sorted(c["resourceId"] for c in body["candidates"]) == sorted([own, elsewhere])
    assert body["excluded"]["count"] == 0


def test_allocated_accelerators_are_not_available(
    regional: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy, free = register(regional, GPU), register(regional, GPU)
    monkeypatch.setattr(selection_api, "available_now", lambda node: {busy: 63, free: 256})
    body = create(regional, DEMAND).json()
    assert [c["resourceId"] for c in body["candidates"]] == [free]
    assert body["excluded"] == {"count": 1, "byConstraint": {"capacity": 1}}
    availability = body["candidates"][0]["components"][4]
    assert availability["criterion"] == "availability"
    assert availability["value"] == 0.5


def test_selections_are_kept_for_the_retention_period(
    regional: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = create(regional, DEMAND).json()["selectionId"]
    start = regional.node.now()
    monkeypatch.setattr(regional.node, "now", lambda: start + selection_api.RETENTION / 2)
    create(regional, DEMAND)
    kept = regional.client.get(f"/v1/selections/{old}", headers=regional.auth(SELECT))
    assert kept.status_code == 200
    monkeypatch.setattr(regional.node, "now", lambda: start + selection_api.RETENTION * 1.01)
    create(regional, DEMAND)
    gone = regional.client.get(f"/v1/selections/{old}", headers=regional.auth(SELECT))
    assert gone.status_code == 404
