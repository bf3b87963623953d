"""Security class, node-to-node tokens: the suite has the national node register a node whose
key it holds, then signs that node's tokens with claims a test chooses (expired, from the
future, for another audience, without the federation scope, after a suspension). This is the
only black-box way to present a correctly signed token whose claims are wrong, so expiry and
clock skew are tested here. It needs a client of the national registry (registry:apply,
registry:read, registry:admin): the target itself when it is the national node, its upstream
when that is the national node; otherwise the tests skip."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.ics import ClientCredentials, Ics, IcsError, client_credentials
from conformance.session import Certifier
from conformance.suite._security import (
    RegisteredNode,
    expect_bearer_challenge,
    industry_application,
    node_clock_offset,
    public_jwk,
    random_uscc,
    token_parts,
)
from spec import Spec

PEERS_PATH = "/v1/federation/peers"
SKEW_S = 60  # CPIN-SEC-009 / CPIN-SEC-017
MARGIN_S = 30


def _registry_access(ics: Ics, spec: Spec) -> tuple[str, ClientCredentials | None] | None:
    """(base URL, client) of the national registry as the ICS gives it, or None."""
    if ics.role == "national":
        return ics.base_url, None
    national = next(e["x-node-type"] for e in spec.codelist("node-role")
                    if e["const"] == "national")  # fmt: skip
    federation = ics.federation
    try:
        if str(federation.get("upstreamNodeCode", "")).startswith(national):
            credentials = ics.upstream_credentials()
            if credentials is not None:
                return str(federation["upstreamUrl"]), credentials
        for peer in federation.get("peers", []):
            if peer["role"] == "national" and "credentials" in peer:
                return str(peer["baseUrl"]), client_credentials(peer["credentials"], "peer")
    except IcsError as exc:
        pytest.skip(f"precondition failed: {exc}")
    return None


@pytest.fixture(scope="module")
def registry(certifier: Certifier, node: NodeClient, spec: Spec) -> Iterator[NodeClient]:
    """A client of the national registry: the target itself, its upstream or a declared peer."""
    access = _registry_access(certifier.ics, spec)
    precondition(access is not None,
                 "no client of the national registry: the target is not the national node, and "
                 "the ICS names neither a national upstream nor a national peer with "
                 "credentials")  # fmt: skip
    assert access is not None
    url, credentials = access
    if credentials is None:
        yield node
        return
    client = NodeClient(url, credentials, certifier.recorder,
                        timeout=float(certifier.budget["requestTimeoutS"]))  # fmt: skip
    yield client
    client.close()


@pytest.fixture(scope="module")
def placement(registry: NodeClient, service_info: dict[str, Any], role: str) -> tuple[str, str]:
    """(province, parent NodeCode) for an industry node: under the target when it is a
    regional node, else under an active regional node the registry lists."""
    if role == "regional":
        return str(service_info["province"]), str(service_info["nodeCode"])
    response = registry.get("/v1/nodes", params={"role": "regional", "status": "active"})
    precondition(response.status_code == 200,
                 f"the registry did not list nodes: {response.status_code}")  # fmt: skip
    regional = [n for n in body_of(response).get("items", []) if n.get("status") == "active"]
    precondition(regional, "the registry lists no active regional node to place a test node")
    return str(regional[0]["province"]), str(regional[0]["nodeCode"])


def _register(registry: NodeClient, spec: Spec, placement: tuple[str, str], label: str) -> Any:
    key = Ed25519PrivateKey.generate()
    kid = f"cpin-conformance-{secrets.token_hex(4)}"
    province, parent = placement
    body = industry_application(spec, label, province, parent, public_jwk(key, kid),
                                random_uscc(province))  # fmt: skip
    response = registry.post("/v1/node-applications", json=body)
    precondition(response.status_code == 201,
                 f"the national node did not accept a test node's application: "
                 f"{response.status_code} {response.text[:200]}")  # fmt: skip
    record = body_of(response)
    precondition(record.get("status") == "approved" and record.get("nodeCode"),
                 f"the test node's application was not approved at once: {record.get('status')}"
                 f" {record.get('violations', '')}")  # fmt: skip
    return RegisteredNode(str(record["nodeCode"]), key, kid)


def _suspend(registry: NodeClient, code: str) -> int:
    reason = {"zh": "符合性测试结束。", "en": "End of a conformance test."}
    response = registry.put(f"/v1/nodes/{code}/suspension", json={"reason": reason})
    return response.status_code


@pytest.fixture(scope="module")
def own_node(
    registry: NodeClient, spec: Spec, placement: tuple[str, str], certifier: Certifier
) -> Iterator[RegisteredNode]:
    registered = _register(registry, spec, placement, "tokens")
    yield registered
    status = _suspend(registry, registered.code)
    if status >= 300:
        certifier.log(f"test node {registered.code} could not be suspended: {status}")


@pytest.fixture(scope="module")
def node_now(node: NodeClient) -> Any:
    """The target's clock, as a function (tokens are judged by it, not by ours)."""
    offset = node_clock_offset(node)
    return lambda: time.time() + offset


