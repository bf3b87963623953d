"""Faults of the security class: tokens, key set, 401/403, audit trail, rate limits."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from reference_impl.calls import Call, Handler, Principal, Reply
from reference_impl.faults import FaultSite, fault
from reference_impl.faults._security_tools import intercept, rewrite_status
from reference_impl.faults._transport import rewrite_headers
from reference_impl.problems import Problem
from reference_impl.security import ALGORITHMS, CLOCK_SKEW

Headers = list[tuple[bytes, bytes]]


def _reply_headers(
    change: Callable[[dict[str, str]], dict[str, str]],
) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            reply = await handler(call)
            return Reply(reply.status, reply.body, change(dict(reply.headers)), reply.media_type)

        return wrapped

    return wrap


def _reply_body(change: Callable[[Any], Any]) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            reply = await handler(call)
            return Reply(reply.status, change(reply.body), reply.headers, reply.media_type)

        return wrapped

    return wrap


def _principal_with(site: FaultSite, extra: set[str]) -> None:
    """Every authenticated caller also holds `extra` scopes."""
    authenticate = site.node.security.authenticate

    async def widened(authorization: str | None) -> Principal:
        principal = await authenticate(authorization)
        return Principal(principal.subject, principal.scopes | extra, principal.node_code)

    setattr(site.node.security, "authenticate", widened)  # noqa: B010


# -- the token endpoint -----------------------------------------------------------------------


@fault(
    "token-response-cacheable",
    breaks=["CPIN-SEC-001"],
    summary="the token response has no Cache-Control: no-store",
)
def token_response_cacheable(site: FaultSite) -> None:
    site.wrap_handler(
        "issueToken",
        _reply_headers(lambda h: {k: v for k, v in h.items() if k.lower() != "cache-control"}),
    )


@fault(
    "wrong-grant-error-code",
    breaks=["CPIN-SEC-002"],
    summary="a grant other than client credentials is refused as invalid_request",
)
def wrong_grant_error_code(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            try:
                return await handler(call)
            except Problem as problem:
                if problem.members.get("error") == "unsupported_grant_type":
                    problem.members["error"] = "invalid_request"
                raise

        return wrapped

    site.wrap_handler("issueToken", wrap)


@fault(
    "ungranted-scope-issued",
    breaks=["CPIN-SEC-002", "CPIN-SEC-015"],
    summary="every authenticated client may obtain every scope, whatever it was granted",
)
def ungranted_scope_issued(site: FaultSite) -> None:
    security = site.node.security
    verify = security.verify_client

    async def everything(client_id: str, secret: str) -> frozenset[str] | None:
        scopes = await verify(client_id, secret)
        return None if scopes is None else frozenset(security.scope_names)

    setattr(security, "verify_client", everything)  # noqa: B010


@fault(
    "client-secret-echoed",
    breaks=["CPIN-SEC-018"],
    summary="a failed client authentication repeats the credentials it received in its detail",
)
def client_secret_echoed(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            try:
                return await handler(call)
            except Problem as problem:
                if problem.members.get("error") == "invalid_client":
                    sent = call.headers.get("authorization", "").partition(" ")[2]
                    decoded = base64.b64decode(sent + "==").decode(errors="replace")
                    problem.detail = f"Client authentication failed for {decoded}."
                raise

        return wrapped

    site.wrap_handler("issueToken", wrap)


# -- the tokens -------------------------------------------------------------------------------


def _sign_with(site: FaultSite, lifetime: int | None = None, jti: str | None = None) -> None:
    """Access tokens signed as the node does, with another lifetime or a fixed jti."""
    security = site.node.security
    sign = security._sign

    def signed(claims: dict[str, Any], seconds: int, typ: str) -> str:
        if typ != "at+jwt":
            return sign(claims, seconds, typ)
        issued = int(site.node.now().timestamp())
        life = lifetime or seconds
        payload = {**claims, "iat": issued, "exp": issued + life,
                   "jti": jti or str(uuid.uuid4())}  # fmt: skip
        return jwt.encode(payload, security._key, algorithm="EdDSA",
                          headers={"kid": security.kid, "typ": typ})  # fmt: skip

    setattr(security, "_sign", signed)  # noqa: B010
    if lifetime is not None:
        issue = security.issue

        def issued(subject: str, scopes: set[str]) -> tuple[str, int]:
            return issue(subject, scopes)[0], lifetime

        setattr(security, "issue", issued)  # noqa: B010


@fault(
    "token-lifetime-two-hours",
    breaks=["CPIN-SEC-013", "CPIN-SEC-014"],
    summary="access tokens live 7200 s",
)
def token_lifetime_two_hours(site: FaultSite) -> None:
    _sign_with(site, lifetime=7200)


@fault(
    "token-lifetime-one-hour",
    breaks=["CPIN-SEC-014"],
    summary="access tokens live 3600 s (allowed, but above the recommended 900 s)",
)
def token_lifetime_one_hour(site: FaultSite) -> None:
    _sign_with(site, lifetime=3600)


@fault(
    "token-jti-reused",
    breaks=["CPIN-SEC-016"],
    summary="every access token carries the same jti",
)
def token_jti_reused(site: FaultSite) -> None:
    _sign_with(site, jti="cpin-token")


@fault(
    "token-sub-not-client-id",
    breaks=["CPIN-SEC-005"],
    summary="the sub claim is the client id qualified with the node's NodeCode",
)
def token_sub_not_client_id(site: FaultSite) -> None:
    security = site.node.security
    issue = security.issue

    def issued(subject: str, scopes: set[str]) -> tuple[str, int]:
        return issue(f"{subject}@{site.node.node_code}", scopes)

    setattr(security, "issue", issued)  # noqa: B010


# -- the key set ------------------------------------------------------------------------------


@fault(
    "jwks-private-key-exposed",
    breaks=["CPIN-SEC-006"],
    summary="the JWKS serialises the private signing key (member d) with the public one",
)
def jwks_private_key_exposed(site: FaultSite) -> None:
    raw = site.node.security._key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    d = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    site.wrap_handler(
        "getJwks", _reply_body(lambda body: {"keys": [{**k, "d": d} for k in body["keys"]]})
    )


@fault(
    "jwks-stale-kid",
    breaks=["CPIN-SEC-003", "CPIN-SEC-006"],
    summary="the JWKS publishes the key under an old kid, not the one tokens carry",
)
def jwks_stale_kid(site: FaultSite) -> None:
    site.wrap_handler(
        "getJwks",
        _reply_body(lambda body: {"keys": [{**k, "kid": f"{k['kid']}-old"} for k in body["keys"]]}),
    )


# -- tokens coming in -------------------------------------------------------------------------


@fault(
    "alg-none-accepted",
    breaks=["CPIN-SEC-004"],
    summary="an unsigned token (alg none) naming this node as issuer is taken at its word",
)
def alg_none_accepted(site: FaultSite) -> None:
    security = site.node.security
    authenticate = security.authenticate

    async def lenient(authorization: str | None) -> Principal:
        token = (authorization or "").partition(" ")[2].strip()
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return await authenticate(authorization)
        if header.get("alg") == "none" and claims.get("iss") == security.issuer:
            return Principal(str(claims["sub"]), frozenset(str(claims["scope"]).split()))
        return await authenticate(authorization)

    setattr(security, "authenticate", lenient)  # noqa: B010


def _verify_without(site: FaultSite, *, signature: bool = True, audience: bool = True) -> None:
    """The node's token verification with the signature or the audience check left out."""
    security = site.node.security

    def verify(token: str, header: dict[str, Any], jwks: dict[str, Any], issuer: str) -> Any:
        if header.get("alg") not in ALGORITHMS:
            raise security._invalid("token algorithm is not EdDSA or ES256")
        keys: list[jwt.PyJWK | None] = [jwt.PyJWK(k) for k in jwks.get("keys", [])]
        for key in keys or [None]:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key if key is not None else "",
                    algorithms=[header["alg"]],
                    audience=security._realm() if audience else None,
                    issuer=issuer,
                    options={
                        "verify_signature": signature,
                        "verify_aud": audience,
                        "verify_exp": False,
                        "verify_iat": False,
                    },
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise security._invalid(type(exc).__name__) from None
            security._check_claims(claims)
            return claims
        raise security._invalid("token signature does not verify")

    setattr(security, "_verify", verify)  # noqa: B010


