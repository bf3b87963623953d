"""federation: registration with the national node, registered keys, peers, upward reports
accepted only from children and only within their subtree, and proxied answers.

Calls between nodes carry node assertions. The harness signs them as a test node of its own:
an industry node it gets approved at the national node (under the target when the target is
a regional node, under the target's parent when it is an industry node), whose key it holds
and whose registered endpoint answers nothing. The test node is suspended when the module ends.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from conformance.suite._federation import (
    expected_peers,
    identifier_item,
    may,
    national_url,
    new_client,
    recently_changed,
    registry_record,
    resource_record,
)
from conformance.suite._identification import Elsewhere, path_of, unique_uscc
from conformance.suite._node_registry import (
    NODES,
    UNREACHABLE_ENDPOINT,
    Registry,
    TestNode,
    all_pages,
    resource_id,
    unused_industry,
    valid_uscc,
)
from spec import Spec

IDENTIFIERS = "/v1/federation/identifiers"
CATALOGUE = "/v1/federation/catalogue"
PEERS = "/v1/federation/peers"
ACK_SCHEMA = "schemas/federation.json#/$defs/FederationAck"
PEER_PAGE_SCHEMA = "schemas/federation.json#/$defs/PeerPage"
ENROL_SCOPES = {"registry:read", "registry:apply", "registry:admin"}


@pytest.fixture(scope="module")
def national(
    certifier: Certifier, node: NodeClient, request: pytest.FixtureRequest
) -> Iterator[NodeClient]:
    """A client of the national node's registry (the target itself when it is national)."""
    if certifier.ics.role == "national":
        yield node
        return
    upstream: NodeClient = request.getfixturevalue("upstream")
    url = national_url(certifier, upstream)
    precondition(url, "the national node cannot be found above the target's upstream")
    assert url is not None
    client = upstream if url == upstream.base_url else new_client(certifier, url)
    precondition(may(client, {"registry:read"}), f"the upstream client may not read {url}")
    yield client
    if client is not upstream:
        client.close()


@pytest.fixture(scope="module")
def own_code(service_info: dict[str, Any]) -> str:
    return str(service_info["nodeCode"])


@pytest.fixture(scope="module")
def registry(
    national: NodeClient, spec: Spec, certifier: Certifier, provision: Provisioner
) -> Iterator[Registry]:
    found = Registry(national, spec, provision.label("federation"), random.Random(certifier.seed))
    yield found
    for line in found.suspend_all():
        certifier.log(line)


@pytest.fixture(scope="module")
def test_node(
    registry: Registry, role: str, own_code: str, service_info: dict[str, Any]
) -> TestNode:
    """The harness's own industry node, below the target's region, unreachable."""
    precondition(
        may(registry.national, ENROL_SCOPES),
        "the client of the national node may not apply for and suspend a test node",
    )
    parent_code = {"regional": own_code, "industry": service_info.get("parent")}.get(role)
    parent = registry_record(registry.national, parent_code) if parent_code else None
    parent = parent or registry.regional_parent()
    precondition(parent, "the registry holds no active regional node to apply under")
    assert parent is not None
    industry = unused_industry(registry.spec, registry.nodes(), registry.rng)
    enrolled, response = registry.enrol(parent, industry)
    precondition(
        enrolled.node_code,
        f"the national node did not approve the test node: "
        f"{response.status_code} {response.text[:200]}",
    )
    return enrolled


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


# -- registration ------------------------------------------------------------------------


@pytest.mark.requirement("CPIN-FED-001")
def test_node_serves_under_its_active_registered_node_code(
    national: NodeClient, own_code: str, role: str, certifier: Certifier, contract: Contract
) -> None:
    response = national.get(f"{NODES}/{own_code}")
    assert response.status_code == 200, (
        f"the national node answers {response.status_code} for {own_code}, the NodeCode the "
        f"node serves under: it is not registered"
    )
    record = contract.expect_json(response, "schemas/node.json")
    found = (record["status"], record["role"], record["endpoint"].rstrip("/"))
    wanted = ("active", role, certifier.ics.base_url.rstrip("/"))
    assert found == wanted, (
        f"the registry holds {own_code} as (status, role, endpoint) {found}, the node is {wanted}"
    )


