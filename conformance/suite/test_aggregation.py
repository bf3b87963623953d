"""Aggregation class: the resource catalogue (register, filters, ETag/If-Match, withdrawal)
and its upward aggregation.

Regional and industry nodes are written to directly. The national node serves only reads: its
index is fed from below (see `_aggregation.writer_for`), so its tests read what arrives there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.identifiers import IdentifierRules, mod37_36
from conformance.provisioning import Provisioner
from conformance.session import Certifier, RequirementFailure
from conformance.suite._aggregation import (
    PROPAGATION_S,
    Bodies,
    Writer,
    list_all,
    listed_ids,
    patch,
    read,
    wait_for,
    writer_for,
)
from spec import Spec

STRONG_ETAG = re.compile(r'"[!#-~]{1,128}"')
SHOULD_ARRIVE_S = 10.0  # CPIN-AGG-020
FILTERS = ("resType", "province", "servingState", "healthState", "latencyClass")


@pytest.fixture(scope="module")
def bodies(spec: Spec, provision: Provisioner) -> Bodies:
    return Bodies(spec, provision.namespace)


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


@pytest.fixture(scope="module")
def seeds(writer: Writer, bodies: Bodies) -> dict[str, dict[str, Any]]:
    """Three resources that each filter tells apart: two types, two provinces, three states,
    and peak figures that only a comparison at one precision sorts correctly."""
    first, second = bodies.accelerator_types[:2]
    here, there = bodies.provinces[:2]
    return writer.seed(
        {
            "a": bodies.resource("filter A", res_type=first, province=here,
                                 peaks=(("FP16", 200.0), ("FP32", 50.0), ("INT8", 400.0))),
            "b": bodies.resource("filter B", res_type=second, province=here,
                                 peaks=(("FP16", 100.0), ("INT8", 800.0)), latency="1ms",
                                 serving="draining", health="warning"),
            "c": bodies.resource("filter C", res_type=first, province=there,
                                 peaks=(("FP32", 30.0), ("BF16", 300.0)), latency="20ms",
                                 health="critical"),
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def tracked(writer: Writer, bodies: Bodies) -> dict[str, Any]:
    """One resource whose changes the ETag tests follow."""
    return writer.seed({"t": bodies.resource("etag")})["t"]


def _peak_at(item: Mapping[str, Any], precision: str, floor: float | None) -> bool:
    groups = [group.get("peak", []) for group in item.get("accelerators", [])]
    groups.append(item.get("cpu", {}).get("peak", []))
    return any(
        peak["precision"] == precision and (floor is None or peak["value"] >= floor)
        for figures in groups
        for peak in figures
    )


def _satisfies(item: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Whether a record meets every filter of a listResources query, judged by the harness."""
    fields = {
        "resType": item.get("resType"),
        "province": item.get("location", {}).get("province"),
        "servingState": item.get("servingState"),
        "healthState": item.get("healthState"),
        "latencyClass": item.get("latencyClass"),
    }
    if any(name in params and fields[name] != params[name] for name in FILTERS):
        return False
    if "precision" in params:
        floor = float(params["minPeak"]) if "minPeak" in params else None
        return _peak_at(item, params["precision"], floor)
    return True


def _expect_filter(
    node: NodeClient,
    contract: Contract,
    seeds: Mapping[str, dict[str, Any]],
    params: dict[str, Any],
) -> None:
    """Each seed is listed exactly when it meets the filters, and nothing listed misses them."""
    items = list_all(node, contract, params)
    returned = {item["resourceId"] for item in items}
    for record in seeds.values():
        wanted = _satisfies(record, params)
        listed = record["resourceId"] in returned
        assert listed == wanted, (
            f"listResources {params} {'left out' if wanted else 'returned'} "
            f"{record['resourceId']}, which {'meets' if wanted else 'does not meet'} the filters"
        )
    for item in items:
        assert _satisfies(item, params), (
            f"listResources {params} returned {item['resourceId']}, which does not meet them"
        )


