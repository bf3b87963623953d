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
import json
import logging
import pkgutil
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import httpx
from jsonschema.exceptions import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
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
    routes = [Route(path, pipeline.endpoint(operations)) for path, operations in by_path.items()]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.federation.start()
        yield
        await node.federation.stop()
        node.close()

    app = _NodeApp(
        site.app_wrappers,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: pipeline.unrouted},
    )
    app.router.redirect_slashes = False  # CPIN-CORE-024: /v1/health/ is 404, not a redirect
    app.state.node = node
    return app


class _NodeApp(Starlette):
    """Starlette, with a planted transport fault (if any) outermost, where a proxy would be."""

    def __init__(self, wrappers: list[Callable[[ASGIApp], ASGIApp]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wrappers = wrappers

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        for wrap in self.wrappers:
            stack = wrap(stack)
        return stack


class _Endpoint:
    """The ASGI app of one path. Not a function, so Starlette routes every method to it, and
    the pipeline answers a method the path does not serve (405 + Allow, problem+json)."""

    def __init__(self, pipeline: _Pipeline, operations: dict[str, Operation]) -> None:
        self.pipeline = pipeline
        self.operations = operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.pipeline.handle(Request(scope, receive), self.operations)
        await response(scope, receive, send)


class _Pipeline:
    def __init__(self, node: Node, compiled: CompiledSpec) -> None:
        self.node = node
        self.compiled = compiled
        self.ids = IdentifierRules.from_spec(node.spec)
        self.handlers = {op.operation_id: HANDLERS[op.operation_id] for op in compiled.operations}

    def endpoint(self, operations: dict[str, Operation]) -> _Endpoint:
        return _Endpoint(self, operations)

    async def unrouted(self, request: Request, exc: Exception) -> Response:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        problem = Problem("not-found", f"{request.url.path} is not an operation of this node.")
        return self.problem_response(problem, request, request_id)

    async def handle(self, request: Request, operations: dict[str, Operation]) -> Response:
        given = request.headers.get("x-request-id")
        valid = given is not None and _REQUEST_ID.fullmatch(given) is not None
        request_id = given if given is not None and valid else str(uuid.uuid4())
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
            principal = await self.identify(request, operation)
            self.require_scopes(principal, operation)
            self.limit(principal, request)
            call = await self.prepare(request, operation, request_id, principal)
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
        self, request: Request, operation: Operation, request_id: str, principal: Principal
    ) -> Call:
        _check_accept(request)
        call = Call(
            operation_id=operation.operation_id,
            request=request,
            node=self.node,
            request_id=request_id,
            principal=principal,
            headers={k.lower(): v for k, v in request.headers.items()},
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
        call.body = await self.body(request, operation)
        self.check_identifiers(operation, call)
        return call

    async def identify(self, request: Request, operation: Operation) -> Principal:
        if operation.scopes is None:
            return ANONYMOUS
        return await self.node.security.authenticate(request.headers.get("authorization"))

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
        client = request.client.host if request.client else "unknown"
        subject = principal.subject if principal is not ANONYMOUS else f"address:{client}"
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
        declared = {p.name: p for p in operation.parameters if p.location == "query"}
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
        defaults = {p.name: p.default for p in declared.values() if p.default is not None}
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

    async def body(self, request: Request, operation: Operation) -> Any:
        raw = await request.body()
        if operation.body_schema_uri is None:
            if raw:
                raise Problem("invalid-request", "This operation takes no request body.")
            return None
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
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

    def reply_response(self, reply: Reply, operation: Operation, request_id: str) -> Response:
        if self.node.config.validate_responses:
            self.check_reply(reply, operation)
        body = b"" if reply.body is None else _encode(reply.body)
        headers = {**reply.headers, "X-Request-Id": request_id}
        return Response(
            body, status_code=reply.status, headers=headers, media_type=reply.media_type
        )

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

    def problem_response(self, problem: Problem, request: Request, request_id: str) -> Response:
        body = self.node.problems.body(problem, request.url.path, request_id)
        headers = {**problem.headers, "X-Request-Id": request_id}
        return Response(
            _encode(body),
            status_code=body["status"],
            headers=headers,
            media_type="application/problem+json",
        )


_STRING_SHAPE = {"pattern", "minLength", "maxLength"}


def _malformed_identifier(error: ValidationError, patterns: dict[str, str]) -> bool:
    """identification.md §6: a string that is not a well-formed identifier, whichever of the
    identifier's keywords (length or pattern) noticed first, is malformed-identifier."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    return error.validator in _STRING_SHAPE and schema.get("pattern") in patterns


def _check_accept(request: Request) -> None:
    accept = request.headers.get("accept")
    if not accept:
        return
    ranges = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    acceptable = {"*/*", "application/*", *_JSON_MEDIA}
    if not acceptable & set(ranges):
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


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
