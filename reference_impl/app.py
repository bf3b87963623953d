"""The reference node as an ASGI app, built from the spec's operations for one role.

Every request goes through one pipeline, in this order, so each failure has one answer:

    request id (400 if malformed)
    route: path unknown -> 404; method not served here -> 405 + Allow
    authentication (401) and the operation's scope (403)
    rate limit (429 + Retry-After)
    Accept (406), Content-Type (415), parameters and body against the spec's schemas (400)
    identifier path parameters: syntax, code lists, check characters (400)
    handler -> Reply;  Problem -> problem+json;  anything else -> 500 internal-error, logged

Handlers live in `reference_impl.api.*`, one module per conformance class.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import pkgutil
import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
from jsonschema.exceptions import ValidationError
from starlette.applications import Starlette
from starlette.convertors import Convertor
from starlette.requests import ClientDisconnect, Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

import reference_impl.api
from reference_impl.api import identification
from reference_impl.calls import (
    ANONYMOUS,
    CURSOR_KEY,
    HANDLERS,
    OWN_BODY_CHECKS,
    PROBLEM_FORMS,
    Call,
    Principal,
    Reply,
)
from reference_impl.faults import FaultSite
from reference_impl.faults import install as install_faults
from reference_impl.ids import IdentifierRules
from reference_impl.node import Node, NodeConfig
from reference_impl.operations import CompiledSpec, Operation, Parameter
from reference_impl.problems import Problem
from spec import Spec, default

log = logging.getLogger("reference_impl")


async def _resolve_through_federation(
    node: Node, identifier: str
) -> tuple[int, Any, dict[str, str]]:
    return await node.federation.resolve(identifier)


identification.resolve_remote = _resolve_through_federation

_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_JSON_MEDIA = ("application/json", "application/problem+json")
_ACCEPTABLE = frozenset({"*/*", "application/*", *_JSON_MEDIA})
_INTEGER = re.compile(r"-?[0-9]+")
_AUDITED_REFUSALS = {401, 403, 429}  # CPIN-SEC-022


def create_app(
    config: NodeConfig,
    spec: Spec | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The node's app; fails at start if a served operation has no handler.

    `transport` carries its node-to-node calls (tests pass an in-process one; default: sockets).
    """
    spec = spec or default()
    for module in pkgutil.iter_modules(reference_impl.api.__path__):
        importlib.import_module(f"reference_impl.api.{module.name}")
    node = Node(config, spec, transport)
    compiled = CompiledSpec(spec, config.role)
    missing = [op.operation_id for op in compiled.operations if op.operation_id not in HANDLERS]
    if missing:
        raise RuntimeError(f"no handler for {', '.join(missing)}")
    pipeline = _Pipeline(node, compiled)
    site = FaultSite(node, pipeline.handlers)
    install_faults(config.faults, site)
    by_path: dict[str, dict[str, Operation]] = {}
    for operation in compiled.operations:
        by_path.setdefault(operation.path, {})[operation.method] = operation

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.federation.start()
        yield
        await node.federation.stop()
        node.close()

    app = _NodeApp(pipeline, _Paths(by_path), site.app_wrappers, lifespan=lifespan)
    app.state.node = node
    return app


