"""Selection class: a demand in, ranked candidates out, across the federation, deterministic,
each score broken down with its reasons.

The suite registers resources that each fail exactly one constraint of one demand (and three
that meet it), then judges the node's answer against its own reading of the constraints.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from conformance.suite._aggregation import (
    PROPAGATION_S,
    Bodies,
    Writer,
    peer_clients,
    read,
    wait_for,
    writer_for,
)
from conformance.suite._selection import (
    MEETING,
    Judge,
    demand,
    impossible,
    mentions,
    seed_bodies,
)
from spec import Spec

CRITERIA = ("performance", "price", "green", "latency", "availability")


@pytest.fixture(scope="module")
def bodies(spec: Spec, provision: Provisioner) -> Bodies:
    return Bodies(spec, provision.namespace)


@pytest.fixture(scope="module")
def judge(spec: Spec) -> Judge:
    return Judge(spec)


@pytest.fixture(scope="module")
def writer(
    role: str,
    node: NodeClient,
    certifier: Certifier,
    contract: Contract,
    provision: Provisioner,
) -> Iterator[Writer]:
    registering = writer_for(role, node, certifier, contract, provision)
    yield registering
    registering.clean_up()


def _gone(node: NodeClient, resource_id: str) -> bool | None:
    return True if read(node, resource_id).status_code == 404 else None


@pytest.fixture(scope="module")
def seeds(writer: Writer, bodies: Bodies) -> dict[str, dict[str, Any]]:
    """The suite's resources as the node serves them; `withdrawn` already withdrawn."""
    records = writer.seed(seed_bodies(bodies))
    withdrawn = records["withdrawn"]["resourceId"]
    precondition(writer.withdraw(withdrawn).status_code == 204, "withdrawing a resource failed")
    gone, _ = wait_for(lambda: _gone(writer.target, withdrawn),
                       PROPAGATION_S if writer.remote else 0)  # fmt: skip
    precondition(gone, f"the withdrawn {withdrawn} is still served by the node")
    return records


def _select(node: NodeClient, contract: Contract, wanted: dict[str, Any]) -> dict[str, Any]:
    return _answered(node.post("/v1/selections", json=wanted), contract)


@pytest.fixture(scope="module")
def selection(node: NodeClient, seeds: dict[str, dict[str, Any]], bodies: Bodies) -> httpx.Response:
    """The node's answer to the demand, once the suite's resources are in place; each test
    judges it (a fixture that asserted would make every verdict an error)."""
    return node.post("/v1/selections", json=demand(bodies))


def _answered(response: httpx.Response, contract: Contract) -> dict[str, Any]:
    expect_status(response, 201)
    return dict(contract.expect_json(response, "schemas/selection.json"))


