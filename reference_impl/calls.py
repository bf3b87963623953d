"""The contract between the app and the handlers of each conformance class.

    handler(call: Call) -> Reply         registered with @handles("operationId")

The app has already done, before a handler runs: routing by the spec's operations for this
node's role, authentication and the operation's scopes, strict validation of parameters and
body against the spec's schemas, identifier syntax and check characters on path parameters.
So a handler sees only well-formed input and writes only behaviour. What it returns is
serialised as JSON, stamped with X-Request-Id, and (in tests) validated against the spec.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reference_impl.problems import Problem

if TYPE_CHECKING:
    from starlette.requests import Request

    from reference_impl.node import Node


@dataclass(frozen=True)
class Principal:
    """Who is calling: a client of this node, or another node (node-to-node assertion)."""

    subject: str
    scopes: frozenset[str]
    node_code: str | None = None


ANONYMOUS = Principal(subject="anonymous", scopes=frozenset())


@dataclass
class Call:
    operation_id: str
    request: Request
    node: Node
    request_id: str
    principal: Principal = ANONYMOUS
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None

    def require_match(self, current_etag: str) -> None:
        """Optimistic concurrency for writes: If-Match is required (428) and must match (412)."""
        given = self.headers.get("if-match")
        if given is None:
            raise Problem("precondition-required", "This update needs an If-Match header.")
        if given.strip() != current_etag:
            raise Problem("precondition-failed", "The record changed since it was read.")


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


Handler = Callable[[Call], Awaitable[Reply]]
ProblemForm = Callable[[Problem, "Node"], Problem]
HANDLERS: dict[str, Handler] = {}
OWN_BODY_CHECKS: set[str] = set()
PROBLEM_FORMS: dict[str, ProblemForm] = {}


def handles(
    operation_id: str, *, checks_own_body: bool = False, problem_form: ProblemForm | None = None
) -> Callable[[Handler], Handler]:
    """Register the handler of one spec operation; one handler per operationId.

    For an operation whose errors an RFC prescribes (issueToken answers RFC 6749 error codes):
    `checks_own_body`: the app parses the body but leaves its validation to the handler;
    `problem_form`: rewrites every problem the operation answers, also those the app raises
    before the handler runs (a malformed X-Request-Id, a body that does not parse).
    """

    def register(handler: Handler) -> Handler:
        if operation_id in HANDLERS:
            raise RuntimeError(f"{operation_id} has two handlers")
        HANDLERS[operation_id] = handler
        if checks_own_body:
            OWN_BODY_CHECKS.add(operation_id)
        if problem_form is not None:
            PROBLEM_FORMS[operation_id] = problem_form
        return handler

    return register


def etag_of(record: Any) -> str:
    """A strong ETag over the record's canonical JSON: changes exactly when the record does."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


CURSOR_KEY: ContextVar[bytes] = ContextVar("cursor_key")
"""The key of the node serving the current request (the app sets it): cursors carry an HMAC,
so one altered or minted elsewhere is refused (CPIN-CORE-014), without handlers passing keys."""


def encode_cursor(position: str) -> str:
    body = _base64(position.encode())
    return f"{body}.{_mac(body)}"


def decode_cursor(cursor: str | None) -> str | None:
    """The position a cursor stands for; a cursor this node did not make is a 400."""
    if cursor is None:
        return None
    body, _, mac = cursor.rpartition(".")
    try:
        if not body or not hmac.compare_digest(mac, _mac(body)):
            raise ValueError("not signed by this node")
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Problem("invalid-request", "The cursor is not one this node issued.") from None


def _base64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _mac(body: str) -> str:
    return _base64(hmac.new(CURSOR_KEY.get(), body.encode(), hashlib.sha256).digest()[:16])


def page(items: list[dict[str, Any]], limit: int, key: str) -> dict[str, Any]:
    """A list answer from `limit + 1` items fetched after the cursor, ordered by `key`."""
    body: dict[str, Any] = {"items": items[:limit]}
    if len(items) > limit:
        body["nextCursor"] = encode_cursor(str(items[limit - 1][key]))
    return body