class _NodeApp(Starlette):
    """Starlette runs the lifespan (and refuses websockets); HTTP requests go to the node's
    own dispatch, with a planted transport fault (if any) outermost, where a proxy would be."""

    def __init__(
        self,
        pipeline: _Pipeline,
        paths: _Paths,
        wrappers: list[Callable[[ASGIApp], ASGIApp]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.paths = paths
        self.wrappers = wrappers

    def build_middleware_stack(self) -> ASGIApp:
        others = super().build_middleware_stack()
        stack: ASGIApp = _Dispatch(self.pipeline, self.paths, others)
        for wrap in self.wrappers:
            stack = wrap(stack)
        return stack


class _Dispatch:
    """HTTP requests to the pipeline, by path; no redirects (CPIN-CORE-024: /v1/health/ is a
    404). Starlette's router and middleware cost more per request than a resolution's query,
    so only the other scope types go through them (`others`)."""

    def __init__(self, pipeline: _Pipeline, paths: _Paths, others: ASGIApp) -> None:
        self.pipeline = pipeline
        self.paths = paths
        self.others = others

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.others(scope, receive, send)
            return
        request = _Request(scope, receive)
        found = self.paths.match(scope["path"])  # served at its root: `cpin node` sets no root_path
        if found is None:
            answer = self.pipeline.unrouted(request)
        else:
            operations, scope["path_params"] = found
            answer = await self.pipeline.handle(request, operations)
        await answer.send(send)


@dataclass(frozen=True)
class _Path:
    head: str | None
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    operations: dict[str, Operation]  # by method


class _Paths:
    """The spec's paths, matched as Starlette matches them (its regexes, in the spec's order),
    but only against the paths that share the request's first two segments (/v1/identifiers),
    found by one dict lookup: Starlette tries every path in turn."""

    def __init__(self, by_path: dict[str, dict[str, Operation]]) -> None:
        self.every: list[_Path] = []
        for template, operations in by_path.items():
            regex, _, convertors = compile_path(template)
            self.every.append(_Path(_head(template), regex, convertors, operations))
        self.by_head: dict[str | None, list[_Path]] = {
            path.head: [other for other in self.every if other.head in (path.head, None)]
            for path in self.every
            if path.head is not None
        }

    def match(self, route_path: str) -> tuple[dict[str, Operation], dict[str, Any]] | None:
        """The operations of the path `route_path` matches, and its path parameters."""
        for path in self.by_head.get(_head(route_path), self.every):
            if found := path.regex.match(route_path):
                params = {k: path.convertors[k].convert(v) for k, v in found.groupdict().items()}
                return path.operations, params
        return None


def _head(path: str) -> str | None:
    """A path's first two segments (/v1/identifiers); None if they hold a parameter."""
    head = "/".join(path.split("/", 3)[:3])
    return None if "{" in head else head


class _Request(Request):
    """Starlette's Request, its body read in a plain loop: Starlette's async generator cost
    more per request than the loop's work."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            chunks = []
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            self._body = b"".join(chunks)
        return self._body


@dataclass(slots=True)
class _Answer:
    """A response as Starlette's Response sends it (the given headers, then content-length and
    content-type unless given), without its generality."""

    status: int
    headers: dict[str, str]
    body: bytes
    media_type: str

    async def send(self, send: Send) -> None:
        given = {k.lower(): v for k, v in self.headers.items()}
        if "content-length" not in given and self.status >= 200 and self.status not in (204, 304):
            given["content-length"] = str(len(self.body))
        given.setdefault("content-type", self.media_type)
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in given.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body})


class _RequestIds:
    """X-Request-Id values for requests that came without one (CPIN-CORE-010): a random
    prefix per process and a counter, so no two are alike, even across restarts, without the
    system call uuid4 makes for every request."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)

    def mint(self) -> str:
        return f"{self.prefix}-{next(self.counter):x}"


class _Pipeline:
    def __init__(self, node: Node, compiled: CompiledSpec) -> None:
        self.node = node
        self.request_ids = _RequestIds()
        self.compiled = compiled
        self.ids = IdentifierRules.from_spec(node.spec)
        self.handlers = {op.operation_id: HANDLERS[op.operation_id] for op in compiled.operations}

    def unrouted(self, request: Request) -> _Answer:
        request_id = request.headers.get("x-request-id") or self.request_ids.mint()
        problem = Problem("not-found", f"{request.url.path} is not an operation of this node.")
        return self.problem_response(problem, request, request_id)

    async def handle(self, request: Request, operations: dict[str, Operation]) -> _Answer:
        headers = _header_map(request.scope)
        given = headers.get("x-request-id")
        valid = given is not None and _REQUEST_ID.fullmatch(given) is not None
        request_id = given if given is not None and valid else self.request_ids.mint()
        principal = ANONYMOUS
        operation = operations.get(request.method.upper())
        signing = CURSOR_KEY.set(self.node.security.cursor_key)  # reset below: nested in-process
        try:  # calls between nodes run in this task and must not leave their key behind
            if given is not None and not valid:
                raise Problem("invalid-request", "X-Request-Id must be 1-128 visible ASCII.")
            if operation is None:
                allow = ", ".join(sorted(operations))
                raise Problem(
                    "method-not-allowed",
                    f"{request.method} is not served at this path.",
                    headers={"Allow": allow},
                )
            principal = await self.identify(headers, operation)
            self.require_scopes(principal, operation)
            self.limit(principal, request)
            call = await self.prepare(request, headers, operation, request_id, principal)
            reply = await self.handlers[operation.operation_id](call)
            return self.reply_response(reply, operation, request_id)
        except Problem as refusal:
            form = PROBLEM_FORMS.get(operation.operation_id) if operation else None
            problem = form(refusal, self.node) if form else refusal
            status = self.node.problems.status(problem.slug)
            if status in _AUDITED_REFUSALS:
                self.node.audit_refusal(principal, request_id, request.url.path, status)
            return self.problem_response(problem, request, request_id)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            crash = Problem("internal-error", "The node failed to process this request.")
            return self.problem_response(crash, request, request_id)
        finally:
            CURSOR_KEY.reset(signing)

    async def prepare(
        self,
        request: Request,
        headers: dict[str, str],
        operation: Operation,
        request_id: str,
        principal: Principal,
    ) -> Call:
        _check_accept(headers.get("accept"))
        call = Call(
            operation_id=operation.operation_id,
            request=request,
            node=self.node,
            request_id=request_id,
            principal=principal,
            headers=headers,
        )
        errors: list[dict[str, str]] = []
        call.path = {
            p.name: request.path_params[p.name]
            for p in operation.parameters
            if p.location == "path"
        }
        call.query = self.query(request, operation, errors)
        self.check_parameters(operation, call, errors)
        if errors:
            raise Problem("invalid-request", "The request's parameters are invalid.", errors=errors)
        call.body = await self.body(request, headers, operation)
        self.check_identifiers(operation, call)
        return call

    async def identify(self, headers: dict[str, str], operation: Operation) -> Principal:
        if operation.scopes is None:
            return ANONYMOUS
        return await self.node.security.authenticate(headers.get("authorization"))

    def require_scopes(self, principal: Principal, operation: Operation) -> None:
        required = operation.scopes or []
        if any(scope not in principal.scopes for scope in required):
            scope = " ".join(required)
            raise Problem(
                "insufficient-scope",
                f"This operation needs scope {scope}.",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )

    def limit(self, principal: Principal, request: Request) -> None:
        subject = principal.subject if principal is not ANONYMOUS else _address(request)
        wait = self.node.security.limiter.retry_after(subject)
        if wait is not None:
            raise Problem(
                "rate-limited",
                f"Rate limit of {self.node.config.rate_limit_per_minute} requests/minute.",
                headers={"Retry-After": str(wait)},
                retryAfter=wait,
            )

    def query(
        self, request: Request, operation: Operation, errors: list[dict[str, str]]
    ) -> dict[str, Any]:
        declared, defaults = operation.query_parameters, operation.query_defaults
        if not request.scope["query_string"]:  # most requests: no need to parse one
            return dict(defaults)
        values: dict[str, Any] = {}
        for name in request.query_params:
            parameter = declared.get(name)
            given = request.query_params.getlist(name)
            if not name:  # FieldError.parameter cannot be empty
                errors.append({"message": "a query parameter has no name"})
            elif parameter is None:
                errors.append({"parameter": name, "message": "not a parameter of this operation"})
            elif len(given) > 1 and parameter.type != "array":
                errors.append({"parameter": name, "message": "given more than once"})
            else:
                values[name] = _convert(given if parameter.type == "array" else given[0], parameter)
        return {**defaults, **values}  # handlers see the spec's defaults (limit: 20) applied

    def check_parameters(
        self, operation: Operation, call: Call, errors: list[dict[str, str]]
    ) -> None:
        for parameter in operation.parameters:
            value = _parameter_value(parameter, call)
            if value is None:
                if parameter.required and parameter.location != "header":
                    errors.append({"parameter": parameter.name, "message": "is required"})
                continue
            if parameter.identifier:
                continue  # judged whole by check_identifiers: grammar, code lists, check chars
            validator = self.compiled.validator(parameter.schema_uri)
            for error in validator.iter_errors(value):
                errors.append({"parameter": parameter.name, "message": error.message})

    def check_identifiers(self, operation: Operation, call: Call) -> None:
        """identification.md §6 for identifier parameters, in the path or the query."""
        for parameter in operation.parameters:
            value = _parameter_value(parameter, call)
            if parameter.identifier and isinstance(value, str):
                judge = (
                    self.ids.node_code_flaw
                    if parameter.identifier == "node-code"
                    else self.ids.resource_id_flaw
                )
                if flaw := judge(value):
                    raise Problem(flaw[0], flaw[1])

    async def body(self, request: Request, headers: dict[str, str], operation: Operation) -> Any:
        raw = await request.body()
        if operation.body_schema_uri is None:
            if raw:
                raise Problem("invalid-request", "This operation takes no request body.")
            return None
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if not raw and not operation.body_required:
            return None
        if media not in operation.media_types:
            raise Problem(
                "unsupported-media-type",
                f"The body must be {' or '.join(operation.media_types)}.",
            )
        document = _parse(raw, media)
        if operation.operation_id in OWN_BODY_CHECKS:
            return document
        errors = []
        for error in self.compiled.validator(operation.body_schema_uri).iter_errors(document):
            pointer = "".join(
                f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in error.absolute_path
            )
            if _malformed_identifier(error, self.compiled.identifier_patterns):
                raise Problem("malformed-identifier", f"{pointer}: {error.message}")
            errors.append({"pointer": pointer, "message": error.message})
        if errors:
            raise Problem("invalid-request", "The body does not match its schema.", errors=errors)
        return document

    def reply_response(self, reply: Reply, operation: Operation, request_id: str) -> _Answer:
        if self.node.config.validate_responses:
            self.check_reply(reply, operation)
        body = b"" if reply.body is None else _encode(reply.body)
        headers = {**reply.headers, "X-Request-Id": request_id}
        return _Answer(reply.status, headers, body, reply.media_type)

    def check_reply(self, reply: Reply, operation: Operation) -> None:
        """Test mode: a handler must answer only what the spec documents for its operation.
        The failure is told to the client, which in test mode is the test itself."""
        status = str(reply.status)
        if status not in operation.responses:
            message = f"{operation.operation_id} answered undocumented {status}"
            raise Problem("internal-error", f"response check failed: {message}")
        schema_uri = operation.responses[status]
        if schema_uri and reply.body is not None:
            errors = [
                e.message for e in self.compiled.validator(schema_uri).iter_errors(reply.body)
            ]
            if errors:
                message = f"{operation.operation_id} {status} body: {errors[:3]}"
                raise Problem("internal-error", f"response check failed: {message}")

    def problem_response(self, problem: Problem, request: Request, request_id: str) -> _Answer:
        body = self.node.problems.body(problem, request.url.path, request_id)
        headers = {**problem.headers, "X-Request-Id": request_id}
        return _Answer(body["status"], headers, _encode(body), "application/problem+json")


_STRING_SHAPE = {"pattern", "minLength", "maxLength"}


def _malformed_identifier(error: ValidationError, patterns: dict[str, str]) -> bool:
    """identification.md §6: a string that is not a well-formed identifier, whichever of the
    identifier's keywords (length or pattern) noticed first, is malformed-identifier."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    return error.validator in _STRING_SHAPE and schema.get("pattern") in patterns


def _header_map(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; the first of repeated ones wins, as in
    Starlette's Headers.get."""
    raw = reversed(scope["headers"])
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}


