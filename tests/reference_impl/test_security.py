"""reference_impl/security.py: signing key, clients, tokens in and out, rate limiter."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import stat
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator

import spec
from reference_impl.node import Node, NodeConfig
from reference_impl.problems import Problem
from reference_impl.security import RateLimiter, _public_jwk

NATIONAL, REGIONAL, INDUSTRY = "N0000001U", "R4400001E", "I44C3801D"
NODES_DDL = (  # the columns of api/registry.py's table that these tests fill
    "CREATE TABLE IF NOT EXISTS nodes (node_code TEXT PRIMARY KEY, role TEXT NOT NULL,"
    " status TEXT NOT NULL, record TEXT NOT NULL)"
)

MakeNode = Callable[..., Node]


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[MakeNode]:
    nodes: list[Node] = []

    def make(role: str = "regional", code: str = REGIONAL, folder: str = "node") -> Node:
        config = NodeConfig(role=role, data_dir=tmp_path / folder, node_code=code)
        node = Node(config, spec.default())
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()


@pytest.fixture
def node(make_node: MakeNode) -> Node:
    return make_node()


def validator(shipped: spec.Spec, pointer: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": shipped.uri(pointer)}, registry=shipped.registry(), format_checker=None
    )


def claims_of(node: Node, token: str) -> dict[str, Any]:
    key = jwt.PyJWK(node.security.jwks()["keys"][0])
    decoded: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["EdDSA"], audience=node.node_code
    )
    return decoded


def forge(node: Node, key: Any, **changes: Any) -> str:
    """A token like the node's own, with claims changed (None removes one), signed by `key`."""
    now = int(node.now().timestamp())
    claims: dict[str, Any] = {
        "iss": node.config.base_url,
        "sub": "cpin-harness",
        "aud": node.node_code,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "scope": "catalogue:read",
    }
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": node.security.kid})


def authenticate(node: Node, header: str | None) -> Any:
    return asyncio.run(node.security.authenticate(header))


def refusal(node: Node, header: str | None) -> Problem:
    with pytest.raises(Problem) as caught:
        authenticate(node, header)
    return caught.value


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# -- signing key and JWKS ----------------------------------------------------------------


def test_key_is_created_private_and_kept_across_restarts(make_node: MakeNode) -> None:
    first = make_node()
    path = first.config.data_dir / "keys" / "signing-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token, _ = first.security.issue("cpin-harness", {"catalogue:read"})
    jwks = first.security.jwks()
    first.close()
    again = make_node()
    assert again.security.jwks() == jwks
    assert authenticate(again, f"Bearer {token}").subject == "cpin-harness"


def test_kid_is_the_rfc_7638_thumbprint() -> None:
    # RFC 8037 appendix A.1-A.3: the Ed25519 key and its JWK thumbprint
    d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
    key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(d + "="))
    jwk = _public_jwk(key)
    assert jwk["x"] == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert jwk["kid"] == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_jwks_is_public_only_and_matches_the_spec(node: Node, shipped: spec.Spec) -> None:
    jwks = node.security.jwks()
    validator(shipped, "schemas/jwks.json").validate(jwks)
    private = {"d", "p", "q", "dp", "dq", "qi", "k", "oth", "r", "t"}
    assert not private & set(jwks["keys"][0])
    assert jwks["keys"][0]["kid"] == node.security.kid


# -- tokens issued ---------------------------------------------------------------------


def test_issued_token_carries_the_claims_and_lifetime(node: Node, shipped: spec.Spec) -> None:
    token, expires_in = node.security.issue("cpin-harness", {"selection", "catalogue:read"})
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == node.security.kid
    claims = claims_of(node, token)
    validator(shipped, "schemas/token.json#/$defs/AccessTokenClaims").validate(claims)
    assert claims["iss"] == node.config.base_url
    assert claims["sub"] == "cpin-harness"
    assert claims["aud"] == REGIONAL
    assert claims["scope"] == "catalogue:read selection"
    assert expires_in == claims["exp"] - claims["iat"] <= 900


