"""security: the token endpoint, the public key set and the audit trail.

The token endpoint speaks OAuth 2.0 (RFC 6749 section 4.4) inside this interface's error
model: every refusal is problem+json that also carries RFC 6749's `error` member, so an OAuth
client and a problem-details client both understand it. It checks its own form rather than
leaving it to schema validation, because RFC 6749 gives each way a form can be wrong its own
error code (a wrong grant type is `unsupported_grant_type`, not a generic 400).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from jsonschema import Draft202012Validator

from reference_impl.calls import Call, Principal, Reply, decode_cursor, handles, page
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem
from spec import Spec

_FORM_FIELDS = {"grant_type", "scope", "audience"}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_DESCRIPTION_CHARS = {chr(c) for c in range(0x21, 0x7F)} - {'"', "\\"}  # RFC 6749 5.2
_JWKS_MAX_AGE = "max-age=300"  # a rotated-in key reaches every verifier within 5 minutes


def _token_error(problem: Problem, node: Node) -> Problem:
    """Every refusal of the token endpoint is a token error (token.json TokenError, with
    Cache-Control: no-store): one the app raised before the handler ran is invalid_request."""
    if "error" in problem.members or problem.slug != "invalid-request":
        problem.headers = {**_NO_STORE, **problem.headers}
        return problem
    return _token_problem(node.spec, "invalid_request", problem.detail, problem.headers)


@handles("issueToken", checks_own_body=True, problem_form=_token_error)
async def issue_token(call: Call) -> Reply:
    """CPIN-SEC-001/002/015: client credentials in, a token of at most the client's scopes out."""
    form: dict[str, Any] = call.body if isinstance(call.body, dict) else {}
    if {"client_id", "client_secret"} & form.keys():
        raise _refusal(
            call,
            "invalid_request",
            "Client credentials are accepted in the Authorization header only.",
        )
    client_id, allowed = await _client(call)
    unknown = sorted(form.keys() - _FORM_FIELDS)
    if unknown or not all(isinstance(value, str) for value in form.values()):
        raise _refusal(call, "invalid_request", f"Unknown form fields: {', '.join(unknown)}.")
    grant = form.get("grant_type")
    if not grant:
        raise _refusal(call, "invalid_request", "grant_type is required.")
    if grant != "client_credentials":
        raise _refusal(
            call, "unsupported_grant_type", "Only grant_type=client_credentials is supported."
        )
    audience = form.get("audience")
    if audience is not None and audience != call.node.node_code:
        raise _refusal(call, "invalid_request", "audience must be this node's own NodeCode.")
    granted = _granted(call, form.get("scope"), allowed)
    token, expires_in = call.node.security.issue(client_id, granted)
    issued = replace(call, principal=Principal(subject=client_id, scopes=frozenset(granted)))
    with call.node.store.transaction() as db:
        call.node.audit(db, issued, "token.issued", client_id, status=200)
    body = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": " ".join(sorted(granted)),
    }
    return Reply(200, body, headers=dict(_NO_STORE))


@handles("getJwks")
async def get_jwks(call: Call) -> Reply:
    return Reply(200, call.node.security.jwks(), headers={"Cache-Control": _JWKS_MAX_AGE})


@handles("listAuditEvents")
async def list_audit_events(call: Call) -> Reply:
    """Newest first, paged by the event's sequence number, so events written while a client
    pages never shift the pages it has still to read (CPIN-CORE-013)."""
    limit: int = call.query["limit"]
    where: list[str] = []
    params: list[Any] = []
    if (action := call.query.get("action")) is not None:
        where.append("action = ?")
        params.append(action)
    if (since := call.query.get("since")) is not None:
        where.append("time >= ?")
        params.append(_stored_form(since))
    if (request_id := call.query.get("requestId")) is not None:
        where.append("request_id = ?")
        params.append(request_id)
    position = decode_cursor(call.query.get("cursor"))
    if position is not None:
        if not (position.isascii() and position.isdigit()):
            raise Problem("invalid-request", "The cursor is not one this node issued.")
        where.append("seq < ?")
        params.append(int(position))
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    rows = call.node.store.rows(
        f"SELECT seq, record FROM audit_events{condition} ORDER BY seq DESC LIMIT ?",
        (*params, limit + 1),
    )
    body = page([{"seq": row["seq"], "event": json_record(row)} for row in rows], limit, "seq")
    body["items"] = [item["event"] for item in body["items"]]
    return Reply(200, body)


async def _client(call: Call) -> tuple[str, frozenset[str]]:
    """The client named by HTTP Basic (RFC 6749 section 2.3.1: both parts form-encoded)."""
    scheme, _, credentials = call.headers.get("authorization", "").strip().partition(" ")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    client_id, colon, secret = decoded.partition(":")
    scopes = None
    if scheme.lower() == "basic" and colon and client_id:
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        scopes = await call.node.security.verify_client(client_id, secret)
    if scopes is None:
        raise _refusal(call, "invalid_client", "Client authentication failed.")
    return client_id, scopes


def _granted(call: Call, requested: str | None, allowed: frozenset[str]) -> set[str]:
    """All the client's scopes, or those asked for when every one of them is the client's."""
    if requested is None:
        return set(allowed)
    if not _scope_schema(call.node.spec).is_valid(requested):
        raise _refusal(call, "invalid_scope", "scope is not a space-separated list of scopes.")
    asked = set(requested.split(" "))
    refused = sorted(asked - allowed)
    if refused:
        raise _refusal(call, "invalid_scope", f"Scope {' '.join(refused)} is not granted.")
    return asked


def _refusal(call: Call, error: str, detail: str) -> Problem:
    """A token error: problem+json with RFC 6749's `error` and `error_description`."""
    headers = {}
    if error == "invalid_client":
        realm = call.node.node_code or "cpin"
        headers["WWW-Authenticate"] = f'Basic realm="{realm}", charset="UTF-8"'
    return _token_problem(call.node.spec, error, detail, headers)


def _token_problem(spec: Spec, error: str, detail: str, headers: dict[str, str]) -> Problem:
    slug = "unauthorized" if error == "invalid_client" else "invalid-request"
    visible = "".join(c for c in detail.rstrip(".") if c == " " or c in _DESCRIPTION_CHARS)
    description = (visible[:1].lower() + visible[1:])[: _description_max(spec)].strip() or error
    return Problem(
        slug,
        detail,
        headers={**_NO_STORE, **headers},
        error=error,
        error_description=description,
    )


@cache
def _description_max(spec: Spec) -> int:
    member = spec.load("schemas/token.json")["$defs"]["TokenError"]["properties"]
    return int(member["error_description"]["maxLength"])


@cache
def _scope_schema(spec: Spec) -> Draft202012Validator:
    return Draft202012Validator(spec.load("schemas/common.json")["$defs"]["Scope"])


def _stored_form(since: str) -> str:
    """`since` written as the stored event times are (milliseconds, Z), rounded up, so that
    comparing the strings keeps exactly the events at or after it."""
    seconds, _, fraction = since.removesuffix("Z").partition(".")
    try:
        moment = datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise Problem("invalid-request", "since is not an RFC 3339 UTC timestamp.") from None
    nanoseconds = int(fraction.ljust(9, "0")) if fraction else 0
    return timestamp(moment + timedelta(milliseconds=math.ceil(nanoseconds / 1_000_000)))