@pytest.mark.requirement("CPIN-SEC-028")
def test_token_of_a_registered_node_is_accepted(
    node: NodeClient, own_node: RegisteredNode, ics: Ics, node_now: Any, contract: Contract
) -> None:
    response = node.get(PEERS_PATH, token=own_node.token(ics.node_code, node_now()))
    expect_status(response, 200)
    contract.expect_json(response, "schemas/federation.json#/$defs/PeerPage")


@pytest.mark.requirement("CPIN-SEC-028", "CPIN-SEC-008")
def test_node_token_not_signed_by_the_registered_key_answers_401(
    node: NodeClient, service_info: dict[str, Any], ics: Ics, node_now: Any
) -> None:
    """A token in the name of a registered node (the target's parent, or the target itself
    for the national node), signed by a key that node never registered."""
    code = str(service_info.get("parent") or ics.node_code)
    impostor = RegisteredNode(code, Ed25519PrivateKey.generate(), "cpin-conformance-impostor")
    response = node.get(PEERS_PATH, token=impostor.token(ics.node_code, node_now()))
    expect_status(response, 401)
    expect_bearer_challenge(response, "invalid_token")


@pytest.mark.requirement("CPIN-SEC-028")
def test_node_token_without_the_federation_scope_answers_401(
    node: NodeClient, own_node: RegisteredNode, ics: Ics, node_now: Any
) -> None:
    token = own_node.token(ics.node_code, node_now(), scope="catalogue:read")
    response = node.get("/v1/resources", token=token)
    expect_status(response, 401)


@pytest.mark.requirement("CPIN-SEC-028")
def test_node_token_for_another_audience_answers_401(
    node: NodeClient, own_node: RegisteredNode, node_now: Any
) -> None:
    response = node.get(PEERS_PATH, token=own_node.token(own_node.code, node_now()))
    expect_status(response, 401)
    expect_bearer_challenge(response, "invalid_token")


@pytest.mark.requirement("CPIN-SEC-010")
def test_token_for_another_audience_answers_401(
    node: NodeClient, certifier: Certifier, spec: Spec, node_now: Any,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    """Correctly signed tokens whose `aud` names another node: one the upstream node issued
    to the suite's client there, and one of the suite's registered node; whichever the ICS
    makes possible, at least one."""
    ics = certifier.ics
    tokens = {}
    if ics.federation.get("upstreamUrl") and ics.federation.get("upstreamCredentials"):
        tokens["a token the upstream node issued"] = request.getfixturevalue("upstream").token()
    if _registry_access(ics, spec) is not None:
        own: RegisteredNode = request.getfixturevalue("own_node")
        tokens["a node token for another NodeCode"] = own.token(own.code, node_now())
    precondition(tokens, "the ICS names neither an upstream client nor a registry client")
    for what, token in tokens.items():
        _, claims = token_parts(token)
        audience = claims.get("aud")
        assert ics.node_code not in (audience if isinstance(audience, list) else [audience]), (
            f"{what} has aud {audience!r}, which names this node"
        )
        response = node.get(PEERS_PATH, token=token)
        assert response.status_code == 401, f"{what} was answered {response.status_code}, not 401"
        expect_bearer_challenge(response, "invalid_token")


@pytest.mark.requirement("CPIN-SEC-009")
def test_expired_token_answers_401(
    node: NodeClient, own_node: RegisteredNode, ics: Ics, node_now: Any
) -> None:
    now = node_now()
    expired = SKEW_S + MARGIN_S
    token = own_node.token(ics.node_code, now - 300 - expired, exp=int(now) - expired)
    response = node.get(PEERS_PATH, token=token)
    expect_status(response, 401)
    expect_bearer_challenge(response, "invalid_token")


@pytest.mark.requirement("CPIN-SEC-017")
def test_clock_skew_tolerance_is_sixty_seconds(
    node: NodeClient, own_node: RegisteredNode, ics: Ics, node_now: Any
) -> None:
    now = node_now()
    future = own_node.token(ics.node_code, now + SKEW_S + MARGIN_S)
    response = node.get(PEERS_PATH, token=future)
    assert response.status_code == 401, (
        f"a token issued {SKEW_S + MARGIN_S} s in the future was answered "
        f"{response.status_code}, not 401"
    )
    just_expired = own_node.token(ics.node_code, now - 300, exp=int(now) - SKEW_S + MARGIN_S)
    response = node.get(PEERS_PATH, token=just_expired)
    assert response.status_code == 200, (
        f"a token expired {SKEW_S - MARGIN_S} s ago was answered {response.status_code}; "
        f"a {SKEW_S} s clock skew should be tolerated"
    )


@pytest.mark.requirement("CPIN-SEC-029")
def test_calls_from_a_suspended_node_answer_403(
    node: NodeClient,
    registry: NodeClient,
    spec: Spec,
    placement: tuple[str, str],
    ics: Ics,
    node_now: Any,
    contract: Contract,
) -> None:
    """A node registered and suspended before it ever called the target: no cache of the
    target can hold it as active, so the refusal is due at once."""
    suspended = _register(registry, spec, placement, "suspended")
    status = _suspend(registry, suspended.code)
    precondition(status < 300, f"the registry did not suspend the test node: {status}")
    response = node.get(PEERS_PATH, token=suspended.token(ics.node_code, node_now()))
    contract.expect_problem(response, 403, "node-suspended")
