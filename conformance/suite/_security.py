"""Helpers of the security tests: JWTs read and forged, challenges parsed, requests built from
the spec's operations, audit events looked up by request id, a bounded rate-limit burst."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.checks import body_of, expect_status
from conformance.http import NodeClient
from spec import Spec

AUDIT_PATH = "/v1/audit-events"
AUDIT_SCOPE = "audit:read"
ALLOWED_ALGORITHMS = ("EdDSA", "ES256")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")
AUDIT_WAIT_S = 5.0  # CPIN-SEC-020: an event is listed within 5 s of the response
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified; a failure if it is not one."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AssertionError(f"the access token is not a compact-serialised JWT: {exc}") from None
    return dict(header), dict(claims)


def verified_claims(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The claims of `token` once its signature verifies with the key its `kid` names in
    `jwks` (expiry and audience are judged by the callers, against the spec's figures)."""
    header, _ = token_parts(token)
    kid = header.get("kid")
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    assert keys, f"the token's kid {kid!r} names no key of the node's JWKS"
    public = {k: v for k, v in keys[0].items() if k not in PRIVATE_MEMBERS}
    try:
        key = jwt.PyJWK(public)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[str(header.get("alg"))],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        raise AssertionError(
            f"the token does not verify with JWKS key {kid!r}: {type(exc).__name__}: {exc}"
        ) from None
    return dict(claims)


def sign_eddsa(claims: dict[str, Any], key: Ed25519PrivateKey, kid: str | None) -> str:
    headers = {"typ": "at+jwt", **({"kid": kid} if kid is not None else {})}
    return jwt.encode(claims, key, algorithm="EdDSA", headers=headers)


def sign_hmac(claims: dict[str, Any], algorithm: str, secret: bytes, kid: str | None) -> str:
    """An HMAC token keyed with `secret` (the node's public key: the classic confusion attack)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    header = {"alg": algorithm, "typ": "JWT", **({"kid": kid} if kid is not None else {})}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), digest[algorithm]).digest()
    return f"{signing_input}.{b64url(mac)}"


def unsigned(claims: dict[str, Any], kid: str | None) -> str:
    header = {"alg": "none", "typ": "JWT", **({"kid": kid} if kid is not None else {})}
    return f"{b64url_json(header)}.{b64url_json(claims)}."


def tampered(token: str, claims: dict[str, Any]) -> str:
    """The node's own signature over other claims."""
    head, _, signature = token.split(".")
    return f"{head}.{b64url_json(claims)}.{signature}"


def public_key_bytes(jwks: dict[str, Any]) -> bytes:
    key = next((k for k in jwks.get("keys", []) if "x" in k), None)
    assert key is not None, "the node's JWKS holds no key with an `x` member"
    text = str(key["x"])
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- WWW-Authenticate -------------------------------------------------------------------------

_PARAM = re.compile(r'([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]+)')


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def challenge(response: httpx.Response) -> Challenge | None:
    """The first challenge of WWW-Authenticate (scheme and auth-params), or None."""
    value = response.headers.get("www-authenticate")
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2).strip('"') for m in _PARAM.finditer(rest)}
    return Challenge(scheme, params)


def expect_bearer_challenge(response: httpx.Response, error: str | None = None) -> Challenge:
    found = challenge(response)
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    assert found is not None, f"{where} carries no WWW-Authenticate header"
    assert found.scheme.lower() == "bearer", (
        f"{where}: WWW-Authenticate uses scheme {found.scheme!r}, the spec requires Bearer"
    )
    if error is not None:
        assert found.params.get("error") == error, (
            f"{where}: WWW-Authenticate error={found.params.get('error')!r}, "
            f'the spec requires error="{error}"'
        )
    return found


# -- the spec's protected operations ---------------------------------------------------------


@dataclass(frozen=True)
class Protected:
    """A protected operation of the role, as a request the spec deems well-formed."""

    operation_id: str
    method: str
    path: str
    scope: str
    headers: dict[str, str]
    body: bytes | None
    query: frozenset[str]  # names of its query parameters


def protected_operations(spec: Spec, role: str) -> list[Protected]:
    """Every operation the role serves that needs an OAuth2 scope, with its documented
    example path parameters, required headers and body, so that a node which validates the
    request before its token still reaches the token check."""
    found = []
    for path, method, operation in spec.operations():
        security = operation.get("security") or []
        scopes = [s for entry in security for s in entry.get("oauth2", [])]
        if role not in operation.get("x-roles", []) or not scopes:
            continue
        headers: dict[str, str] = {}
        filled = path
        for parameter in _parameters(spec, operation):
            if not parameter.get("required"):
                continue
            value = _example(parameter)
            if parameter["in"] == "path":
                filled = filled.replace("{" + parameter["name"] + "}", str(value))
            elif parameter["in"] == "header":
                headers[parameter["name"]] = str(value)
        body = None
        content = operation.get("requestBody", {}).get("content", {})
        for media, entry in content.items():
            examples: list[dict[str, Any]] = list(entry.get("examples", {}).values())
            body = json.dumps(examples[0]["value"] if examples else {}).encode()
            headers["Content-Type"] = media
            break
        query = frozenset(p["name"] for p in _parameters(spec, operation) if p["in"] == "query")
        found.append(
            Protected(operation["operationId"], method, filled, scopes[0], headers, body, query)
        )
    return found