@pytest.mark.requirement("CPIN-AGG-001")
def test_registration_answers_201_with_etag_and_a_resolvable_minted_id(
    node: NodeClient,
    contract: Contract,
    bodies: Bodies,
    provision: Provisioner,
    identifier_rules: IdentifierRules,
    ics: Any,
) -> None:
    body = bodies.resource("registration")
    created = provision.create("/v1/resources", body, key="resourceId")
    response = created.response
    expect_status(response, 201)
    etag = response.headers.get("etag")
    assert etag is not None and STRONG_ETAG.fullmatch(etag), (
        f"registerResource answered ETag {etag!r}; the spec requires a strong entity tag"
    )
    record = contract.expect_json(response, "schemas/resource.json")
    resource_id = record["resourceId"]
    flaw = identifier_rules.resource_id_flaw(resource_id)
    assert flaw is None, f"the minted resourceId {resource_id!r}: {flaw}"
    assert resource_id.startswith(ics.node_code + "-") and record["issuer"] == ics.node_code, (
        f"resource {resource_id} (issuer {record['issuer']}) was not minted under the node's "
        f"own NodeCode {ics.node_code}"
    )
    for member, value in body.items():
        assert record.get(member) == value, (
            f"the registered record's {member} is {record.get(member)!r}, "
            f"the request gave {value!r}"
        )
    resolved = node.get(f"/v1/identifiers/{resource_id}")
    assert resolved.status_code == 200, (
        f"resolveIdentifier of the new resource {resource_id} answered {resolved.status_code}, "
        "the spec requires 200 (the id is registered as an identifier on registration)"
    )


@pytest.mark.requirement("CPIN-AGG-002")
def test_peak_figure_without_precision_is_refused(
    node: NodeClient, contract: Contract, bodies: Bodies, provision: Provisioner
) -> None:
    body = bodies.resource("no precision", peaks=())
    body["accelerators"][0]["peak"].append({"value": 120.0, "unit": "TFLOPS"})
    refused = provision.create("/v1/resources", body, key="resourceId")
    contract.expect_problem(refused.response, 400)

    accepted = provision.create("/v1/resources", bodies.resource("precision"), key="resourceId")
    precondition(accepted.response.status_code == 201, "a valid resource could not be registered")
    for group in accepted.body["accelerators"]:
        for peak in group["peak"]:
            assert peak.get("precision") in bodies.units, (
                f"the record gives a peak figure {peak} without a precision of the code list"
            )
    resource_id, etag = accepted.body["resourceId"], accepted.response.headers.get("etag")
    figures = [{"kind": body["resType"], "model": "x", "count": 1, "memoryGiB": 8,
                "peak": [{"value": 1.0, "unit": "TFLOPS"}]}]  # fmt: skip
    update = patch(node, resource_id, {"accelerators": figures}, etag)
    contract.expect_problem(update, 400)
    _expect_unchanged(node, accepted.body)


def _expect_unchanged(node: NodeClient, before: Mapping[str, Any]) -> None:
    current = read(node, before["resourceId"])
    expect_status(current, 200)
    assert body_of(current) == before, (
        f"a refused update changed {before['resourceId']}; the record must stay as it was"
    )


def _registered(node: NodeClient, provision: Provisioner, body: dict[str, Any]) -> dict[str, Any]:
    created = provision.create("/v1/resources", body, key="resourceId")
    expect_status(created.response, 201)
    return {**created.body, "_etag": created.response.headers.get("etag")}


@pytest.mark.requirement("CPIN-AGG-003")
def test_pue_below_one_is_refused_and_one_accepted(
    node: NodeClient, contract: Contract, bodies: Bodies, provision: Provisioner
) -> None:
    below = provision.create("/v1/resources", bodies.resource("pue 0.99", energy=(0.99, 0.5)),
                             key="resourceId")  # fmt: skip
    contract.expect_problem(below.response, 400)
    record = _registered(node, provision, bodies.resource("pue 1.0", energy=(1.0, 0.5)))
    etag = record.pop("_etag")
    assert record["energy"]["pue"] == 1.0, f"PUE 1.0 was stored as {record['energy']['pue']}"
    contract.expect_problem(patch(node, record["resourceId"], {"energy": {"pue": 0.95}}, etag), 400)
    _expect_unchanged(node, record)
    raised = patch(node, record["resourceId"], {"energy": {"pue": 1.4}}, etag)
    expect_status(raised, 200)
    lowered = patch(node, record["resourceId"], {"energy": {"pue": 1.0}},
                    raised.headers.get("etag"))  # fmt: skip
    expect_status(lowered, 200)