@fault(
    "signature-not-verified",
    breaks=["CPIN-SEC-008"],
    summary="tokens are decoded without checking their signature",
)
def signature_not_verified(site: FaultSite) -> None:
    _verify_without(site, signature=False)


@fault(
    "audience-not-checked",
    breaks=["CPIN-SEC-010"],
    summary="a correctly signed token is accepted whatever its aud",
)
def audience_not_checked(site: FaultSite) -> None:
    _verify_without(site, audience=False)


@fault(
    "expired-token-accepted",
    breaks=["CPIN-SEC-009"],
    summary="the exp claim is never compared with the clock",
)
def expired_token_accepted(site: FaultSite) -> None:
    security = site.node.security
    check = security._check_times

    def unexpiring(claims: dict[str, Any]) -> None:
        check({**claims, "exp": int(claims["exp"]) + 10**9})

    setattr(security, "_check_times", unexpiring)  # noqa: B010


@fault(
    "no-clock-skew-tolerance",
    breaks=["CPIN-SEC-017"],
    summary="a token is refused the second its exp has passed (no skew tolerated)",
)
def no_clock_skew_tolerance(site: FaultSite) -> None:
    security = site.node.security
    check = security._check_times

    def strict(claims: dict[str, Any]) -> None:
        check({**claims, "exp": int(claims["exp"]) - CLOCK_SKEW})

    setattr(security, "_check_times", strict)  # noqa: B010


