"""The node as its own authorisation server: signing key, clients, tokens, rate limits.

One Ed25519 key signs both the access tokens the node issues to its clients and the
node-to-node assertions it sends; its public half is the node's JWKS and the key set the
national registry holds for it, so a peer verifies our assertions with the registry's copy.
Verification never trusts the token's header beyond choosing a key: the algorithm must be
EdDSA or ES256 and must be the one of the key, so `none` and HMAC tokens forged with a public
key cannot pass.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator

from reference_impl.calls import Principal
from reference_impl.problems import Problem
from reference_impl.store import schema

if TYPE_CHECKING:
    from reference_impl.node import Node

schema("""
CREATE TABLE IF NOT EXISTS oauth_clients (
  client_id TEXT PRIMARY KEY,
  salt BLOB NOT NULL,
  secret_hash BLOB NOT NULL,
  scopes TEXT NOT NULL
);
""")

ACCESS_TOKEN_LIFETIME = 900  # s: CPIN-SEC-013 caps at 3600, CPIN-SEC-014 asks for 900
ASSERTION_LIFETIME = 300  # s: CPIN-FED-003
CLOCK_SKEW = 60  # s: CPIN-SEC-017
VERIFIED_TOKENS = 10_000  # own tokens whose signature was checked once (bounded memory)
ALGORITHMS = frozenset({"EdDSA", "ES256"})  # CPIN-SEC-003/004: asymmetric only
FEDERATION_SCOPE = "federation"
_ACCESS_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "scope"]  # CPIN-SEC-005
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}

NodeLookup = Callable[[str], Awaitable[dict[str, Any] | None]]
"""NodeCode -> its record in the national registry (schemas/node.json: `jwks`, `status`)."""


class Security:
    """Tokens in and out for one node; `lookup_node` is swapped for the federation lookup on
    nodes that do not hold the national registry themselves."""

    def __init__(self, node: Node, lookup_node: NodeLookup | None = None) -> None:
        self._node = node
        self._key = _signing_key(node.config.data_dir / "keys" / "signing-key.pem")
        self._public = _public_jwk(self._key)
        self.kid = self._public["kid"]
        self.lookup_node: NodeLookup = lookup_node or self._registry_record
        self.limiter = RateLimiter(node.config.rate_limit_per_minute)
        self._verified: dict[str, tuple[Principal, dict[str, Any]]] = {}
        raw = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.cursor_key = hashlib.sha256(b"cpin pagination cursors\0" + raw).digest()
        self.scope_names = node.spec.scopes
        actor = node.spec.load("schemas/audit-event.json")["properties"]["actor"]
        self._client_id = Draft202012Validator(actor["properties"]["clientId"])
        node_code = node.spec.load("schemas/identifiers.json")["$defs"]["NodeCode"]
        self._node_code = Draft202012Validator(node_code)

    @property
    def issuer(self) -> str:
        return self._node.config.base_url

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._public)]}

    # -- clients -------------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str, scopes: set[str]) -> None:
        """Register (or re-key) a client; only a salted scrypt hash of the secret is kept."""
        if not self._client_id.is_valid(client_id):
            raise ValueError("a client id is 1-128 visible ASCII characters")
        unknown = set(scopes) - self.scope_names
        if unknown or not scopes:
            raise ValueError(f"scopes must be non-empty and defined by the spec: {unknown}")
        salt = secrets.token_bytes(16)
        with self._node.store.transaction() as db:
            db.execute(
                "INSERT INTO oauth_clients (client_id, salt, secret_hash, scopes)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET"
                " salt = excluded.salt, secret_hash = excluded.secret_hash,"
                " scopes = excluded.scopes",
                (client_id, salt, _hash(secret, salt), " ".join(sorted(scopes))),
            )

    async def verify_client(self, client_id: str, secret: str) -> frozenset[str] | None:
        """The client's registered scopes if the secret is right, else None. An unknown
        client costs the same hash as a known one, so timing does not reveal which ids exist."""
        row = self._node.store.row(
            "SELECT salt, secret_hash, scopes FROM oauth_clients WHERE client_id = ?",
            (client_id,),
        )
        salt = row["salt"] if row else b"\0" * 16
        digest = await asyncio.to_thread(_hash, secret, salt)
        if row is None or not hmac.compare_digest(digest, row["secret_hash"]):
            return None
        return frozenset(row["scopes"].split())

    # -- tokens out ----------------------------------------------------------------------

    def issue(self, subject: str, scopes: set[str]) -> tuple[str, int]:
        """An access token for a client of this node (CPIN-SEC-003, -005, -013, -016)."""
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self._own_code(),
            "client_id": subject,
            "scope": " ".join(sorted(scopes)),
        }
        return self._sign(claims, ACCESS_TOKEN_LIFETIME, "at+jwt"), ACCESS_TOKEN_LIFETIME

    def node_assertion(self, audience_node_code: str, scopes: set[str] | None = None) -> str:
        """The token this node signs for its own call to another node (CPIN-FED-003)."""
        own = self._own_code()
        claims = {
            "iss": own,
            "sub": own,
            "aud": audience_node_code,
            "scope": " ".join(sorted({FEDERATION_SCOPE, *(scopes or ())})),
        }
        return self._sign(claims, ASSERTION_LIFETIME, "JWT")

    def _sign(self, claims: dict[str, Any], lifetime: int, typ: str) -> str:
        issued = int(self._node.now().timestamp())
        payload = {**claims, "iat": issued, "exp": issued + lifetime, "jti": str(uuid.uuid4())}
        headers = {"kid": self.kid, "typ": typ}
        return jwt.encode(payload, self._key, algorithm="EdDSA", headers=headers)

    def _own_code(self) -> str:
        if self._node.node_code is None:
            raise Problem("service-unavailable", "This node has no NodeCode yet.")
        return self._node.node_code

    # -- tokens in -----------------------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller of a protected operation, or a 401 (403 for a suspended node)."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                "unauthorized",
                "This operation requires a Bearer access token.",
                headers={"WWW-Authenticate": f'Bearer realm="{self._realm()}"'},
            )
        if cached := self._verified.get(token):
            principal, claims = cached
            self._check_times(claims)  # types were judged once; time limits on every use
            return principal
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise self._invalid("token is not a JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise self._invalid("token algorithm is not EdDSA or ES256")
        issuer = unverified.get("iss")
        if issuer == self.issuer:
            claims = self._verify(token, header, self.jwks(), issuer)
            principal = Principal(subject=claims["sub"], scopes=_scopes(claims))
            self._remember(token, principal, claims)
            return principal
        if not isinstance(issuer, str) or not self._node_code.is_valid(issuer):
            raise self._invalid("token issuer unknown")
        return await self._authenticate_node(token, header, issuer)

    def _remember(self, token: str, principal: Principal, claims: dict[str, Any]) -> None:
        """Skip the Ed25519 check next time: a token this node signed stays signed. (Node
        assertions are not remembered: the issuer's registry status must be read each time.)"""
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (principal, claims)

    async def _authenticate_node(
        self, token: str, header: dict[str, Any], issuer: str
    ) -> Principal:
        """CPIN-SEC-028/029: a peer's assertion, checked with the keys the registry holds."""
        if issuer == self._node.node_code:
            record: dict[str, Any] | None = {"jwks": self.jwks(), "status": "active"}
        else:
            record = await self.lookup_node(issuer)
        if record is None:
            raise self._invalid("token issuer is not a registered node")
        claims = self._verify(token, header, record.get("jwks") or {}, issuer)
        scopes = _scopes(claims)
        if claims["sub"] != issuer or FEDERATION_SCOPE not in scopes:
            raise self._invalid("node token must have sub = iss and scope federation")
        if record.get("status") == "suspended":
            raise Problem("node-suspended", f"Node {issuer} is suspended in the national registry.")
        if record.get("status") != "active":
            raise self._invalid("token issuer is not an active node")
        return Principal(subject=issuer, scopes=scopes, node_code=issuer)

    def _verify(
        self, token: str, header: dict[str, Any], jwks: dict[str, Any], issuer: str
    ) -> dict[str, Any]:
        """Signature with a key of `jwks` whose algorithm is the header's, then the claims."""
        kid = header.get("kid")
        candidates = [k for k in jwks.get("keys", []) if kid is None or k.get("kid") == kid]
        for jwk in candidates:
            try:
                key = jwt.PyJWK(jwk)
            except (jwt.PyJWTError, KeyError, TypeError, ValueError):
                continue  # a key we cannot use is a key that does not verify
            if key.algorithm_name != header["alg"]:
                continue
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[header["alg"]],
                    audience=self._realm(),
                    issuer=issuer,
                    options={
                        "require": _ACCESS_CLAIMS,
                        "verify_exp": False,
                        "verify_iat": False,
                        "verify_nbf": False,
                    },
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidAudienceError:
                raise self._invalid("token audience is not this node") from None
            except jwt.MissingRequiredClaimError as exc:
                raise self._invalid(f"token lacks the claim {exc.claim}") from None
            except jwt.PyJWTError as exc:
                raise self._invalid(f"token rejected: {type(exc).__name__}") from None
            self._check_claims(claims)
            return claims
        raise self._invalid("token signature does not verify")

    def _check_claims(self, claims: dict[str, Any]) -> None:
        """Claim types, then the time limits."""
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int)):
                raise self._invalid(f"token {name} is not an integer")
        if not isinstance(claims["scope"], str) or not isinstance(claims["sub"], str):
            raise self._invalid("token scope and sub must be strings")
        self._check_times(claims)

    def _check_times(self, claims: dict[str, Any]) -> None:
        """exp, iat and nbf against the node's clock with the skew that CPIN-SEC-017 allows
        (PyJWT would use the system clock, not the node's)."""
        now = self._node.now().timestamp()
        if claims["exp"] < now - CLOCK_SKEW:
            raise self._invalid("token expired")
        if claims["iat"] > now + CLOCK_SKEW or claims.get("nbf", 0) > now + CLOCK_SKEW:
            raise self._invalid("token not yet valid")

    def _invalid(self, reason: str) -> Problem:
        challenge = (
            f'Bearer realm="{self._realm()}", error="invalid_token", error_description="{reason}"'
        )
        return Problem(
            "unauthorized",
            f"The access token is invalid: {reason}.",
            headers={"WWW-Authenticate": challenge},
        )

    def _realm(self) -> str:
        return self._node.node_code or "cpin"

    async def _registry_record(self, node_code: str) -> dict[str, Any] | None:
        """The national node answers from its own registry; other roles are wired to the
        federation lookup by the app, and until then know no peer."""
        if self._node.config.role != "national":
            return None
        row = self._node.store.row("SELECT record FROM nodes WHERE node_code = ?", (node_code,))
        if row is None:
            return None
        record: dict[str, Any] = json.loads(row["record"])
        return record


