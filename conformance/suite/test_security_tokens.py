"""Security class, the token endpoint and the tokens it issues: the exchange, its errors, the
JWT (algorithm, key, claims, lifetime, scopes, uniqueness) and the published key set."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from conformance.checks import Contract, body_of, expect_status
from conformance.http import NodeClient
from conformance.ics import ClientCredentials, Ics, Secret
from conformance.suite._security import (
    ALLOWED_ALGORITHMS,
    PRIVATE_MEMBERS,
    granted_scopes,
    token_parts,
    verified_claims,
)
from spec import Spec

LIFETIME_MUST_S = 3600
LIFETIME_SHOULD_S = 900
TOKEN_ERROR = "schemas/token.json#/$defs/TokenError"


@pytest.fixture(scope="module")
def jwks(node: NodeClient) -> dict[str, Any]:
    """The key set as served (judged by the SEC-006 test, used by the others)."""
    response = node.get("/v1/jwks", authenticated=False)
    expect_status(response, 200)
    return dict(body_of(response))


@pytest.fixture(scope="module")
def issued(node: NodeClient) -> dict[str, Any]:
    """A fresh token of the main client, asked for with no scope."""
    response = node.token_response()
    expect_status(response, 200)
    return dict(body_of(response))


@pytest.mark.requirement("CPIN-SEC-001")
def test_client_credentials_grant_issues_a_bearer_token(
    node: NodeClient, contract: Contract
) -> None:
    response = node.token_response()
    expect_status(response, 200)
    cache = response.headers.get("cache-control", "")
    assert "no-store" in [d.strip().lower() for d in cache.split(",")], (
        f"the token response has Cache-Control {cache or '(none)'!r}, the spec requires no-store"
    )
    body = contract.expect_json(response, "schemas/token.json")
    assert body["token_type"] == "Bearer", f"token_type {body['token_type']!r}, not Bearer"


def _expect_token_error(
    contract: Contract, response: httpx.Response, status: int, error: str
) -> None:
    expect_status(response, status)
    contract.expect_problem(response, status)
    body = body_of(response)
    contract.expect_valid(body, TOKEN_ERROR, f"the {status} token error")
    assert body.get("error") == error, (
        f"the token endpoint answered error {body.get('error')!r}, the spec requires {error!r}"
    )


@pytest.mark.requirement("CPIN-SEC-002")
def test_wrong_secret_or_unknown_client_answers_invalid_client(
    node: NodeClient, contract: Contract
) -> None:
    assert node.credentials is not None
    wrong = ClientCredentials(node.credentials.client_id, Secret(secrets.token_urlsafe(24)))
    _expect_token_error(contract, node.token_response(credentials=wrong), 401, "invalid_client")
    unknown = ClientCredentials(f"cpin-unknown-{secrets.token_hex(6)}",
                                Secret(secrets.token_urlsafe(24)))  # fmt: skip
    _expect_token_error(contract, node.token_response(credentials=unknown), 401, "invalid_client")


@pytest.mark.requirement("CPIN-SEC-002")
def test_other_grant_type_answers_unsupported_grant_type(
    node: NodeClient, contract: Contract
) -> None:
    response = node.token_response(form={"grant_type": "password"})
    _expect_token_error(contract, response, 400, "unsupported_grant_type")


@pytest.mark.requirement("CPIN-SEC-002", "CPIN-SEC-015")
def test_scope_not_granted_to_the_client_answers_invalid_scope(
    limited_node: NodeClient, contract: Contract, spec: Spec
) -> None:
    assert limited_node.credentials is not None
    grant = limited_node.credentials.scopes or frozenset()
    ungranted = sorted(spec.scopes - grant)
    assert ungranted, "the ICS limitedClient holds every scope of the spec"
    response = limited_node.token_response(scopes=[ungranted[0]])
    if response.status_code == 200:
        scope = body_of(response).get("scope")
        raise AssertionError(
            f"the limited client asked for ungranted scope {ungranted[0]} and got a token "
            f"(scope {scope!r}); the spec requires 400 invalid_scope"
        )
    _expect_token_error(contract, response, 400, "invalid_scope")


@pytest.mark.requirement("CPIN-SEC-003")
def test_access_token_is_an_asymmetrically_signed_jwt_of_the_key_set(
    issued: dict[str, Any], jwks: dict[str, Any]
) -> None:
    token = str(issued["access_token"])
    assert token.count(".") == 2, "the access token is not a JWS in compact serialisation"
    header, _ = token_parts(token)
    assert header.get("alg") in ALLOWED_ALGORITHMS, (
        f"token alg {header.get('alg')!r}, the spec allows {' or '.join(ALLOWED_ALGORITHMS)}"
    )
    verified_claims(token, jwks)


@pytest.mark.requirement("CPIN-SEC-005")
def test_access_token_carries_the_required_claims(
    issued: dict[str, Any], jwks: dict[str, Any], node: NodeClient, ics: Ics, contract: Contract
) -> None:
    claims = verified_claims(str(issued["access_token"]), jwks)
    contract.expect_valid(claims, "schemas/token.json#/$defs/AccessTokenClaims", "the claims")
    assert str(claims["iss"]).rstrip("/") == ics.base_url.rstrip("/"), (
        f"iss {claims['iss']!r} is not the node's base URL {ics.base_url!r}"
    )
    assert node.credentials is not None
    assert claims["sub"] == node.credentials.client_id, (
        f"sub {claims['sub']!r} is not the client id {node.credentials.client_id!r}"
    )
    audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert audience == [ics.node_code], f"aud {claims['aud']!r} is not {ics.node_code!r}"
    assert set(str(claims["scope"]).split()) == set(str(issued["scope"]).split()), (
        f"the scope claim {claims['scope']!r} differs from the granted scope {issued['scope']!r}"
    )


@pytest.mark.requirement("CPIN-SEC-013")
def test_token_lifetime_is_at_most_an_hour(issued: dict[str, Any], jwks: dict[str, Any]) -> None:
    claims = verified_claims(str(issued["access_token"]), jwks)
    assert issued["expires_in"] <= LIFETIME_MUST_S, (
        f"expires_in {issued['expires_in']} s exceeds {LIFETIME_MUST_S} s"
    )
    assert claims["exp"] - claims["iat"] <= LIFETIME_MUST_S, (
        f"exp - iat = {claims['exp'] - claims['iat']} s exceeds {LIFETIME_MUST_S} s"
    )


@pytest.mark.requirement("CPIN-SEC-014")
def test_token_lifetime_is_at_most_fifteen_minutes(
    issued: dict[str, Any], jwks: dict[str, Any]
) -> None:
    claims = verified_claims(str(issued["access_token"]), jwks)
    lifetime = max(int(issued["expires_in"]), int(claims["exp"]) - int(claims["iat"]))
    assert lifetime <= LIFETIME_SHOULD_S, (
        f"token lifetime {lifetime} s exceeds the recommended {LIFETIME_SHOULD_S} s"
    )


@pytest.mark.requirement("CPIN-SEC-015")
def test_granted_scope_stays_within_the_grant_and_the_request(
    node: NodeClient, limited_node: NodeClient, spec: Spec
) -> None:
    everything = granted_scopes(node)
    assert everything <= spec.scopes, (
        f"the node granted scopes the spec does not define: {sorted(everything - spec.scopes)}"
    )
    assert limited_node.credentials is not None
    grant = limited_node.credentials.scopes or frozenset()
    limited = granted_scopes(limited_node)
    assert limited <= grant, (
        f"the limited client got scopes outside its grant: {sorted(limited - grant)}"
    )
    asked = sorted(everything)[:1]
    response = node.token_response(scopes=asked)
    expect_status(response, 200)
    got = set(str(body_of(response).get("scope", "")).split())
    assert got <= set(asked), f"asked for scope {asked}, the node granted {sorted(got)}"


@pytest.mark.requirement("CPIN-SEC-016")
def test_every_token_has_its_own_jti(node: NodeClient, jwks: dict[str, Any]) -> None:
    identifiers = []
    for _ in range(3):
        response = node.token_response()
        expect_status(response, 200)
        identifiers.append(verified_claims(str(body_of(response)["access_token"]), jwks)["jti"])
    assert len(set(identifiers)) == len(identifiers), f"tokens share a jti: {identifiers}"


@pytest.mark.requirement("CPIN-SEC-006")
def test_key_set_is_public_and_names_the_signing_key(node: NodeClient, contract: Contract) -> None:
    response = node.get("/v1/jwks", authenticated=False)
    expect_status(response, 200)
    jwks = body_of(response)
    for key in jwks.get("keys", []):
        leaked = [member for member in PRIVATE_MEMBERS if member in key]
        assert not leaked, f"JWKS key {key.get('kid')!r} carries private members {leaked}"
    contract.expect_json(response, "schemas/jwks.json")
    kids = {key.get("kid") for key in jwks["keys"]}
    for scopes in (None, [sorted(granted_scopes(node))[0]]):
        response = node.token_response(scopes=scopes)
        expect_status(response, 200)
        header, _ = token_parts(str(body_of(response)["access_token"]))
        assert header.get("kid") in kids, (
            f"a token's kid {header.get('kid')!r} names no key of the JWKS {sorted(map(str, kids))}"
        )


@pytest.mark.requirement("CPIN-SEC-018")
def test_token_exchanges_never_echo_secrets(node: NodeClient) -> None:
    """The client secret appears in no answer of the token endpoint; a token only in the
    `access_token` member of a success (and in no error: a refused bearer is not repeated)."""
    assert node.credentials is not None
    secret = str(node.credentials.client_secret)
    success = node.token_response()
    expect_status(success, 200)
    body = dict(body_of(success))
    token = str(body.pop("access_token", ""))
    wrong_secret = secrets.token_urlsafe(24)
    refused = node.token_response(
        credentials=ClientCredentials(node.credentials.client_id, Secret(wrong_secret))
    )
    rejected_bearer = node.get("/v1/audit-events", token=token + "x")
    texts = {
        "the token response (other than access_token)": str(body),
        "the invalid_client error": refused.text,
        "the 401 to a broken bearer token": rejected_bearer.text,
    }
    for where, text in texts.items():
        for label, value in (("the client secret", secret), ("the secret sent", wrong_secret),
                             ("the access token", token)):  # fmt: skip
            assert not (value and value in text), f"{where} contains {label}"