@fault(
    "no-bearer-challenge",
    breaks=["CPIN-SEC-007"],
    summary="401 answers carry no WWW-Authenticate header",
)
def no_bearer_challenge(site: FaultSite) -> None:
    def strip(status: int, headers: Headers) -> Headers:
        return [(k, v) for k, v in headers if not (status == 401 and k == b"www-authenticate")]

    site.wrap_app(rewrite_headers(strip))


@fault(
    "insufficient-scope-as-401",
    breaks=["CPIN-SEC-011"],
    summary="a valid token lacking the operation's scope is answered 401 instead of 403",
)
def insufficient_scope_as_401(site: FaultSite) -> None:
    def downgrade(status: int, headers: Headers) -> tuple[int, Headers]:
        return (401, headers) if status == 403 else (status, headers)

    site.wrap_app(rewrite_status(downgrade))


@fault(
    "write-scope-implied-by-read",
    breaks=["CPIN-SEC-012"],
    summary="holding any scope lets a client register, update and withdraw resources",
    roles=["regional", "industry"],
)
def write_scope_implied_by_read(site: FaultSite) -> None:
    _principal_with(site, {"catalogue:write"})


@fault(
    "audit-read-implied",
    breaks=["CPIN-SEC-023"],
    summary="every authenticated client may list audit events, with or without audit:read",
)
def audit_read_implied(site: FaultSite) -> None:
    _principal_with(site, {"audit:read"})


@fault(
    "node-token-scope-not-checked",
    breaks=["CPIN-SEC-028"],
    summary="a registered node's token is accepted without the federation scope",
    roles=["regional", "national"],
)
def node_token_scope_not_checked(site: FaultSite) -> None:
    security = site.node.security
    original = security._authenticate_node

    async def lenient(token: str, header: dict[str, Any], issuer: str) -> Principal:
        claims = jwt.decode(token, options={"verify_signature": False})
        if "federation" in str(claims.get("scope", "")).split():
            return await original(token, header, issuer)
        record = await security.lookup_node(issuer)
        if record is None:
            raise security._invalid("token issuer is not a registered node")
        verified = security._verify(token, header, record.get("jwks") or {}, issuer)
        return Principal(issuer, frozenset(str(verified["scope"]).split()), issuer)

    setattr(security, "_authenticate_node", lenient)  # noqa: B010