def _parameters(spec: Spec, operation: dict[str, Any]) -> list[dict[str, Any]]:
    shared = spec.openapi["components"]["parameters"]
    return [
        shared[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
        for p in operation.get("parameters", [])
    ]


def _example(parameter: dict[str, Any]) -> Any:
    if "example" in parameter:
        return parameter["example"]
    examples = parameter.get("examples", {})
    return next(iter(examples.values()))["value"]


def send_protected(
    client: NodeClient, operation: Protected, request_id: str, **kwargs: Any
) -> httpx.Response:
    headers = {**operation.headers, "X-Request-Id": request_id}
    return client.request(
        operation.method, operation.path, headers=headers, content=operation.body, **kwargs
    )


# -- tokens and grants -----------------------------------------------------------------------


def granted_scopes(client: NodeClient) -> frozenset[str]:
    """The scopes the node grants the client when it asks for none."""
    response = client.token_response()
    expect_status(response, 200)
    return frozenset(str(body_of(response).get("scope", "")).split())


def new_request_id(label: str) -> str:
    return f"cpin-sec-{label}-{uuid.uuid4()}"


# -- audit events ----------------------------------------------------------------------------


def audit_events(
    node: NodeClient, request_id: str, *, wait_s: float = AUDIT_WAIT_S
) -> list[dict[str, Any]]:
    """The events the node lists for `request_id`, polled until one shows or `wait_s` passes."""
    deadline = time.monotonic() + wait_s
    while True:
        response = node.get(AUDIT_PATH, params={"requestId": request_id, "limit": 100},
                            scopes=[AUDIT_SCOPE])  # fmt: skip
        expect_status(response, 200)
        items = [e for e in body_of(response).get("items", []) if isinstance(e, dict)]
        events = [e for e in items if e.get("requestId") == request_id]
        if events or time.monotonic() >= deadline:
            return events
        time.sleep(0.2)


# -- rate limit burst ------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    sent: int
    seconds: float
    first_refusal: int | None  # index of the first 429, if any


def burst(
    client: NodeClient,
    path: str,
    token: str,
    *,
    limit: int,
    deadline_s: float,
    timeout_s: float,
    workers: int = 16,
) -> Burst:
    """Up to `limit` requests as fast as a few connections allow, stopping at the first 429
    or at the deadline. Not recorded one by one (thousands of exchanges would drown the
    evidence); the caller sends and records the decisive requests itself."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Event, Lock

    refused = Event()
    counter = {"sent": 0, "first": -1}
    lock = Lock()
    started = time.monotonic()
    stop_at = started + deadline_s
    url = client.url(path)

    def work() -> None:
        with httpx.Client(timeout=timeout_s) as http:
            while not refused.is_set() and time.monotonic() < stop_at:
                with lock:
                    if counter["sent"] >= limit:
                        return
                    counter["sent"] += 1
                    index = counter["sent"]
                answer = http.get(url, headers={"Authorization": f"Bearer {token}"})
                if answer.status_code == 429:
                    with lock:
                        if counter["first"] < 0:
                            counter["first"] = index
                    refused.set()

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    first = counter["first"] if counter["first"] >= 0 else None
    return Burst(counter["sent"], time.monotonic() - started, first)


# -- a node of our own in the national registry ----------------------------------------------


@dataclass(frozen=True)
class RegisteredNode:
    """A node the suite had the national node register with a key the suite holds, so it can
    sign node-to-node tokens the target must judge with the registry's copy of the key."""

    code: str
    key: Ed25519PrivateKey
    kid: str

    def token(self, audience: str, now: float, **changes: Any) -> str:
        """A node-to-node token (iss = sub = our NodeCode, scope federation), issued at
        `now` (the target's clock) for 300 s, with `changes` applied to the claims."""
        issued = int(now)
        claims: dict[str, Any] = {"iss": self.code, "sub": self.code, "aud": audience,
                                  "iat": issued, "exp": issued + 300,
                                  "jti": str(uuid.uuid4()), "scope": "federation"}  # fmt: skip
        claims.update(changes)
        return jwt.encode(
            claims, self.key, algorithm="EdDSA", headers={"kid": self.kid, "typ": "JWT"}
        )


def public_jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid, "use": "sig",
            "alg": "EdDSA"}  # fmt: skip


def industry_application(
    spec: Spec, label: str, province: str, parent: str, jwk: dict[str, str], uscc: str
) -> dict[str, Any]:
    """An industry-node application every unified rule admits: a public institution (no
    telecom licence needed) with ample capital and a clean record, under an active regional
    node of its province, for a division drawn at random (99 Seqs each: room for many runs)."""
    import random

    division = random.SystemRandom().choice(spec.codelist("industry-division"))
    return {
        "role": "industry",
        "name": {"zh": f"{label}（符合性测试节点）", "en": f"{label} (conformance test node)"},
        "applicant": {
            "legalName": f"{label} test applicant",
            "uscc": uscc,
            "registeredCapitalCny": 100_000_000,
            "publicInstitution": True,
            "dishonestyRecordLast3Years": False,
        },
        "province": province,
        "industry": f"{division['x-section']}{division['const']}",
        "parentNodeCode": parent,
        "endpoint": "https://conformance-test-node.invalid/",
        "jwks": {"keys": [jwk]},
        "contact": {"name": "CPIN conformance suite", "email": "conformance@example.com"},
    }


def random_uscc(province: str) -> str:
    """A USCC with a valid GB 32100 check character, located in `province`."""
    import random

    from conformance.identifiers import USCC_ALPHABET, uscc_check

    pick = random.SystemRandom()
    first = "91" + province + "0000" + "".join(pick.choice(USCC_ALPHABET) for _ in range(9))
    return first + uscc_check(first)


def node_clock_offset(client: NodeClient) -> float:
    """Seconds the node's clock is ahead of ours, from its service-info `time`."""
    from datetime import datetime

    before = time.time()
    response = client.get("/v1/service-info", authenticated=False)
    after = time.time()
    expect_status(response, 200)
    stamp = str(body_of(response)["time"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp() - (before + after) / 2