@pytest.mark.requirement("CPIN-FED-002")
def test_served_signing_keys_are_registered(
    national: NodeClient, node: NodeClient, own_code: str
) -> None:
    served = node.get("/v1/jwks", authenticated=False)
    expect_status(served, 200)
    record = registry_record(national, own_code)
    precondition(record, f"the national registry holds no {own_code}")
    assert record is not None
    public = ("kty", "crv", "x", "y")
    registered = [{k: key.get(k) for k in public} for key in record["jwks"]["keys"]]
    for key in body_of(served)["keys"]:
        assert {k: key.get(k) for k in public} in registered, (
            f"key {key.get('kid')!r} served at /v1/jwks is not among {own_code}'s keys in the "
            f"national registry"
        )


# -- peers -------------------------------------------------------------------------------


@pytest.mark.requirement("CPIN-FED-006")
def test_peers_are_parent_children_and_national_as_registered(
    node: NodeClient,
    national: NodeClient,
    own_code: str,
    role: str,
    service_info: dict[str, Any],
    contract: Contract,
) -> None:
    first = node.get(PEERS, params={"limit": 100})
    expect_status(first, 200)
    contract.expect_json(first, PEER_PAGE_SCHEMA)
    peers = {p["nodeCode"]: p for p in all_pages(node, PEERS)}
    national_record = registry_record(national, national_code(national))
    parent_code = service_info.get("parent")
    parent = registry_record(national, parent_code) if parent_code else None
    children = all_pages(national, NODES, {"parent": own_code})
    wanted = expected_peers(role, own_code, parent, national_record, children)
    for code, (relation, record) in wanted.items():
        peer = peers.get(code)
        if peer is None:
            assert recently_changed(record), f"listPeers leaves out {code}, its {relation}"
            continue
        shown = {k: peer.get(k) for k in ("relation", "role", "status")}
        expected = {"relation": relation, "role": record["role"], "status": record["status"]}
        if shown["status"] != expected["status"] and recently_changed(record):
            shown["status"] = expected["status"]  # within the 300 s of CPIN-FED-013
        assert shown == expected and _same_url(peer["endpoint"], record["endpoint"]), (
            f"listPeers shows {code} as {shown} at {peer['endpoint']}, the registry makes it "
            f"{expected} at {record['endpoint']}"
        )
    for code, peer in peers.items():
        if code not in wanted:
            assert peer["relation"] == "peer", (
                f"listPeers shows {code} as {peer['relation']!r}, but the registry makes it "
                f"neither the parent, a child nor the national node of {own_code}"
            )


def national_code(national: NodeClient) -> str:
    info = national.get("/v1/service-info", authenticated=False)
    expect_status(info, 200)
    return str(body_of(info)["nodeCode"])


# -- upward reports ----------------------------------------------------------------------


def _not_applied(node: NodeClient, identifier: str, resource: str, what: str) -> None:
    listed = all_pages(node, "/v1/identifiers", {"issuer": identifier[:9]})
    assert identifier not in {i.get("identifier") for i in listed}, (
        f"{what}: {identifier} was refused, yet the node lists it"
    )
    found = node.get(f"/v1/resources/{resource}")
    assert found.status_code == 404, (
        f"{what}: {resource} was refused, yet getResource answers {found.status_code}"
    )


def _push_both(
    node: NodeClient,
    reporter: str,
    identifier: str,
    resource: str,
    spec: Spec,
    label: str,
    token: str | None,
) -> tuple[Any, Any]:
    uscc = valid_uscc(random.Random(identifier), "91")
    report = {"reporter": reporter, "identifiers": [identifier_item(identifier, uscc)]}
    push = {"reporter": reporter, "upserts": [resource_record(spec, resource, label)]}
    return (
        node.post(IDENTIFIERS, json=report, token=token),
        node.post(CATALOGUE, json=push, token=token),
    )


@pytest.mark.requirement("CPIN-FED-004")
def test_reports_from_a_caller_that_is_no_child_are_refused(
    node: NodeClient,
    national: NodeClient,
    own_code: str,
    role: str,
    spec: Spec,
    contract: Contract,
    request: pytest.FixtureRequest,
) -> None:
    """A client of the node (not a node at all) and, at the national node, the harness's test
    node, whose parent is a regional node."""
    rng = random.Random()
    children = all_pages(national, NODES, {"parent": own_code})
    reporter = children[0]["nodeCode"] if children else own_code
    callers: list[tuple[str, str, str | None]] = [("a client token", reporter, None)]
    if role == "national":
        harness_node: TestNode = request.getfixturevalue("test_node")
        code = str(harness_node.node_code)
        callers.append(
            (f"test node {code}, child of a regional node", code, harness_node.assertion(own_code))
        )
    for what, code, token in callers:
        identifier, resource = resource_id(code, "NPU", rng), resource_id(code, "NPU", rng)
        answers = _push_both(node, code, identifier, resource, spec, "cpin-conformance", token)
        for operation, answer in zip(("reportIdentifiers", "pushCatalogue"), answers, strict=True):
            assert answer.status_code == 403, (
                f"{operation} from {what} (reporter {code}) answered {answer.status_code}, "
                f"the spec requires 403 forbidden: {answer.text[:200]}"
            )
            contract.expect_problem(answer, 403, "forbidden")
        _not_applied(node, identifier, resource, f"a report from {what}")