@pytest.mark.requirement("CPIN-AGG-004")
def test_renewable_share_outside_0_to_1_is_refused(
    node: NodeClient, contract: Contract, bodies: Bodies, provision: Provisioner
) -> None:
    for share in (-0.01, 1.01):
        refused = provision.create("/v1/resources", bodies.resource(f"share {share}",
                                   energy=(1.2, share)), key="resourceId")  # fmt: skip
        contract.expect_problem(refused.response, 400)
    record = _registered(node, provision, bodies.resource("share 0", energy=(1.2, 0.0)))
    etag = record.pop("_etag")
    update = patch(node, record["resourceId"], {"energy": {"renewableShare": 1.5}}, etag)
    contract.expect_problem(update, 400)
    _expect_unchanged(node, record)
    full = patch(node, record["resourceId"], {"energy": {"renewableShare": 1}}, etag)
    expect_status(full, 200)
    assert body_of(full)["energy"]["renewableShare"] == 1, "a renewable share of 1 was not kept"


@pytest.mark.requirement("CPIN-AGG-005")
def test_owner_with_an_invalid_uscc_is_refused(
    contract: Contract, bodies: Bodies, provision: Provisioner
) -> None:
    valid = bodies.owner["uscc"]
    wrong_check = valid[:17] + ("0" if valid[17] != "0" else "1")
    for uscc in (wrong_check, valid[:17], valid[:16] + "I" + valid[17]):
        body = bodies.resource("owner")
        body["owner"]["uscc"] = uscc
        refused = provision.create("/v1/resources", body, key="resourceId")
        contract.expect_problem(refused.response, 400, "invalid-request")


@pytest.mark.requirement("CPIN-AGG-006")
def test_type_filter_returns_exactly_that_type(
    node: NodeClient, contract: Contract, seeds: dict[str, dict[str, Any]], bodies: Bodies
) -> None:
    for res_type in bodies.accelerator_types[:2]:
        _expect_filter(node, contract, seeds, {"resType": res_type})


@pytest.mark.requirement("CPIN-AGG-007")
def test_precision_filter_compares_figures_at_that_precision_only(
    node: NodeClient, contract: Contract, seeds: dict[str, dict[str, Any]]
) -> None:
    for params in (
        {"precision": "FP16", "minPeak": 150},
        {"precision": "FP16"},
        {"precision": "FP32", "minPeak": 40},
        {"precision": "INT8", "minPeak": 500},
        {"precision": "BF16", "minPeak": 250},
    ):
        _expect_filter(node, contract, seeds, params)


@pytest.mark.requirement("CPIN-AGG-008")
def test_province_filter_returns_exactly_that_province(
    node: NodeClient, contract: Contract, seeds: dict[str, dict[str, Any]], bodies: Bodies
) -> None:
    for province in bodies.provinces[:2]:
        _expect_filter(node, contract, seeds, {"province": province})


@pytest.mark.requirement("CPIN-AGG-009")
def test_state_filters_return_exactly_that_state(
    node: NodeClient, contract: Contract, seeds: dict[str, dict[str, Any]]
) -> None:
    for params in (
        {"servingState": "draining"},
        {"servingState": "production"},
        {"healthState": "critical"},
        {"healthState": "ok"},
    ):
        _expect_filter(node, contract, seeds, params)


@pytest.mark.requirement("CPIN-AGG-010")
def test_several_filters_combine_by_conjunction(
    node: NodeClient, contract: Contract, seeds: dict[str, dict[str, Any]], bodies: Bodies
) -> None:
    first = bodies.accelerator_types[0]
    here = bodies.provinces[0]
    for params in (
        {"resType": first, "province": here, "healthState": "ok"},
        {"resType": first, "servingState": "production", "precision": "BF16", "minPeak": 250},
        {"province": here, "precision": "FP16", "minPeak": 150, "latencyClass": "5ms"},
    ):
        _expect_filter(node, contract, seeds, params)


@pytest.mark.requirement("CPIN-AGG-011")
def test_invalid_filter_values_answer_400(node: NodeClient, contract: Contract) -> None:
    for params in (
        {"resType": "XYZ"},
        {"precision": "FP12"},
        {"province": "99"},
        {"servingState": "running"},
        {"healthState": "fine"},
        {"latencyClass": "2ms"},
        {"precision": "FP16", "minPeak": "fast"},
        {"precision": "FP16", "minPeak": "-5"},
    ):
        response = node.get("/v1/resources", params=params)
        assert response.status_code == 400, (
            f"listResources {params} answered {response.status_code}, the spec requires 400"
        )
        contract.expect_problem(response, 400)


def _etag(response: Any) -> str:
    etag = response.headers.get("etag")
    assert etag is not None, f"{response.request.url.path} answered without an ETag"
    return str(etag)