@fault(
    "suspended-node-accepted",
    breaks=["CPIN-SEC-029"],
    summary="the registry's suspended status is ignored when a node's token is checked",
    roles=["regional", "national"],
)
def suspended_node_accepted(site: FaultSite) -> None:
    def active(lookup: Callable[[str], Any]) -> Callable[[str], Any]:
        async def looked_up(node_code: str) -> dict[str, Any] | None:
            record: dict[str, Any] | None = await lookup(node_code)
            return None if record is None else {**record, "status": "active"}

        return looked_up

    setattr(site.node.security, "lookup_node", active(site.node.security.lookup_node))  # noqa: B010
    setattr(site.node.federation, "lookup", active(site.node.federation.lookup))  # noqa: B010


# -- audit ------------------------------------------------------------------------------------


@fault(
    "writes-not-audited",
    breaks=["CPIN-SEC-020"],
    summary="accepted writes leave no audit event",
)
def writes_not_audited(site: FaultSite) -> None:
    def silent(*args: Any, **kwargs: Any) -> None:
        return None

    setattr(site.node, "audit", silent)  # noqa: B010


@fault(
    "audit-event-without-target",
    breaks=["CPIN-SEC-021"],
    summary="audit events are recorded without their target",
)
def audit_event_without_target(site: FaultSite) -> None:
    node = site.node
    record = node._record

    def untargeted(db: Any, principal: Any, request_id: str, action: str, target: str,
                   status: int, outcome: str) -> None:  # fmt: skip
        record(db, principal, request_id, action, target, status, outcome)
        row = db.execute(
            "SELECT seq, record FROM audit_events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        event = json.loads(row[1])
        event.pop("target", None)
        db.execute("UPDATE audit_events SET record = ? WHERE seq = ?", (json.dumps(event), row[0]))

    setattr(node, "_record", untargeted)  # noqa: B010


@fault(
    "refusals-not-audited",
    breaks=["CPIN-SEC-022"],
    summary="401, 403 and 429 refusals leave no access.denied event",
)
def refusals_not_audited(site: FaultSite) -> None:
    def silent(*args: Any, **kwargs: Any) -> None:
        return None

    setattr(site.node, "audit_refusal", silent)  # noqa: B010


@fault(
    "audit-events-deletable",
    breaks=["CPIN-SEC-024"],
    summary="DELETE on /v1/audit-events answers 204 (a purge endpoint left in)",
)
def audit_events_deletable(site: FaultSite) -> None:
    def purge(method: str, path: str) -> bool:
        return method == "DELETE" and path.startswith("/v1/audit-events")

    site.wrap_app(intercept(purge, (204, [], b"")))


# -- rate limits ------------------------------------------------------------------------------


@fault(
    "rate-limit-never-applied",
    breaks=["CPIN-SEC-026"],
    summary="the declared rate limit is never enforced",
)
def rate_limit_never_applied(site: FaultSite) -> None:
    setattr(site.node.security.limiter, "retry_after", lambda subject: None)  # noqa: B010


@fault(
    "rate-limit-without-retry-after",
    breaks=["CPIN-SEC-026"],
    summary="429 answers carry no Retry-After header",
)
def rate_limit_without_retry_after(site: FaultSite) -> None:
    def strip(status: int, headers: Headers) -> Headers:
        return [(k, v) for k, v in headers if not (status == 429 and k == b"retry-after")]

    site.wrap_app(rewrite_headers(strip))


@fault(
    "retry-after-too-short",
    breaks=["CPIN-SEC-027"],
    summary="Retry-After always says 1 s, however long the client must really wait",
)
def retry_after_too_short(site: FaultSite) -> None:
    def one_second(status: int, headers: Headers) -> Headers:
        return [(k, b"1" if status == 429 and k == b"retry-after" else v) for k, v in headers]

    site.wrap_app(rewrite_headers(one_second))