@pytest.mark.requirement("CPIN-FED-005")
def test_child_reports_outside_its_subtree_are_rejected_item_by_item(
    node: NodeClient,
    own_code: str,
    role: str,
    spec: Spec,
    contract: Contract,
    request: pytest.FixtureRequest,
) -> None:
    """The harness's test node, a child of the regional target, reports items under the
    target's own NodeCode: outside the child's subtree."""
    precondition(
        role == "regional",
        "only a regional target can have a child the harness "
        "signs for (the national node's children are regional)",
    )
    child: TestNode = request.getfixturevalue("test_node")
    rng = random.Random()
    identifier, resource = resource_id(own_code, "NPU", rng), resource_id(own_code, "NPU", rng)
    token = child.assertion(own_code)
    answers = _push_both(
        node, str(child.node_code), identifier, resource, spec, "cpin-conformance", token
    )
    for operation, answer, item in zip(
        ("reportIdentifiers", "pushCatalogue"), answers, (identifier, resource), strict=True
    ):
        expect_status(answer, 200)
        ack = contract.expect_json(answer, ACK_SCHEMA)
        refused = {r["item"]: r["problem"] for r in ack["rejected"]}
        assert item in refused, (
            f"{operation} from child {child.node_code} of an item under {own_code} answered "
            f"accepted {ack['accepted']} without listing {item} in rejected"
        )
        assert str(refused[item].get("type", "")).endswith("/foreign-prefix"), (
            f"{operation} refused {item} as {refused[item].get('type')}, not foreign-prefix"
        )
    _not_applied(node, identifier, resource, f"a report from child {child.node_code}")


# -- answers of other nodes --------------------------------------------------------------


@pytest.mark.requirement("CPIN-FED-007")
def test_authority_404_is_passed_on_with_its_problem_type(
    node: NodeClient,
    national: NodeClient,
    own_code: str,
    role: str,
    service_info: dict[str, Any],
    contract: Contract,
) -> None:
    """An identifier never minted under a reachable node other than the target."""
    if role == "national":
        regional = all_pages(national, NODES, {"parent": own_code, "status": "active"})
        reachable = [n for n in regional if n["endpoint"] != UNREACHABLE_ENDPOINT]
        precondition(reachable, "the national node has no active regional node to ask")
        authority = reachable[0]["nodeCode"]
    else:
        authority = str(service_info["parent"])
    identifier = resource_id(authority, "GPU", random.Random())
    answer = node.get(f"/v1/identifiers/{identifier}")
    contract.expect_problem(answer, 404, "unknown-identifier")


@pytest.mark.requirement("CPIN-FED-008")
def test_unreachable_issuing_node_answers_502(
    node: NodeClient, test_node: TestNode, contract: Contract
) -> None:
    """The harness's test node is registered with an endpoint that nothing serves."""
    identifier = resource_id(str(test_node.node_code), "GPU", random.Random())
    answer = node.get(f"/v1/identifiers/{identifier}")
    contract.expect_problem(answer, 502, "upstream-unavailable")


@pytest.mark.requirement("CPIN-ID-028")
def test_node_to_node_resolution_is_answered_from_the_local_registry_only(
    node: NodeClient,
    contract: Contract,
    certifier: Certifier,
    test_node: TestNode,
    own_code: str,
    provision: Provisioner,
) -> None:
    """An identifier another node issued, asked for with a node's token: the target answers
    404 from its own registry instead of proxying one hop further (no resolution loops)."""
    elsewhere = Elsewhere.from_ics(certifier)
    try:
        label = provision.label("one-hop resolution")
        minted = elsewhere.mint("GPU", unique_uscc(random.Random(certifier.seed)), label)
        precondition(minted, "no other node of the ICS lets its client register an identifier")
        assert minted is not None
        path = path_of(minted.identifier)
        token = test_node.assertion(own_code, {"federation", "ids:read"})
        answer = node.get(path, token=token)
        contract.expect_problem(answer, 404, "unknown-identifier")
    finally:
        elsewhere.close()
