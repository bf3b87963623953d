"""Security class, tokens coming in: missing, forged, of another algorithm, of another node,
lacking a scope; every protected operation of the role requires its scope."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.checks import Contract, body_of, expect_status
from conformance.http import NodeClient
from conformance.suite._security import (
    AUDIT_PATH,
    AUDIT_SCOPE,
    audit_events,
    expect_bearer_challenge,
    granted_scopes,
    new_request_id,
    protected_operations,
    public_key_bytes,
    send_protected,
    sign_eddsa,
    sign_hmac,
    tampered,
    token_parts,
    unsigned,
)
from spec import Spec


@pytest.fixture(scope="module")
def node_jwks(node: NodeClient) -> dict[str, Any]:
    response = node.get("/v1/jwks", authenticated=False)
    expect_status(response, 200)
    return dict(body_of(response))


@pytest.fixture(scope="module")
def audit_token_claims(node: NodeClient) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A genuine token able to read audit events, with its header and claims: forgeries copy
    them, so the only thing wrong with a forged token is what the test changed."""
    token = node.token([AUDIT_SCOPE])
    header, claims = token_parts(token)
    return token, header, claims


@pytest.mark.requirement("CPIN-SEC-007")
def test_missing_token_answers_401_with_a_bearer_challenge(
    node: NodeClient, spec: Spec, role: str, contract: Contract
) -> None:
    operations = protected_operations(spec, role)
    assert operations, f"the spec gives role {role} no protected operation"
    for operation in operations:
        response = send_protected(node, operation, new_request_id("anon"), authenticated=False)
        contract.expect_problem(response, 401)
        expect_bearer_challenge(response)


@pytest.mark.requirement("CPIN-SEC-004")
@pytest.mark.parametrize("algorithm", ["none", "HS256", "HS384", "HS512"])
def test_token_of_a_forbidden_algorithm_answers_401(
    node: NodeClient,
    node_jwks: dict[str, Any],
    audit_token_claims: tuple[str, dict[str, Any], dict[str, Any]],
    algorithm: str,
) -> None:
    _, header, claims = audit_token_claims
    kid = header.get("kid")
    forged = (
        unsigned(claims, kid)
        if algorithm == "none"
        else sign_hmac(claims, algorithm, public_key_bytes(node_jwks), kid)
    )
    response = node.get(AUDIT_PATH, token=forged)
    expect_status(response, 401)


@pytest.mark.requirement("CPIN-SEC-008")
def test_token_signed_by_another_key_answers_401_invalid_token(
    node: NodeClient, audit_token_claims: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    _, header, claims = audit_token_claims
    forged = sign_eddsa(claims, Ed25519PrivateKey.generate(), header.get("kid"))
    response = node.get(AUDIT_PATH, token=forged)
    expect_status(response, 401)
    expect_bearer_challenge(response, "invalid_token")


@pytest.mark.requirement("CPIN-SEC-008")
def test_token_with_altered_claims_answers_401_invalid_token(
    node: NodeClient, audit_token_claims: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    token, _, claims = audit_token_claims
    widened = {**claims, "scope": f"{claims['scope']} registry:admin".strip()}
    response = node.get(AUDIT_PATH, token=tampered(token, widened))
    expect_status(response, 401)
    expect_bearer_challenge(response, "invalid_token")


@pytest.mark.requirement("CPIN-SEC-011", "CPIN-SEC-023")
def test_missing_scope_answers_403_naming_the_scope(node: NodeClient, contract: Contract) -> None:
    others = sorted(granted_scopes(node) - {AUDIT_SCOPE})
    assert others, "the main client holds no scope but audit:read"
    allowed = node.get(AUDIT_PATH, scopes=[AUDIT_SCOPE])
    expect_status(allowed, 200)
    refused = node.get(AUDIT_PATH, scopes=others)
    contract.expect_problem(refused, 403, "insufficient-scope")
    challenge = expect_bearer_challenge(refused, "insufficient_scope")
    named = challenge.params.get("scope", "").split()
    assert AUDIT_SCOPE in named, (
        f"the insufficient_scope challenge names scope {named}, the operation needs {AUDIT_SCOPE}"
    )


@pytest.mark.requirement("CPIN-SEC-011")
def test_limited_client_calling_a_write_answers_403(
    limited_node: NodeClient, spec: Spec, role: str, contract: Contract
) -> None:
    assert limited_node.credentials is not None
    grant = limited_node.credentials.scopes or frozenset()
    writes = [op for op in protected_operations(spec, role)
              if op.method != "GET" and op.scope not in grant]  # fmt: skip
    assert writes, "the limited client's grant covers every write of the role"
    response = send_protected(limited_node, writes[0], new_request_id("limited"))
    contract.expect_problem(response, 403, "insufficient-scope")
    challenge = expect_bearer_challenge(response, "insufficient_scope")
    assert writes[0].scope in challenge.params.get("scope", "").split(), (
        f"the challenge does not name scope {writes[0].scope} ({writes[0].operation_id})"
    )


@pytest.mark.requirement("CPIN-SEC-012")
def test_every_protected_operation_requires_its_scope(
    node: NodeClient, spec: Spec, role: str
) -> None:
    """Each operation called with every scope of the client but its own: 403, and the node
    records no successful action for the request (it changed nothing)."""
    grant = granted_scopes(node)
    findings = []
    refused = []
    for operation in protected_operations(spec, role):
        others = sorted(grant - {operation.scope})
        if not others:
            continue
        request_id = new_request_id("scope")
        response = send_protected(node, operation, request_id, scopes=others)
        if response.status_code != 403:
            findings.append(f"{operation.operation_id} answered {response.status_code}")
        else:
            refused.append((operation, request_id))
    assert not findings, (
        "operations served a token lacking their scope (the spec requires 403): "
        + "; ".join(findings)
    )
    for operation, request_id in refused:
        if operation.method == "GET":
            continue
        done = [e for e in audit_events(node, request_id, wait_s=0)
                if e.get("outcome") == "success"]  # fmt: skip
        assert not done, (
            f"{operation.operation_id} was refused with 403 but the node audited a successful "
            f"{done[0].get('action')} for the request"
        )