def test_every_token_has_its_own_jti(node: Node) -> None:
    tokens = [node.security.issue("cpin-harness", {"selection"})[0] for _ in range(50)]
    assert len({claims_of(node, token)["jti"] for token in tokens}) == 50


def test_own_token_gives_the_principal(node: Node) -> None:
    token, _ = node.security.issue("cpin-harness", {"ids:read", "audit:read"})
    principal = authenticate(node, f"Bearer {token}")
    assert principal.subject == "cpin-harness"
    assert principal.scopes == {"ids:read", "audit:read"}
    assert principal.node_code is None


def test_a_node_without_a_node_code_issues_nothing(make_node: MakeNode) -> None:
    unregistered = make_node(code=None)
    with pytest.raises(Problem) as caught:
        unregistered.security.issue("cpin-harness", {"selection"})
    assert caught.value.slug == "service-unavailable"


# -- tokens refused: 401 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer   ", "Basic Y2xpZW50OnNlY3JldA==", "Token abc"]
)
def test_missing_token_is_a_bare_bearer_challenge(node: Node, header: str | None) -> None:
    problem = refusal(node, header)
    assert problem.slug == "unauthorized"
    challenge = problem.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert "error=" not in challenge


def invalid_token(node: Node, token: str) -> Problem:
    problem = refusal(node, f"Bearer {token}")
    assert problem.slug == "unauthorized"
    assert problem.headers["WWW-Authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in problem.headers["WWW-Authenticate"]
    assert token not in problem.detail
    assert token not in json.dumps(problem.members)
    return problem


def test_garbage_is_an_invalid_token(node: Node) -> None:
    for token in ("abc", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30"):
        invalid_token(node, token)


def test_bad_signature(node: Node) -> None:
    invalid_token(node, forge(node, Ed25519PrivateKey.generate()))
    token, _ = node.security.issue("cpin-harness", {"selection"})
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 1
    invalid_token(node, f"{head}.{payload}.{b64url(bytes(raw))}")
    other = json.loads(base64.urlsafe_b64decode(payload + "==")) | {"scope": "registry:admin"}
    tampered = b64url(json.dumps(other).encode())
    invalid_token(node, f"{head}.{tampered}.{signature}")


def test_expiry_with_sixty_seconds_of_skew(node: Node) -> None:
    key = node.security._key
    now = int(node.now().timestamp())
    assert authenticate(node, f"Bearer {forge(node, key, exp=now - 30, iat=now - 930)}")
    problem = invalid_token(node, forge(node, key, exp=now - 61, iat=now - 961))
    assert "expired" in problem.headers["WWW-Authenticate"]
    invalid_token(node, forge(node, key, iat=now + 120, exp=now + 600))
    invalid_token(node, forge(node, key, nbf=now + 120))


def test_expiry_follows_the_node_clock(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = node.security.issue("cpin-harness", {"selection"})
    later = node.now() + timedelta(seconds=900 + 61)
    monkeypatch.setattr(node, "now", lambda: later)
    invalid_token(node, token)


def test_wrong_audience(node: Node) -> None:
    key = node.security._key
    problem = invalid_token(node, forge(node, key, aud=INDUSTRY))
    assert "audience" in problem.detail
    invalid_token(node, forge(node, key, aud=[INDUSTRY]))
    assert authenticate(node, f"Bearer {forge(node, key, aud=[REGIONAL])}")


def test_alg_none(node: Node) -> None:
    claims = claims_of(node, node.security.issue("cpin-harness", {"selection"})[0])
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": node.security.kid}).encode())
    body = b64url(json.dumps(claims).encode())
    invalid_token(node, f"{header}.{body}.")


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hmac_with_the_public_key_as_secret(node: Node, algorithm: str) -> None:
    claims = claims_of(node, node.security.issue("cpin-harness", {"selection"})[0])
    x = node.security.jwks()["keys"][0]["x"]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    header = {"alg": algorithm, "typ": "JWT", "kid": node.security.kid}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    for secret in (x.encode(), base64.urlsafe_b64decode(x + "=")):
        mac = hmac.new(secret, signing_input.encode(), digest[algorithm]).digest()
        invalid_token(node, f"{signing_input}.{b64url(mac)}")


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti", "scope"])
def test_missing_claim(node: Node, claim: str) -> None:
    invalid_token(node, forge(node, node.security._key, **{claim: None}))


@pytest.mark.parametrize(("claim", "value"), [("exp", "soon"), ("iat", 1.5), ("scope", ["a"])])
def test_claim_of_the_wrong_type(node: Node, claim: str, value: Any) -> None:
    invalid_token(node, forge(node, node.security._key, **{claim: value}))


def test_unknown_issuer(node: Node) -> None:
    key = node.security._key
    invalid_token(node, forge(node, key, iss="https://elsewhere.example/"))


# -- node-to-node assertions -------------------------------------------------------------


def register(national: Node, peer: Node, status: str = "active") -> None:
    record = {"nodeCode": peer.node_code, "status": status, "jwks": peer.security.jwks()}
    with national.store.transaction() as db:
        db.execute(NODES_DDL)
        db.execute(
            "INSERT OR REPLACE INTO nodes (node_code, role, status, record) VALUES (?, ?, ?, ?)",
            (peer.node_code, peer.config.role, status, json.dumps(record)),
        )


@pytest.fixture
def pair(make_node: MakeNode) -> tuple[Node, Node]:
    national = make_node("national", NATIONAL, "national")
    regional = make_node("regional", REGIONAL, "regional")
    register(national, regional)
    return national, regional


def test_node_assertion_claims(pair: tuple[Node, Node], shipped: spec.Spec) -> None:
    _, regional = pair
    token = regional.security.node_assertion(NATIONAL, {"ids:read"})
    key = jwt.PyJWK(regional.security.jwks()["keys"][0])
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=NATIONAL)
    validator(shipped, "schemas/token.json#/$defs/AccessTokenClaims").validate(claims)
    assert claims["iss"] == claims["sub"] == REGIONAL
    assert claims["scope"] == "federation ids:read"
    assert claims["exp"] - claims["iat"] <= 300


def test_assertion_verified_with_the_registry_keys(pair: tuple[Node, Node]) -> None:
    national, regional = pair
    token = regional.security.node_assertion(NATIONAL)
    principal = authenticate(national, f"Bearer {token}")
    assert principal.subject == principal.node_code == REGIONAL
    assert "federation" in principal.scopes


def test_assertion_of_a_suspended_node_is_403(pair: tuple[Node, Node]) -> None:
    national, regional = pair
    register(national, regional, status="suspended")
    problem = refusal(national, f"Bearer {regional.security.node_assertion(NATIONAL)}")
    assert problem.slug == "node-suspended"
    register(national, regional, status="revoked")
    invalid_token(national, regional.security.node_assertion(NATIONAL))


def test_assertion_refused_without_the_registry(
    pair: tuple[Node, Node], make_node: MakeNode
) -> None:
    national, regional = pair
    stranger = make_node("industry", INDUSTRY, "industry")
    invalid_token(national, stranger.security.node_assertion(NATIONAL))
    # a key the registry does not hold for that NodeCode
    impostor = make_node("regional", REGIONAL, "impostor")
    invalid_token(national, impostor.security.node_assertion(NATIONAL))
    # meant for another node
    invalid_token(national, regional.security.node_assertion(INDUSTRY))
    # a regional node knows no peers until the federation lookup is wired in
    invalid_token(regional, stranger.security.node_assertion(REGIONAL))


def test_assertion_needs_federation_scope_and_sub(pair: tuple[Node, Node]) -> None:
    national, regional = pair
    key = regional.security._key
    base = {"iss": REGIONAL, "aud": NATIONAL}
    assert authenticate(
        national, f"Bearer {forge(regional, key, **base, sub=REGIONAL, scope='federation')}"
    )
    invalid_token(national, forge(regional, key, **base, sub=REGIONAL, scope="ids:read"))
    invalid_token(national, forge(regional, key, **base, sub="someone", scope="federation"))


def test_injected_lookup(make_node: MakeNode) -> None:
    regional = make_node("regional", REGIONAL, "regional")
    industry = make_node("industry", INDUSTRY, "industry")
    asked: list[str] = []

    async def lookup(node_code: str) -> dict[str, Any] | None:
        asked.append(node_code)
        return {"status": "active", "jwks": industry.security.jwks()}

    regional.security.lookup_node = lookup
    principal = authenticate(regional, f"Bearer {industry.security.node_assertion(REGIONAL)}")
    assert principal.node_code == INDUSTRY
    assert asked == [INDUSTRY]


# -- clients -----------------------------------------------------------------------------


def test_clients_are_verified_and_secrets_kept_hashed(node: Node) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    node.security.add_client("cpin-harness", secret, {"catalogue:read", "selection"})
    verify = node.security.verify_client
    assert asyncio.run(verify("cpin-harness", secret)) == frozenset({"catalogue:read", "selection"})
    assert asyncio.run(verify("cpin-harness", secret + "x")) is None
    assert asyncio.run(verify("nobody", secret)) is None
    stored = b"".join(path.read_bytes() for path in node.config.data_dir.rglob("*.sqlite3*"))
    assert secret.encode() not in stored


def test_re_adding_a_client_replaces_its_secret(node: Node) -> None:
    node.security.add_client("portal", "old-secret", {"selection"})
    node.security.add_client("portal", "new-secret", {"tasks:read"})
    assert asyncio.run(node.security.verify_client("portal", "old-secret")) is None
    assert asyncio.run(node.security.verify_client("portal", "new-secret")) == frozenset(
        {"tasks:read"}
    )


@pytest.mark.parametrize(
    ("client_id", "scopes"),
    [("cpin harness", {"selection"}), ("ok", {"made:up"}), ("ok", set()), ("", {"selection"})],
)
def test_add_client_refuses_bad_ids_and_scopes(
    node: Node, client_id: str, scopes: set[str]
) -> None:
    with pytest.raises(ValueError):
        node.security.add_client(client_id, "secret", scopes)


# -- rate limiter ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_admits_the_rate_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock)
    for offset in (0, 10, 20):
        clock.now = 1000 + offset
        assert limiter.retry_after("a") is None
    clock.now = 1030.2
    assert limiter.retry_after("a") == 30  # the request of t=0 leaves at t=60
    assert limiter.retry_after("b") is None  # per subject
    clock.now = 1060.0
    assert limiter.retry_after("a") is None  # waited as told: admitted (CPIN-SEC-027)
    assert limiter.retry_after("a") == 10


def test_limiter_never_admits_more_than_the_rate_in_any_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock)
    admitted = []
    for step in range(600):
        clock.now = 1000 + step * 0.5
        if limiter.retry_after("a") is None:
            admitted.append(clock.now)
    assert all(
        later - earlier >= 60 for earlier, later in zip(admitted, admitted[10:], strict=False)
    )
    assert len(admitted) >= 45


def test_limiter_retry_after_is_at_least_one_second() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock)
    assert limiter.retry_after("a") is None
    clock.now += 59.99
    assert limiter.retry_after("a") == 1


def test_limiter_forgets_idle_subjects() -> None:
    clock = Clock()
    limiter = RateLimiter(5, clock)
    for subject in ("a", "b", "c"):
        limiter.retry_after(subject)
    clock.now += 120
    limiter.retry_after("d")
    assert set(limiter._admitted) == {"d"}


def test_node_limiter_uses_the_configured_rate(make_node: MakeNode, tmp_path: Path) -> None:
    config = NodeConfig(
        role="regional", data_dir=tmp_path / "limited", node_code=REGIONAL, rate_limit_per_minute=2
    )
    limited = Node(config, spec.default())
    try:
        assert [limited.security.limiter.retry_after("x") for _ in range(2)] == [None, None]
        wait = limited.security.limiter.retry_after("x")
        assert wait is not None and 1 <= wait <= 60
    finally:
        limited.close()