def _address(request: Request) -> str:
    return f"address:{request.client.host if request.client else 'unknown'}"


def _check_accept(accept: str | None) -> None:
    if not accept or accept in _ACCEPTABLE:
        return
    ranges = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if not _ACCEPTABLE & set(ranges):
        raise Problem("not-acceptable", "This node answers application/json only.")


def _parameter_value(parameter: Parameter, call: Call) -> Any:
    if parameter.location == "path":
        return call.path.get(parameter.name)
    if parameter.location == "query":
        return call.query.get(parameter.name)
    return call.headers.get(parameter.name.lower())


def _convert(value: Any, parameter: Parameter) -> Any:
    """Query strings to their schema's JSON type; anything unconvertible stays a string and
    fails schema validation with a message naming the parameter."""
    if isinstance(value, list):
        return value
    if parameter.type == "integer" and _INTEGER.fullmatch(value):
        return int(value)
    if parameter.type == "number":
        try:
            return float(value) if "n" not in value.lower() else value  # no NaN, no Infinity
        except ValueError:
            return value
    if parameter.type == "boolean" and value in {"true", "false"}:
        return value == "true"
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse(raw: bytes, media: str) -> Any:
    try:
        text = raw.decode("utf-8")
        if media == "application/x-www-form-urlencoded":
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
            if len({k for k, _ in pairs}) != len(pairs):
                raise ValueError("a form field is repeated")
            return dict(pairs)
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem("invalid-request", f"The body is not well-formed: {exc}") from None


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _encode(body: Any) -> bytes:
    """Compact UTF-8 JSON. orjson writes it in a twentieth of the time; what it refuses
    (integers beyond 64 bits) the standard library writes exactly."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return _ENCODER.encode(body).encode("utf-8")