def _candidate_records(
    node: NodeClient, body: dict[str, Any], seeds: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The record of every candidate the harness can read: its own, or the node's copy."""
    known = {record["resourceId"]: record for record in seeds.values()}
    records = {}
    for candidate in body["candidates"]:
        resource_id = candidate["resourceId"]
        if resource_id in known:
            records[resource_id] = known[resource_id]
            continue
        response = read(node, resource_id)
        if response.status_code == 200:
            records[resource_id] = dict(body_of(response))
    return records


def _meeting_present(body: dict[str, Any], seeds: dict[str, dict[str, Any]]) -> None:
    ids = {c["resourceId"] for c in body["candidates"]}
    present = all(seeds[key]["resourceId"] in ids for key in MEETING)
    precondition(
        present or body["matched"] > len(body["candidates"]),
        "the resources that meet the demand are not among the candidates, so what excludes "
        "the others cannot be judged",
    )


@pytest.mark.requirement("CPIN-SEL-001")
def test_invalid_demand_answers_400(node: NodeClient, contract: Contract, bodies: Bodies) -> None:
    valid = demand(bodies)
    missing_type = {k: v for k, v in valid.items() if k != "acceleratorType"}
    for wrong in (
        {**valid, "precision": "FP12"},
        {**valid, "minRenewableShare": 1.5},
        missing_type,
        {**valid, "minPeak": {"value": 150, "unit": "TOPS"}},
        {**valid, "acceleratorCount": 0},
        {**valid, "regions": ["99"]},
    ):
        response = node.post("/v1/selections", json=wrong)
        changed = {k: wrong[k] for k in wrong if wrong.get(k) != valid.get(k)}
        assert response.status_code == 400, (
            f"createSelection answered {response.status_code} to an invalid demand "
            f"({changed or 'no acceleratorType'}), the spec requires 400"
        )
        contract.expect_problem(response, 400)


CONSTRAINTS = [
    pytest.param("type_and_precision", ("acceleratorType", "precision"),
                 marks=pytest.mark.requirement("CPIN-SEL-002"), id="type-precision"),
    pytest.param("peak", ("minPeak",), marks=pytest.mark.requirement("CPIN-SEL-003"), id="peak"),
    pytest.param("memory", ("minAcceleratorMemoryGiB",),
                 marks=pytest.mark.requirement("CPIN-SEL-004"), id="memory"),
    pytest.param("region", ("regions",), marks=pytest.mark.requirement("CPIN-SEL-005"),
                 id="region"),
    pytest.param("latency", ("latencyClass",), marks=pytest.mark.requirement("CPIN-SEL-006"),
                 id="latency"),
    pytest.param("price", ("maxPrice", "maxPrice/per", "maxPrice/none"),
                 marks=pytest.mark.requirement("CPIN-SEL-007"), id="price"),
    pytest.param("green", ("minRenewableShare",), marks=pytest.mark.requirement("CPIN-SEL-008"),
                 id="green"),
    pytest.param("available", ("servingState", "healthState", "withdrawn"),
                 marks=pytest.mark.requirement("CPIN-SEL-009"), id="available"),
    pytest.param("count", ("acceleratorCount",), marks=pytest.mark.requirement("CPIN-SEL-019"),
                 id="count"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "failing"), CONSTRAINTS)
def test_every_candidate_meets_the_constraint(
    rule: str,
    failing: tuple[str, ...],
    node: NodeClient,
    contract: Contract,
    selection: httpx.Response,
    seeds: dict[str, dict[str, Any]],
    judge: Judge,
    bodies: Bodies,
) -> None:
    body = _answered(selection, contract)
    _meeting_present(body, seeds)
    ids = {c["resourceId"] for c in body["candidates"]}
    for key in failing:
        resource_id = seeds[key]["resourceId"]
        assert resource_id not in ids, (
            f"candidate {resource_id} ({key}) does not meet the demand's {key.split('/')[0]}"
        )
    meets = judge.rule(rule)
    wanted = demand(bodies)
    for resource_id, record in _candidate_records(node, body, seeds).items():
        assert meets(wanted, record), f"candidate {resource_id} does not meet the demand ({rule})"


def _ranking(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(c["rank"], c["resourceId"], c["score"], c["components"]) for c in body["candidates"]]


@pytest.mark.requirement("CPIN-SEL-010")
def test_candidates_are_ranked_by_score_then_resource_id(
    contract: Contract, selection: httpx.Response, seeds: dict[str, dict[str, Any]]
) -> None:
    body = _answered(selection, contract)
    candidates = body["candidates"]
    precondition(len(candidates) >= 2, "fewer than two candidates: nothing to order")
    ranks = [c["rank"] for c in candidates]
    assert ranks == list(range(1, len(candidates) + 1)), f"ranks {ranks} are not 1, 2, 3 ..."
    for higher, lower in itertools.pairwise(candidates):
        assert higher["score"] >= lower["score"], (
            f"rank {higher['rank']} ({higher['resourceId']}, score {higher['score']}) is ahead "
            f"of a higher score ({lower['resourceId']}, {lower['score']})"
        )
        if higher["score"] == lower["score"]:
            assert higher["resourceId"] < lower["resourceId"], (
                f"equal scores {higher['score']}: {higher['resourceId']} is ranked before "
                f"{lower['resourceId']}; ties go by resourceId ascending"
            )


@pytest.mark.requirement("CPIN-SEL-011")
def test_same_demand_on_the_same_catalogue_gives_the_same_ranking(
    node: NodeClient, contract: Contract, seeds: dict[str, dict[str, Any]], bodies: Bodies
) -> None:
    wanted = demand(bodies)
    first = _select(node, contract, wanted)
    for _ in range(3):
        second = _select(node, contract, wanted)
        if second["catalogueVersion"] == first["catalogueVersion"]:
            break
        first = second
    precondition(
        second["catalogueVersion"] == first["catalogueVersion"],
        "the catalogueVersion changed between every two selections",
    )
    precondition(first["candidates"], "no candidates to compare")
    assert second["matched"] == first["matched"], (
        f"the same demand on catalogueVersion {first['catalogueVersion']} matched "
        f"{first['matched']} and then {second['matched']} resources"
    )
    assert _ranking(second) == _ranking(first), (
        f"the same demand on catalogueVersion {first['catalogueVersion']} gave different "
        "candidates, ranks, scores or components"
    )


@pytest.mark.requirement("CPIN-SEL-012")
def test_every_candidate_explains_each_criterion(
    contract: Contract, selection: httpx.Response, seeds: dict[str, dict[str, Any]], bodies: Bodies
) -> None:
    body = _answered(selection, contract)
    _meeting_present(body, seeds)
    given = demand(bodies)["weights"]
    total = sum(given.values())
    ours = {seeds[key]["resourceId"]: seeds[key] for key in MEETING}
    for candidate in body["candidates"]:
        components = {c["criterion"]: c for c in candidate["components"]}
        assert sorted(components) == sorted(CRITERIA), (
            f"candidate {candidate['resourceId']} scores the criteria {sorted(components)}, "
            f"the spec requires one component for each of {', '.join(CRITERIA)}"
        )
        for criterion, component in components.items():
            assert abs(component["weight"] - given[criterion] / total) <= 1e-6, (
                f"{candidate['resourceId']} {criterion} weight {component['weight']}; the demand "
                f"gives {given[criterion]} of {total}, normalised {given[criterion] / total:.6f}"
            )
            reason = component["reason"]
            assert all(any(ch.isdigit() for ch in reason[lang]) for lang in ("en", "zh")), (
                f"the {criterion} reason of {candidate['resourceId']} states no figure: {reason}"
            )
        record = ours.get(candidate["resourceId"])
        if record is None:
            continue
        precision = demand(bodies)["precision"]
        peak = next(p["value"] for p in record["accelerators"][0]["peak"]
                    if p["precision"] == precision)  # fmt: skip
        expected = {
            "performance": (peak,),
            "price": (record["price"]["amount"],),
            "green": (record["energy"]["renewableShare"], record["energy"]["renewableShare"] * 100,
                      record["energy"]["pue"]),
            "latency": (float(record["latencyClass"].removesuffix("ms")),),
        }  # fmt: skip
        for criterion, figures in expected.items():
            reason = components[criterion]["reason"]
            assert mentions(reason, *figures), (
                f"the {criterion} reason of {candidate['resourceId']} does not state the figure "
                f"used ({', '.join(str(f) for f in figures)}): {reason['en']!r}"
            )


@pytest.mark.requirement("CPIN-SEL-013")
def test_score_is_the_sum_of_weighted_components(
    contract: Contract, selection: httpx.Response, seeds: dict[str, dict[str, Any]]
) -> None:
    body = _answered(selection, contract)
    _meeting_present(body, seeds)
    for candidate in body["candidates"]:
        where = candidate["resourceId"]
        weights = sum(c["weight"] for c in candidate["components"])
        assert abs(weights - 1) <= 1e-6, f"the weights of {where} sum to {weights}, not 1"
        for component in candidate["components"]:
            product = component["weight"] * component["value"]
            assert abs(component["contribution"] - product) <= 5e-7 + 1e-12, (
                f"{where} {component['criterion']}: contribution {component['contribution']} is "
                f"not weight {component['weight']} x value {component['value']} = {product:.6f}"
            )
        contributions = sum(c["contribution"] for c in candidate["components"])
        assert abs(candidate["score"] - contributions) <= 1e-9, (
            f"score {candidate['score']} of {where} is not the sum of its contributions "
            f"{contributions:.6f}"
        )


@pytest.mark.requirement("CPIN-SEL-014")
def test_demand_nothing_meets_is_an_empty_success(
    node: NodeClient, contract: Contract, bodies: Bodies
) -> None:
    response = node.post("/v1/selections", json=impossible(bodies))
    assert response.status_code != 404, "createSelection answered 404 to a demand nothing meets"
    body = _answered(response, contract)
    assert body["matched"] == 0 and body["candidates"] == [], (
        f"a demand no resource meets gave matched {body['matched']} and "
        f"{len(body['candidates'])} candidates; the spec requires 0 and an empty list"
    )


def _register_elsewhere(
    role: str, certifier: Certifier, request: pytest.FixtureRequest, body: dict[str, Any]
) -> tuple[NodeClient, str] | None:
    """Register `body` at another node of the federation: an industry node's regional
    upstream, else a declared regional or industry peer. The node and the new id, or None."""
    others: list[NodeClient] = []
    if role == "industry" and "upstreamUrl" in certifier.ics.federation:
        others.append(request.getfixturevalue("upstream"))
    others.extend(peer_clients(certifier, ("regional", "industry")))
    for other in others:
        response = other.post("/v1/resources", json=body)
        if response.status_code == 201:
            return other, str(body_of(response)["resourceId"])
    return None


@pytest.mark.requirement("CPIN-SEL-015")
def test_selection_spans_the_federation(
    role: str,
    node: NodeClient,
    contract: Contract,
    selection: httpx.Response,
    seeds: dict[str, dict[str, Any]],
    bodies: Bodies,
    certifier: Certifier,
    request: pytest.FixtureRequest,
) -> None:
    body = _answered(selection, contract)
    ids = {c["resourceId"] for c in body["candidates"]}
    missing = [seeds[k]["resourceId"] for k in MEETING if seeds[k]["resourceId"] not in ids]
    assert not missing or body["matched"] > len(body["candidates"]), (
        f"{', '.join(missing)} meet the demand but are not candidates (matched {body['matched']})"
    )
    if role == "national":
        return
    body = bodies.resource("selection elsewhere", province=bodies.provinces[0],
                           peaks=(("FP16", 250.0),))  # fmt: skip
    registered = _register_elsewhere(role, certifier, request, body)
    precondition(registered is not None, "no other node of the federation took a registration "
                 "(the ICS names no peer with credentials that may register)")  # fmt: skip
    assert registered is not None
    elsewhere, resource_id = registered
    try:

        def chosen() -> bool | None:
            answer = _select(node, contract, demand(bodies))
            return True if resource_id in {c["resourceId"] for c in answer["candidates"]} else None

        seen, _ = wait_for(chosen)
        assert seen, (
            f"{resource_id}, registered at {elsewhere.base_url} and meeting the demand, was not "
            f"a candidate at this node within {PROPAGATION_S:.0f} s"
        )
    finally:
        elsewhere.delete(f"/v1/resources/{resource_id}")


@pytest.mark.requirement("CPIN-SEL-016")
def test_stored_selection_is_returned_unchanged(
    node: NodeClient, contract: Contract, writer: Writer, bodies: Bodies,
    seeds: dict[str, dict[str, Any]],
) -> None:  # fmt: skip
    extra = writer.seed({"x": bodies.resource("selection stored", province=bodies.provinces[0])})
    resource_id = extra["x"]["resourceId"]
    created = node.post("/v1/selections", json=demand(bodies))
    body = _answered(created, contract)
    precondition(resource_id in {c["resourceId"] for c in body["candidates"]},
                 f"{resource_id} meets the demand but is not a candidate")  # fmt: skip
    expect_status(writer.withdraw(resource_id), 204)
    gone, _ = wait_for(lambda: _gone(node, resource_id), PROPAGATION_S if writer.remote else 0)
    precondition(gone, f"the withdrawn {resource_id} is still served by the node")
    stored = node.get(f"/v1/selections/{body['selectionId']}")
    expect_status(stored, 200)
    assert body_of(stored) == body, (
        f"getSelection {body['selectionId']} differs from what createSelection answered "
        "(computed again?)"
    )
    unknown = node.get(f"/v1/selections/{uuid.uuid4()}")
    assert unknown.status_code == 404, (
        f"getSelection of an unknown id answered {unknown.status_code}, the spec requires 404"
    )


@pytest.mark.requirement("CPIN-SEL-017")
def test_exclusions_are_counted_per_constraint(
    contract: Contract, selection: httpx.Response, seeds: dict[str, dict[str, Any]]
) -> None:
    body = _answered(selection, contract)
    failing = {key.split("/")[0] for key in seeds if key not in (*MEETING, "withdrawn")}
    excluded = body["excluded"]
    counted = sum(1 for key in seeds if key not in (*MEETING, "withdrawn"))
    assert excluded["count"] >= counted, (
        f"excluded.count is {excluded['count']}, but at least {counted} of the suite's "
        "resources fail a constraint"
    )
    uncounted = sorted(c for c in failing if excluded["byConstraint"].get(c, 0) < 1)
    assert not uncounted, (
        f"excluded.byConstraint counts no resource under {', '.join(uncounted)}, though the "
        "suite registered one that fails each"
    )
