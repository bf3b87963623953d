"""reference_impl/api/aggregation.py over HTTP: register, list with filters, read, update,
withdraw; ETags, prefix containment, and the identifier every registration mints."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

import reference_impl.api.aggregation as aggregation_api
from reference_impl.api.aggregation import write_entry
from reference_impl.ids import mint_resource_id, mod37_36
from tests.reference_impl.samples import gpu_pool

READ, WRITE = "catalogue:read", "catalogue:write"
PROBLEMS = "https://cpin.example/spec/v1/problems/"


GPU = gpu_pool(512, [("FP32", 44, "TFLOPS"), ("FP16", 148, "TFLOPS"), ("INT8", 296, "TOPS")])


def variant(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(GPU)
    body.update(changes)
    return body


def npu(fp16: float, **changes: Any) -> dict[str, Any]:
    group = {
        "kind": "NPU",
        "model": "Ascend 910B",
        "count": 8,
        "memoryGiB": 64,
        "peak": [{"precision": "FP16", "value": fp16, "unit": "TFLOPS"}],
    }
    return variant(
        resType="NPU", accelerators=[group], capacity={"acceleratorsTotal": 8}, **changes
    )


@pytest.fixture
def regional(node_factory: Callable[..., Any]) -> Any:
    return node_factory("regional")


def register(running: Any, body: dict[str, Any]) -> dict[str, Any]:
    answer = running.client.post("/v1/resources", json=body, headers=running.auth(WRITE))
    assert answer.status_code == 201, answer.text
    record: dict[str, Any] = answer.json()
    return record


def list_all(running: Any, **query: Any) -> list[str]:
    """Every resourceId listResources returns for `query`, following nextCursor to the end."""
    ids: list[str] = []
    params = {**query, "limit": query.get("limit", 2)}
    while True:
        answer = running.client.get("/v1/resources", params=params, headers=running.auth(READ))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        ids += [item["resourceId"] for item in body["items"]]
        if "nextCursor" not in body:
            return ids
        params["cursor"] = body["nextCursor"]


def problem_of(answer: Any, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEMS + slug
    return body


# ---- registerResource ---------------------------------------------------------------------


def test_register_mints_an_id_under_the_own_node_code_and_registers_it(regional: Any) -> None:
    answer = regional.client.post("/v1/resources", json=GPU, headers=regional.auth(WRITE))
    assert answer.status_code == 201
    record = answer.json()
    assert record["resourceId"] == mint_resource_id("R4400001E", "GPU", 1)
    assert record["issuer"] == "R4400001E"
    assert "origin" not in record
    assert answer.headers["Location"] == f"/v1/resources/{record['resourceId']}"
    assert answer.headers["ETag"].startswith('"')
    assert {k: record[k] for k in GPU} == GPU
    resolved = regional.client.get(
        f"/v1/identifiers/{record['resourceId']}", headers=regional.auth("ids:read")
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["owner"] == GPU["owner"]
    assert resolved.json()["state"] == "active"
    second = register(regional, GPU)
    assert second["resourceId"] == mint_resource_id("R4400001E", "GPU", 2)
    events = regional.node.store.rows("SELECT action FROM audit_events ORDER BY seq")
    assert [e["action"] for e in events].count("resource.registered") == 2


def test_register_at_an_industry_node(node_factory: Callable[..., Any]) -> None:
    industry = node_factory("industry")
    record = register(industry, npu(320))
    assert record["resourceId"].startswith("I44C3801D-NPU-")


@pytest.mark.parametrize(
    ("changes", "pointer"),
    [
        ({"owner": {"uscc": "9144030071526726X9", "name": "x"}}, "/owner/uscc"),
        ({"energy": {"pue": 0.99, "renewableShare": 0.4}}, "/energy/pue"),
        ({"energy": {"pue": 1.2, "renewableShare": 1.01}}, "/energy/renewableShare"),
        ({"energy": {"pue": 1.2, "renewableShare": -0.01}}, "/energy/renewableShare"),
        ({"capacity": {"acceleratorsTotal": 500}}, "/capacity/acceleratorsTotal"),
    ],
)
def test_register_rejects_invalid_figures(
    regional: Any, changes: dict[str, Any], pointer: str
) -> None:
    answer = regional.client.post(
        "/v1/resources", json=variant(**changes), headers=regional.auth(WRITE)
    )
    body = problem_of(answer, 400, "invalid-request")
    assert pointer in {e.get("pointer") for e in body["errors"]}
    assert list_all(regional) == []


@pytest.mark.parametrize(
    "peak",
    [
        {"value": 148, "unit": "TFLOPS"},
        {"precision": "FP16", "value": 148, "unit": "TOPS"},
        {"precision": "INT8", "value": 148, "unit": "TFLOPS"},
        {"precision": "FP16", "value": 148},
        {"precision": "FP17", "value": 148, "unit": "TFLOPS"},
    ],
)
def test_every_figure_carries_its_precision(regional: Any, peak: dict[str, Any]) -> None:
    body = variant()
    body["accelerators"][0]["peak"] = [peak]
    answer = regional.client.post("/v1/resources", json=body, headers=regional.auth(WRITE))
    problem_of(answer, 400, "invalid-request")


def test_one_figure_per_precision(regional: Any) -> None:
    body = variant()
    body["accelerators"][0]["peak"].append({"precision": "FP16", "value": 200, "unit": "TFLOPS"})
    answer = regional.client.post("/v1/resources", json=body, headers=regional.auth(WRITE))
    errors = problem_of(answer, 400, "invalid-request")["errors"]
    assert errors == [
        {
            "pointer": "/accelerators/0/peak/3/precision",
            "message": "one figure per precision: FP16 is given twice",
            "rule": "CPIN-AGG-002",
        }
    ]


def test_boundary_energy_figures_accepted(regional: Any) -> None:
    register(regional, variant(energy={"pue": 1.0, "renewableShare": 0}))
    register(regional, variant(energy={"pue": 1.0, "renewableShare": 1}))


def test_register_refuses_server_members(regional: Any) -> None:
    for member in (
        {"resourceId": mint_resource_id("R4400001E", "GPU", 9)},
        {"origin": "R4400001E"},
    ):
        answer = regional.client.post(
            "/v1/resources", json=variant(**member), headers=regional.auth(WRITE)
        )
        problem_of(answer, 400, "invalid-request")


def test_register_needs_the_write_scope(regional: Any) -> None:
    answer = regional.client.post("/v1/resources", json=GPU, headers=regional.auth(READ))
    problem_of(answer, 403, "insufficient-scope")


# ---- listResources ------------------------------------------------------------------------


@pytest.fixture
def catalogue(regional: Any) -> dict[str, str]:
    """Seven resources over types, provinces, states and figures; names -> resourceIds."""
    bodies = {
        "gpu44": GPU,
        "gpu45": variant(location={"province": "45"}, latencyClass="20ms"),
        "gpu_draining": variant(servingState="draining"),
        "gpu_warning": variant(healthState="warning"),
        "npu_fast": npu(320),
        "npu_slow": npu(100, latencyClass="1ms"),
        "cpu": {
            **{k: GPU[k] for k in ("name", "owner", "location", "latencyClass")},
            "resType": "CPU",
            "cpu": {
                "cores": 4096,
                "peak": [{"precision": "FP64", "value": 150, "unit": "TFLOPS"}],
            },
            "servingState": "production",
            "healthState": "ok",
        },
    }
    return {name: register(regional, body)["resourceId"] for name, body in bodies.items()}


def test_list_returns_everything_in_order_across_pages(
    regional: Any, catalogue: dict[str, str]
) -> None:
    assert list_all(regional) == sorted(catalogue.values())
    assert list_all(regional, limit=100) == sorted(catalogue.values())
    first = regional.client.get("/v1/resources", headers=regional.auth(READ)).json()
    assert "nextCursor" not in first
    assert len(first["items"]) == 7


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ({"resType": "GPU"}, {"gpu44", "gpu45", "gpu_draining", "gpu_warning"}),
        ({"resType": "STO"}, set()),
        ({"province": "45"}, {"gpu45"}),
        ({"servingState": "draining"}, {"gpu_draining"}),
        ({"healthState": "warning"}, {"gpu_warning"}),
        ({"latencyClass": "1ms"}, {"npu_slow"}),
        ({"precision": "FP64"}, {"cpu"}),
        (
            {"precision": "FP16", "minPeak": 148},
            {"gpu44", "gpu45", "gpu_draining", "gpu_warning", "npu_fast"},
        ),
        ({"precision": "FP16", "minPeak": 148.5}, {"npu_fast"}),
        ({"precision": "FP32", "minPeak": 100}, set()),
        ({"precision": "INT8", "minPeak": 296}, {"gpu44", "gpu45", "gpu_draining", "gpu_warning"}),
        ({"precision": "FP64", "minPeak": 150}, {"cpu"}),
        ({"resType": "GPU", "province": "44", "healthState": "ok"}, {"gpu44", "gpu_draining"}),
        ({"resType": "NPU", "precision": "FP16", "minPeak": 200}, {"npu_fast"}),
        (
            {"origin": "R4400001E", "servingState": "production", "healthState": "ok"},
            {"gpu44", "gpu45", "npu_fast", "npu_slow", "cpu"},
        ),
        ({"origin": "I44C3801D"}, set()),
    ],
)
def test_filters_return_exactly_the_matches(
    regional: Any, catalogue: dict[str, str], query: dict[str, Any], names: set[str]
) -> None:
    for limit in (1, 3, 100):
        assert list_all(regional, **query, limit=limit) == sorted(catalogue[n] for n in names)


def test_precision_figures_are_never_added_up(regional: Any) -> None:
    split = variant()
    split["accelerators"][0]["peak"] = [
        {"precision": "FP16", "value": 80, "unit": "TFLOPS"},
        {"precision": "BF16", "value": 80, "unit": "TFLOPS"},
    ]
    register(regional, split)
    assert list_all(regional, precision="FP16", minPeak=100) == []
    assert list_all(regional, precision="BF16", minPeak=80) != []


def test_min_peak_without_precision_is_precision_mismatch(regional: Any) -> None:
    answer = regional.client.get("/v1/resources?minPeak=100", headers=regional.auth(READ))
    problem_of(answer, 422, "precision-mismatch")


@pytest.mark.parametrize(
    ("query", "slug"),
    [
        ("resType=XYZ", "invalid-request"),
        ("precision=FP4", "invalid-request"),
        ("province=00", "invalid-request"),
        ("servingState=open", "invalid-request"),
        ("healthState=fine", "invalid-request"),
        ("latencyClass=2ms", "invalid-request"),
        ("precision=FP16&minPeak=fast", "invalid-request"),
        ("precision=FP16&minPeak=0", "invalid-request"),
        ("limit=0", "invalid-request"),
        ("origin=R4400001F", "check-character-mismatch"),
        ("origin=r4400001e", "malformed-identifier"),
        ("cursor=bm90LWFuLWlk", "invalid-request"),
    ],
)
def test_invalid_filter_values_are_400(regional: Any, query: str, slug: str) -> None:
    answer = regional.client.get(f"/v1/resources?{query}", headers=regional.auth(READ))
    problem_of(answer, 400, slug)


def test_list_etag_follows_the_page(regional: Any, catalogue: dict[str, str]) -> None:
    read = regional.auth(READ)
    first = regional.client.get("/v1/resources", headers=read).headers["ETag"]
    assert regional.client.get("/v1/resources", headers=read).headers["ETag"] == first
    regional.client.delete(f"/v1/resources/{catalogue['cpu']}", headers=regional.auth(WRITE))
    assert regional.client.get("/v1/resources", headers=read).headers["ETag"] != first


def test_aggregated_copies_are_listed_by_origin(regional: Any, catalogue: dict[str, str]) -> None:
    copy_id = mint_resource_id("I44C3801D", "NPU", 1)
    aggregated = {
        **npu(640),
        "resourceId": copy_id,
        "issuer": "I44C3801D",
        "origin": "I44C3801D",
        "createdAt": "2026-03-03T04:00:00.000Z",
        "updatedAt": "2026-03-03T04:00:00.000Z",
    }
    with regional.node.store.transaction() as db:
        write_entry(db, aggregated, origin="I44C3801D")
    assert list_all(regional, origin="I44C3801D") == [copy_id]
    assert copy_id in list_all(regional, resType="NPU", precision="FP16", minPeak=600)
    assert copy_id not in list_all(regional, origin="R4400001E")
    answer = regional.client.get(f"/v1/resources/{copy_id}", headers=regional.auth(READ))
    assert answer.json() == aggregated
    write = regional.auth(WRITE)
    etag = answer.headers["ETag"]
    patched = regional.client.patch(
        f"/v1/resources/{copy_id}",
        content=json.dumps({"healthState": "critical"}),
        headers={**write, "If-Match": etag, "Content-Type": "application/merge-patch+json"},
    )
    problem_of(patched, 403, "foreign-prefix")
    problem_of(
        regional.client.delete(f"/v1/resources/{copy_id}", headers=write), 403, "foreign-prefix"
    )
    assert (
        regional.client.get(f"/v1/resources/{copy_id}", headers=regional.auth(READ)).json()
        == aggregated
    )


# ---- getResource, updateResource ----------------------------------------------------------


def patch(running: Any, resource_id: str, body: Any, etag: str | None) -> Any:
    headers = {**running.auth(WRITE), "Content-Type": "application/merge-patch+json"}
    if etag is not None:
        headers["If-Match"] = etag
    return running.client.patch(
        f"/v1/resources/{resource_id}", content=json.dumps(body), headers=headers
    )


def test_get_answers_the_record_with_a_stable_etag(regional: Any) -> None:
    created = regional.client.post("/v1/resources", json=GPU, headers=regional.auth(WRITE))
    resource_id = created.json()["resourceId"]
    first = regional.client.get(f"/v1/resources/{resource_id}", headers=regional.auth(READ))
    assert first.status_code == 200
    assert first.json() == created.json()
    assert first.headers["ETag"] == created.headers["ETag"]
    again = regional.client.get(f"/v1/resources/{resource_id}", headers=regional.auth(READ))
    assert again.headers["ETag"] == first.headers["ETag"]


def test_if_none_match_gives_304(regional: Any) -> None:
    resource_id = register(regional, GPU)["resourceId"]
    read = regional.auth(READ)
    etag = regional.client.get(f"/v1/resources/{resource_id}", headers=read).headers["ETag"]
    for given in (etag, f'"other", {etag}', "*"):
        answer = regional.client.get(
            f"/v1/resources/{resource_id}", headers={**read, "If-None-Match": given}
        )
        assert answer.status_code == 304
        assert answer.content == b""
        assert answer.headers["ETag"] == etag
    stale = regional.client.get(
        f"/v1/resources/{resource_id}", headers={**read, "If-None-Match": '"stale"'}
    )
    assert stale.status_code == 200


def test_unknown_resource_is_not_found(regional: Any) -> None:
    unknown = mint_resource_id("R4400001E", "GPU", 77)
    answer = regional.client.get(f"/v1/resources/{unknown}", headers=regional.auth(READ))
    problem_of(answer, 404, "not-found")
    problem_of(patch(regional, unknown, {"healthState": "ok"}, '"x"'), 404, "not-found")


def test_malformed_resource_id_is_400(regional: Any) -> None:
    bad = mint_resource_id("R4400001E", "GPU", 1)[:-1] + "0"
    answer = regional.client.get(f"/v1/resources/{bad}", headers=regional.auth(READ))
    assert answer.status_code == 400


def test_update_applies_the_merge_patch_and_changes_the_etag(regional: Any) -> None:
    created = regional.client.post("/v1/resources", json=GPU, headers=regional.auth(WRITE))
    resource_id, etag = created.json()["resourceId"], created.headers["ETag"]
    change = {"price": {"amount": 8.6}, "energy": {"renewableShare": 0.5}, "name": {"en": "Pool A"}}
    answer = patch(regional, resource_id, change, etag)
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["price"] == {"amount": 8.6, "currency": "CNY", "per": "h"}
    assert record["energy"] == {"pue": 1.25, "renewableShare": 0.5}
    assert record["name"] == {"zh": GPU["name"]["zh"], "en": "Pool A"}
    assert answer.headers["ETag"] != etag
    read = regional.client.get(f"/v1/resources/{resource_id}", headers=regional.auth(READ))
    assert read.json() == record
    assert read.headers["ETag"] == answer.headers["ETag"]
    removed = patch(regional, resource_id, {"price": None}, answer.headers["ETag"])
    assert "price" not in removed.json()
    actions = [r["action"] for r in regional.node.store.rows("SELECT action FROM audit_events")]
    assert actions.count("resource.updated") == 2


def test_update_without_if_match_is_428_and_stale_is_412(regional: Any) -> None:
    created = regional.client.post("/v1/resources", json=GPU, headers=regional.auth(WRITE))
    resource_id, etag = created.json()["resourceId"], created.headers["ETag"]
    problem_of(
        patch(regional, resource_id, {"healthState": "warning"}, None), 428, "precondition-required"
    )
    problem_of(
        patch(regional, resource_id, {"healthState": "warning"}, '"stale"'),
        412,
        "precondition-failed",
    )
    read = regional.client.get(f"/v1/resources/{resource_id}", headers=regional.auth(READ))
    assert read.json() == created.json()
    assert read.headers["ETag"] == etag


@pytest.mark.parametrize(
    "change",
    [
        {"energy": {"pue": 0.9}},
        {"energy": {"renewableShare": 1.5}},
        {"resType": "CPU"},
        {"servingState": "open"},
    ],
)
def test_invalid_patch_is_400_and_leaves_the_record(regional: Any, change: dict[str, Any]) -> None:
    created = regional.client.post("/v1/resources", json=GPU, headers=regional.auth(WRITE))
    resource_id, etag = created.json()["resourceId"], created.headers["ETag"]
    problem_of(patch(regional, resource_id, change, etag), 400, "invalid-request")
    assert (
        regional.client.get(f"/v1/resources/{resource_id}", headers=regional.auth(READ)).json()
        == created.json()
    )


def test_patch_whose_merged_record_is_invalid_is_400(regional: Any) -> None:
    unpriced = variant()
    del unpriced["price"]
    created = regional.client.post("/v1/resources", json=unpriced, headers=regional.auth(WRITE))
    resource_id, etag = created.json()["resourceId"], created.headers["ETag"]
    answer = patch(regional, resource_id, {"price": {"amount": 5}}, etag)
    body = problem_of(answer, 400, "invalid-request")
    assert any(e["pointer"] == "/price" for e in body["errors"])
    assert (
        "price"
        not in regional.client.get(
            f"/v1/resources/{resource_id}", headers=regional.auth(READ)
        ).json()
    )


def test_patch_of_a_foreign_resource_is_foreign_prefix(regional: Any) -> None:
    foreign = mint_resource_id("I44C3801D", "GPU", 1)
    problem_of(patch(regional, foreign, {"healthState": "ok"}, '"x"'), 403, "foreign-prefix")


# ---- withdrawResource ---------------------------------------------------------------------


def test_withdrawal_then_404_everywhere(regional: Any, catalogue: dict[str, str]) -> None:
    resource_id = catalogue["gpu44"]
    write, read = regional.auth(WRITE), regional.auth(READ)
    etag = regional.client.get(f"/v1/resources/{resource_id}", headers=read).headers["ETag"]
    answer = regional.client.delete(f"/v1/resources/{resource_id}", headers=write)
    assert answer.status_code == 204
    assert answer.content == b""
    problem_of(regional.client.get(f"/v1/resources/{resource_id}", headers=read), 404, "not-found")
    problem_of(patch(regional, resource_id, {"healthState": "ok"}, etag), 404, "not-found")
    problem_of(
        regional.client.delete(f"/v1/resources/{resource_id}", headers=write), 404, "not-found"
    )
    assert resource_id not in list_all(regional)
    assert resource_id not in list_all(regional, resType="GPU", province="44")
    assert len(list_all(regional)) == 6
    resolved = regional.client.get(
        f"/v1/identifiers/{resource_id}", headers=regional.auth("ids:read")
    )
    assert resolved.status_code == 200
    assert register(regional, GPU)["resourceId"] != resource_id


def test_withdrawal_of_a_foreign_resource_is_foreign_prefix(regional: Any) -> None:
    guangxi = "R4500001" + mod37_36("R4500001")
    foreign = mint_resource_id(guangxi, "GPU", 1)
    answer = regional.client.delete(f"/v1/resources/{foreign}", headers=regional.auth(WRITE))
    problem_of(answer, 403, "foreign-prefix")


def test_national_node_lists_but_does_not_register(node_factory: Callable[..., Any]) -> None:
    national = node_factory("national")
    assert national.client.get("/v1/resources", headers=national.auth(READ)).json() == {"items": []}
    answer = national.client.post("/v1/resources", json=GPU, headers=national.auth(WRITE))
    assert answer.status_code == 405


def test_a_resource_with_running_tasks_is_not_withdrawn(
    regional: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    resource_id = register(regional, GPU)["resourceId"]
    monkeypatch.setattr(aggregation_api, "tasks_holding", lambda db, rid: 2)
    answer = regional.client.delete(f"/v1/resources/{resource_id}", headers=regional.auth(WRITE))
    problem_of(answer, 409, "conflict")
    assert resource_id in list_all(regional)