def _change(writer: Writer, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Patch at the writing node; the record as the writing node answers it."""
    current = read(writer.client, resource_id)
    expect_status(current, 200)
    changed = patch(writer.client, resource_id, body, current.headers.get("etag"))
    precondition(changed.status_code == 200, f"the test update answered {changed.status_code}")
    return dict(body_of(changed))


def _served(node: NodeClient, wanted: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The node's record and ETag once it shows every member of `wanted`."""
    response = read(node, wanted["resourceId"])
    if response.status_code != 200:
        return None
    record = dict(body_of(response))
    if any(record.get(k) != v for k, v in wanted.items() if k != "origin"):
        return None
    return record, _etag(response)


@pytest.mark.requirement("CPIN-AGG-012")
def test_resource_etag_is_strong_and_changes_exactly_with_the_record(
    node: NodeClient, writer: Writer, tracked: dict[str, Any]
) -> None:
    resource_id = tracked["resourceId"]
    first, second = read(node, resource_id), read(node, resource_id)
    expect_status(first, 200)
    expect_status(second, 200)
    etag = _etag(first)
    assert STRONG_ETAG.fullmatch(etag), f"getResource answered ETag {etag!r}, not a strong one"
    assert _etag(second) == etag, (
        f"two reads of the unchanged {resource_id} gave ETags {etag} and {_etag(second)}"
    )
    label = f"{tracked['name']['en']} renamed"
    changed = _change(writer, resource_id, {"name": {"en": label, "zh": label}})
    seen, _ = wait_for(lambda: _served(node, changed), PROPAGATION_S if writer.remote else 0)
    assert seen is not None, f"getResource of {resource_id} does not show the update"
    assert seen[1] != etag, f"the ETag of {resource_id} stayed {etag} although the record changed"


@pytest.mark.requirement("CPIN-AGG-013")
def test_update_without_if_match_answers_428(
    node: NodeClient, contract: Contract, bodies: Bodies, provision: Provisioner
) -> None:
    record = _registered(node, provision, bodies.resource("if-match"))
    record.pop("_etag")
    response = patch(node, record["resourceId"], {"servingState": "draining"}, None)
    contract.expect_problem(response, 428, "precondition-required")
    _expect_unchanged(node, record)


@pytest.mark.requirement("CPIN-AGG-014")
def test_update_with_a_stale_etag_answers_412(
    node: NodeClient, contract: Contract, bodies: Bodies, provision: Provisioner
) -> None:
    record = _registered(node, provision, bodies.resource("stale"))
    stale = record.pop("_etag")
    first = patch(node, record["resourceId"], {"healthState": "warning"}, stale)
    expect_status(first, 200)
    current = dict(body_of(first))
    for etag in (stale, '"cpin-conformance-no-such-etag"'):
        response = patch(node, record["resourceId"], {"servingState": "closed"}, etag)
        contract.expect_problem(response, 412, "precondition-failed")
        _expect_unchanged(node, current)


@pytest.mark.requirement("CPIN-AGG-015")
def test_merge_patch_is_applied_and_the_result_validated(
    node: NodeClient, contract: Contract, bodies: Bodies, provision: Provisioner
) -> None:
    record = _registered(node, provision, bodies.resource("merge", price=(10.0, "h")))
    etag = record.pop("_etag")
    change = {"servingState": "draining", "price": {"amount": 7.5}, "extensions": {"x-cpin": "1"}}
    response = patch(node, record["resourceId"], change, etag)
    expect_status(response, 200)
    updated = contract.expect_json(response, "schemas/resource.json")
    assert updated["servingState"] == "draining", "the patched servingState was not applied"
    assert updated["price"] == {"amount": 7.5, "currency": "CNY", "per": "h"}, (
        f"price after merging {{'amount': 7.5}} is {updated['price']}; a merge patch keeps "
        "the members it does not name"
    )
    assert updated["extensions"] == {"x-cpin": "1"}, "the patched extensions were not applied"
    new_etag = response.headers.get("etag")
    assert new_etag is not None and new_etag != etag, (
        f"the update answered ETag {new_etag!r}; the spec requires a new one"
    )
    current = read(node, record["resourceId"])
    assert body_of(current) == updated, "getResource after the update differs from its answer"

    bare = _registered(node, provision, bodies.resource("merge invalid", price=None))
    bare_etag = bare.pop("_etag")
    invalid = patch(node, bare["resourceId"], {"price": {"amount": 3}}, bare_etag)
    contract.expect_problem(invalid, 400)
    _expect_unchanged(node, bare)


@pytest.mark.requirement("CPIN-AGG-016")
def test_withdrawn_resource_answers_404(
    node: NodeClient, contract: Contract, bodies: Bodies, provision: Provisioner
) -> None:
    record = _registered(node, provision, bodies.resource("withdrawal"))
    etag = record.pop("_etag")
    resource_id = record["resourceId"]
    expect_status(node.delete(f"/v1/resources/{resource_id}"), 204)
    contract.expect_problem(read(node, resource_id), 404, "not-found")
    contract.expect_problem(patch(node, resource_id, {"healthState": "ok"}, etag), 404, "not-found")
    contract.expect_problem(node.delete(f"/v1/resources/{resource_id}"), 404, "not-found")


@pytest.mark.requirement("CPIN-AGG-017")
def test_withdrawn_resource_is_no_longer_listed(
    node: NodeClient, contract: Contract, writer: Writer, bodies: Bodies
) -> None:
    record = writer.seed({"w": bodies.resource("listed withdrawal")})["w"]
    resource_id = record["resourceId"]
    params = {"resType": record["resType"], "province": record["location"]["province"]}
    assert resource_id in listed_ids(node, contract, params), (
        f"listResources {params} does not return {resource_id}, which the node serves"
    )
    expect_status(writer.withdraw(resource_id), 204)

    def gone() -> bool | None:
        return True if resource_id not in listed_ids(node, contract, params) else None

    seen, _ = wait_for(gone, PROPAGATION_S if writer.remote else 0)
    assert seen, f"listResources {params} still returns the withdrawn {resource_id}"


@pytest.mark.requirement("CPIN-AGG-018")
def test_foreign_resources_answer_403_foreign_prefix(
    node: NodeClient, contract: Contract, ics: Any
) -> None:
    own = ics.node_code
    other = own[:6] + ("98" if own[6:8] != "98" else "97")
    other += mod37_36(other)
    serial = "00000001"
    foreign = [f"{other}-GPU-{serial}{mod37_36(other + 'GPU' + serial)}"]
    copies = [i for i in list_all(node, contract) if not i["resourceId"].startswith(own)]
    foreign += [copy["resourceId"] for copy in copies[:1]]
    for resource_id in foreign:
        update = patch(node, resource_id, {"healthState": "warning"}, '"cpin-conformance"')
        contract.expect_problem(update, 403, "foreign-prefix")
        contract.expect_problem(node.delete(f"/v1/resources/{resource_id}"), 403, "foreign-prefix")


@pytest.fixture(scope="module")
def upward(role: str, writer: Writer, request: pytest.FixtureRequest) -> tuple[Writer, NodeClient]:
    """Where a registration is made and the node above where it must arrive: the target and
    its upstream, or (at the national node) the peer below and the target."""
    if role == "national":
        return writer, writer.target
    observer: NodeClient = request.getfixturevalue("upstream")
    return writer, observer


def _arrival(observer: NodeClient, contract: Contract, record: Mapping[str, Any]) -> float | None:
    """Seconds until `record` was listed at the observer (None: not within the wait)."""
    params = {"resType": record["resType"], "province": record["location"]["province"]}

    def listed() -> bool | None:
        return True if record["resourceId"] in listed_ids(observer, contract, params) else None

    seen, elapsed = wait_for(listed)
    return elapsed if seen else None


def _register_upward(writer: Writer, bodies: Bodies, what: str) -> dict[str, Any]:
    body = bodies.resource(what, peaks=(("FP16", 200.0), ("BF16", 210.0), ("FP32", 50.0),
                                        ("INT8", 400.0)))  # fmt: skip
    registered = writer.register(body)
    precondition(registered.status_code == 201, f"registration answered {registered.status_code}")
    return dict(body_of(registered))


@pytest.mark.requirement("CPIN-AGG-019", "CPIN-AGG-020")
def test_registered_resource_reaches_the_node_above(
    upward: tuple[Writer, NodeClient], contract: Contract, bodies: Bodies
) -> None:
    writer, observer = upward
    record = _register_upward(writer, bodies, "upward")
    elapsed = _arrival(observer, contract, record)
    assert elapsed is not None, (
        f"{record['resourceId']} was not listed by the node above within {PROPAGATION_S:.0f} s"
    )
    copy = read(observer, record["resourceId"])
    if copy.status_code != 200:
        raise RequirementFailure(
            f"getResource of {record['resourceId']} at the node above answered "
            f"{copy.status_code} although it lists it",
            ("CPIN-AGG-019",),
        )
    if elapsed > SHOULD_ARRIVE_S:
        raise RequirementFailure(
            f"{record['resourceId']} reached the node above after {elapsed:.1f} s, the spec "
            f"recommends at most {SHOULD_ARRIVE_S:.0f} s",
            ("CPIN-AGG-020",),
        )


@pytest.mark.requirement("CPIN-AGG-022")
def test_aggregated_copy_keeps_every_figure_of_the_record(
    upward: tuple[Writer, NodeClient], contract: Contract, bodies: Bodies
) -> None:
    writer, observer = upward
    record = _register_upward(writer, bodies, "upward copy")
    resource_id = record["resourceId"]
    copy, _ = wait_for(lambda: _readable(observer, resource_id))
    precondition(copy is not None, f"{resource_id} did not reach the node above")
    assert copy is not None
    issued = read(writer.client, resource_id)
    expect_status(issued, 200)
    original = dict(body_of(issued))
    altered = sorted(k for k in {*copy, *original} - {"origin"} if copy.get(k) != original.get(k))
    assert not altered, (
        f"the aggregated copy of {resource_id} differs from the issuing node's record in "
        f"{', '.join(altered)}"
    )


def _readable(node: NodeClient, resource_id: str) -> dict[str, Any] | None:
    response = read(node, resource_id)
    return dict(body_of(response)) if response.status_code == 200 else None


@pytest.mark.requirement("CPIN-AGG-021")
def test_updates_and_withdrawals_reach_the_node_above(
    upward: tuple[Writer, NodeClient], contract: Contract, bodies: Bodies
) -> None:
    writer, observer = upward
    registered = writer.register(bodies.resource("upward change"))
    precondition(registered.status_code == 201, f"registration answered {registered.status_code}")
    record = dict(body_of(registered))
    resource_id = record["resourceId"]
    precondition(_arrival(observer, contract, record) is not None,
                 f"{resource_id} did not reach the node above, so its changes cannot")  # fmt: skip
    changed = _change(writer, resource_id, {"servingState": "draining", "price": {"amount": 4.5}})
    patched = {k: changed[k] for k in ("resourceId", "servingState", "price", "updatedAt")}
    seen, _ = wait_for(lambda: _served(observer, patched))
    assert seen is not None, (
        f"the update of {resource_id} was not reflected at the node above within "
        f"{PROPAGATION_S:.0f} s"
    )
    expect_status(writer.withdraw(resource_id), 204)
    params = {"resType": record["resType"], "province": record["location"]["province"]}

    def removed() -> bool | None:
        if read(observer, resource_id).status_code != 404:
            return None
        return True if resource_id not in listed_ids(observer, contract, params) else None

    gone, _ = wait_for(removed)
    assert gone, (
        f"the withdrawn {resource_id} is still served by the node above after {PROPAGATION_S:.0f} s"
    )


@pytest.mark.requirement("CPIN-AGG-023")
def test_conditional_read_answers_304(node: NodeClient, tracked: dict[str, Any]) -> None:
    current = read(node, tracked["resourceId"])
    expect_status(current, 200)
    response = node.get(f"/v1/resources/{tracked['resourceId']}",
                        headers={"If-None-Match": _etag(current)})  # fmt: skip
    expect_status(response, 304)
    assert response.content == b"", "a 304 answer carries a body"


@pytest.mark.requirement("CPIN-AGG-024")
def test_list_etag_changes_with_the_page(
    node: NodeClient, writer: Writer, tracked: dict[str, Any]
) -> None:
    params = {"resType": tracked["resType"], "province": tracked["location"]["province"],
              "limit": 100}  # fmt: skip
    first = node.get("/v1/resources", params=params)
    expect_status(first, 200)
    etag = first.headers.get("etag")
    precondition(etag is not None, "listResources sends no ETag (optional)")
    label = f"{tracked['name']['en']} listed"
    changed = _change(writer, tracked["resourceId"], {"name": {"en": label, "zh": label}})

    def page_changed() -> str | None:
        response = node.get("/v1/resources", params=params)
        items = body_of(response).get("items", [])
        if not any(item == {**item, **changed} for item in items):
            return None
        return str(response.headers.get("etag"))

    later, _ = wait_for(page_changed, PROPAGATION_S if writer.remote else 0)
    precondition(later is not None, "the changed resource is not on the first page")
    assert later != etag, f"listResources kept ETag {etag} although its page changed"