class RateLimiter:
    """A sliding one-minute window per subject: no 60 s span ever admits more than the
    declared rate, and Retry-After is exactly when the oldest admitted request leaves the
    window, so a client that waits that long is admitted (CPIN-SEC-026/027)."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def retry_after(self, subject: str) -> int | None:
        """None and the request counts; or the seconds (>= 1) to wait, and it does not."""
        now = self._clock()
        with self._lock:
            self._sweep(now)
            admitted = self._admitted.setdefault(subject, deque())
            while admitted and admitted[0] <= now - self.WINDOW:
                admitted.popleft()
            if len(admitted) < self.per_minute:
                admitted.append(now)
                return None
            return max(1, math.ceil(admitted[0] + self.WINDOW - now))

    def _sweep(self, now: float) -> None:
        """Forget subjects idle for a whole window, once a window, so memory stays bounded."""
        if now - self._swept < self.WINDOW:
            return
        self._swept = now
        idle = [s for s, q in self._admitted.items() if not q or q[-1] <= now - self.WINDOW]
        for subject in idle:
            del self._admitted[subject]


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    return frozenset(str(claims["scope"]).split())


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def _signing_key(path: Path) -> Ed25519PrivateKey:
    """The node's key: made once, readable by the node's user only, and kept across restarts
    because the national registry holds its public half."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise RuntimeError(f"{path} does not hold an Ed25519 key")
        return key
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
        file.flush()
        os.fsync(file.fileno())
    return key


def _public_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    """The public JWK, with `kid` its RFC 7638 thumbprint (stable for the key's life)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = _b64url(raw)
    required = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = _b64url(hashlib.sha256(required.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
