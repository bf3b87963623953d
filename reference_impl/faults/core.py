"""Faults of the core class: service-info, errors, request ids, pagination, formats."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from reference_impl.calls import Call, Handler, Reply, decode_cursor, encode_cursor
from reference_impl.faults import FaultSite, fault
from reference_impl.faults._core_tools import (
    Answer,
    Sent,
    problem_answer,
    rewrite_exchange,
    route_pattern,
    wrap_call,
    wrap_reply,
)
from reference_impl.faults._transport import rewrite_headers
from reference_impl.problems import Problem

LISTS = [
    "listAuditEvents",
    "listNodes",
    "listIdentifiers",
    "listResources",
    "listTasks",
    "queryMetrics",
    "listPeers",
]
_PROBLEM = "application/problem+json"
_UTC_TIME = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8})(\.[0-9]+)?Z$")


def _operations(site: FaultSite) -> list[tuple[str, str, dict[str, Any]]]:
    return list(site.node.spec.operations())


def _query(sent: Sent) -> list[tuple[str, str]]:
    return parse_qsl(sent.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _with_query(sent: Sent, pairs: list[tuple[str, str]]) -> Sent:
    sent.scope = {**sent.scope, "query_string": urlencode(pairs).encode("latin-1")}
    return sent


def _problem_body(answer: Answer) -> dict[str, Any] | None:
    if answer.media != _PROBLEM:
        return None
    document = answer.json()
    return document if isinstance(document, dict) else None


# --- service-info, health, OpenAPI document, versioning -----------------------------------


def _service_info_change(site: FaultSite, change: Any) -> None:
    def changed(call: Call, reply: Reply) -> Reply:
        change(reply.body)
        return reply

    wrap_reply(site, ["getServiceInfo"], changed)


@fault(
    "service-info-node-code-check",
    breaks=["CPIN-CORE-002"],
    summary="service-info reports the NodeCode with a wrong check character",
)
def service_info_node_code_check(site: FaultSite) -> None:
    def wrong(body: dict[str, Any]) -> None:
        code = body["nodeCode"]
        body["nodeCode"] = code[:8] + ("A" if code[8] != "A" else "B")

    _service_info_change(site, wrong)


@fault(
    "spec-version-unpublished",
    breaks=["CPIN-CORE-003"],
    summary="service-info claims a specVersion of major 1 that was never published",
)
def spec_version_unpublished(site: FaultSite) -> None:
    major, minor, _ = site.node.spec.version.split(".", 2)
    unpublished = f"{major}.{int(minor) + 50}.0"
    _service_info_change(site, lambda body: body.update(specVersion=unpublished))


@fault(
    "service-info-class-missing",
    breaks=["CPIN-CORE-004"],
    summary="service-info leaves the required class monitoring out of `classes`",
)
def service_info_class_missing(site: FaultSite) -> None:
    def drop(body: dict[str, Any]) -> None:
        body["classes"] = [c for c in body["classes"] if c != "monitoring"]

    _service_info_change(site, drop)


@fault(
    "service-info-option-missing",
    breaks=["CPIN-CORE-004"],
    roles=["industry", "national"],
    summary="service-info lists no options although the node declares one",
)
def service_info_option_missing(site: FaultSite) -> None:
    _service_info_change(site, lambda body: body.update(options=[]))


@fault(
    "listed-class-not-served",
    breaks=["CPIN-CORE-004"],
    summary="the monitoring status operation of a listed class answers 404",
)
def listed_class_not_served(site: FaultSite) -> None:
    def missing(sent: Sent) -> Sent | Answer:
        if sent.path == "/v1/monitoring/status":
            return problem_answer(404, "not-found", "Not found", sent.path)
        return sent

    site.wrap_app(rewrite_exchange(request=missing))


@fault(
    "health-requires-auth",
    breaks=["CPIN-CORE-005"],
    summary="GET /v1/health answers 401 without an access token",
)
def health_requires_auth(site: FaultSite) -> None:
    def guarded(sent: Sent) -> Sent | Answer:
        if sent.path == "/v1/health" and "authorization" not in sent.headers:
            return problem_answer(401, "unauthorized", "Unauthorized", sent.path)
        return sent

    site.wrap_app(rewrite_exchange(request=guarded))


@fault(
    "health-status-not-a-code",
    breaks=["CPIN-CORE-005"],
    summary="health reports status `healthy`, not a code of the health-state list",
)
def health_status_not_a_code(site: FaultSite) -> None:
    def renamed(call: Call, reply: Reply) -> Reply:
        reply.body["status"] = "healthy"
        return reply

    wrap_reply(site, ["getHealth"], renamed)


@fault(
    "openapi-not-served",
    breaks=["CPIN-CORE-027"],
    summary="GET /v1/openapi.json answers 404: the node publishes no OpenAPI document",
)
def openapi_not_served(site: FaultSite) -> None:
    def missing(sent: Sent) -> Sent | Answer:
        if sent.path == "/v1/openapi.json":
            return problem_answer(404, "not-found", "Not found", sent.path)
        return sent

    site.wrap_app(rewrite_exchange(request=missing))


@fault(
    "openapi-stale-version",
    breaks=["CPIN-CORE-027"],
    summary="the served OpenAPI document says info.version 0.9.0, not the specVersion",
)
def openapi_stale_version(site: FaultSite) -> None:
    def stale(call: Call, reply: Reply) -> Reply:
        reply.body = {**reply.body, "info": {**reply.body["info"], "version": "0.9.0"}}
        return reply

    wrap_reply(site, ["getOpenApiDocument"], stale)


@fault(
    "version-prefix-ignored",
    breaks=["CPIN-CORE-028"],
    summary="a proxy maps /v2/... (any /vN prefix) onto /v1/... instead of answering 404",
)
def version_prefix_ignored(site: FaultSite) -> None:
    def mapped(sent: Sent) -> Sent | Answer:
        path = re.sub(r"^/v[0-9]+/", "/v1/", sent.path)
        sent.scope = {**sent.scope, "path": path, "raw_path": path.encode()}
        return sent

    site.wrap_app(rewrite_exchange(request=mapped))


# --- problem details ------------------------------------------------------------------------


@fault(
    "problem-json-missing",
    breaks=["CPIN-CORE-006"],
    summary="errors are sent as application/json instead of application/problem+json",
)
def problem_json_missing(site: FaultSite) -> None:
    def plain(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [
            (name, b"application/json" if value == b"application/problem+json" else value)
            for name, value in headers
        ]

    site.wrap_app(rewrite_headers(plain))


def _problems(site: FaultSite, change: Any) -> None:
    def changed(sent: Sent, answer: Answer) -> Answer:
        body = _problem_body(answer)
        if body is not None:
            change(answer, body)
            answer.set_json(body)
        return answer

    site.wrap_app(rewrite_exchange(response=changed))


@fault(
    "problem-status-always-400",
    breaks=["CPIN-CORE-007"],
    summary="every problem body says status 400, whatever the HTTP status",
)
def problem_status_always_400(site: FaultSite) -> None:
    _problems(site, lambda answer, body: body.update(status=400))


@fault(
    "problem-type-about-blank",
    breaks=["CPIN-CORE-008"],
    summary="problems carry type about:blank instead of the spec's problem-type URI",
)
def problem_type_about_blank(site: FaultSite) -> None:
    _problems(site, lambda answer, body: body.update(type="about:blank"))


@fault(
    "unsupported-media-type-as-400",
    breaks=["CPIN-CORE-008", "CPIN-CORE-021"],
    summary="an unsupported-media-type problem is answered with status 400",
)
def unsupported_media_type_as_400(site: FaultSite) -> None:
    def downgraded(answer: Answer, body: dict[str, Any]) -> None:
        if answer.status == 415:
            answer.status = 400
            body["status"] = 400

    _problems(site, downgraded)


@fault(
    "validation-errors-422",
    breaks=["CPIN-CORE-025", "CPIN-CORE-008", "CPIN-CORE-011"],
    summary="invalid requests are answered 422 (a framework default), never documented",
)
def validation_errors_422(site: FaultSite) -> None:
    def unprocessable(answer: Answer, body: dict[str, Any]) -> None:
        if answer.status == 400:
            answer.status = 422
            body["status"] = 422

    _problems(site, unprocessable)


@fault(
    "malformed-json-500",
    breaks=["CPIN-CORE-020"],
    summary="a request body that is not well-formed JSON crashes the node: 500",
)
def malformed_json_500(site: FaultSite) -> None:
    def crash(sent: Sent) -> Sent | Answer:
        if sent.media == "application/json":
            try:
                json.loads(sent.body.decode("utf-8"))
            except ValueError:
                return problem_answer(500, "internal-error", "Internal error", sent.path)
        return sent

    site.wrap_app(rewrite_exchange(request=crash))


# --- request ids ------------------------------------------------------------------------------


def _request_id(site: FaultSite, change: Any) -> None:
    def changed(sent: Sent, answer: Answer) -> Answer:
        answer.set_header("x-request-id", change(sent, answer))
        return answer

    site.wrap_app(rewrite_exchange(response=changed))


@fault(
    "request-id-not-echoed-on-errors",
    breaks=["CPIN-CORE-009"],
    summary="error answers carry a new X-Request-Id instead of the client's",
)
def request_id_not_echoed_on_errors(site: FaultSite) -> None:
    _request_id(
        site,
        lambda sent, answer: (
            str(uuid.uuid4()) if answer.status >= 400 else answer.header("x-request-id")
        ),
    )


@fault(
    "request-id-truncated",
    breaks=["CPIN-CORE-009"],
    summary="X-Request-Id is echoed cut to 64 characters (a fixed-size column)",
)
def request_id_truncated(site: FaultSite) -> None:
    _request_id(site, lambda sent, answer: (answer.header("x-request-id") or "")[:64])


@fault(
    "request-id-not-minted",
    breaks=["CPIN-CORE-010"],
    summary="a request without X-Request-Id gets none back",
)
def request_id_not_minted(site: FaultSite) -> None:
    _request_id(site, lambda sent, answer: sent.headers.get("x-request-id"))


@fault(
    "request-id-constant",
    breaks=["CPIN-CORE-010"],
    summary="every minted X-Request-Id is the same value",
)
def request_id_constant(site: FaultSite) -> None:
    constant = str(uuid.UUID(int=0))
    _request_id(site, lambda sent, answer: sent.headers.get("x-request-id", constant))


# --- pagination -------------------------------------------------------------------------------


def _list_queries(site: FaultSite, change: Any) -> None:
    lists = [
        route_pattern(path)
        for path, method, op in _operations(site)
        if method == "GET" and op["operationId"] in LISTS
    ]

    def changed(sent: Sent) -> Sent | Answer:
        if sent.method == "GET" and any(p.match(sent.path) for p in lists):
            return _with_query(sent, change(_query(sent)))
        return sent

    site.wrap_app(rewrite_exchange(request=changed))


@fault(
    "page-size-over-limit-accepted",
    breaks=["CPIN-CORE-011"],
    summary="a limit above 100 is clamped to 100 instead of answering 400",
)
def page_size_over_limit_accepted(site: FaultSite) -> None:
    def clamped(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [
            (k, "100" if k == "limit" and v.isdigit() and int(v) > 100 else v) for k, v in pairs
        ]

    _list_queries(site, clamped)


@fault(
    "default-page-size-50",
    breaks=["CPIN-CORE-011"],
    summary="lists without limit answer pages of 50, not 20",
)
def default_page_size_50(site: FaultSite) -> None:
    def defaulted(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return pairs if any(k == "limit" for k, _ in pairs) else [*pairs, ("limit", "50")]

    _list_queries(site, defaulted)


@fault(
    "page-overfull",
    breaks=["CPIN-CORE-011"],
    summary="a list page holds limit + 1 items (off by one)",
)
def page_overfull(site: FaultSite) -> None:
    async def one_more(handler: Handler, call: Call) -> Reply:
        call.query["limit"] = int(call.query["limit"]) + 1
        return await handler(call)

    wrap_call(site, LISTS, one_more)


def _audit_cursor(site: FaultSite, change: Any) -> None:
    def changed(call: Call, reply: Reply) -> Reply:
        change(call, reply.body)
        return reply

    wrap_reply(site, ["listAuditEvents"], changed)


@fault(
    "next-cursor-on-last-page",
    breaks=["CPIN-CORE-012"],
    summary="the audit trail gives nextCursor on every full page, the last one included",
)
def next_cursor_on_last_page(site: FaultSite) -> None:
    def always(call: Call, body: dict[str, Any]) -> None:
        if len(body["items"]) == call.query["limit"] and "nextCursor" not in body:
            body["nextCursor"] = encode_cursor("0")

    _audit_cursor(site, always)


@fault(
    "page-overlap",
    breaks=["CPIN-CORE-013"],
    summary="the audit trail's nextCursor points one item back: each page repeats one",
)
def page_overlap(site: FaultSite) -> None:
    def shifted(call: Call, body: dict[str, Any]) -> None:
        if "nextCursor" in body:
            position = decode_cursor(body["nextCursor"]) or "0"
            body["nextCursor"] = encode_cursor(str(int(position) + 1))

    _audit_cursor(site, shifted)


@fault(
    "page-gap",
    breaks=["CPIN-CORE-013"],
    summary="the audit trail drops the last item of every page that has a next one",
)
def page_gap(site: FaultSite) -> None:
    def dropped(call: Call, body: dict[str, Any]) -> None:
        if "nextCursor" in body:
            body["items"] = body["items"][:-1]

    _audit_cursor(site, dropped)


@fault(
    "invalid-cursor-restarts",
    breaks=["CPIN-CORE-014"],
    summary="a cursor the node did not issue is taken as the start of the list (200)",
)
def invalid_cursor_restarts(site: FaultSite) -> None:
    async def lenient(handler: Handler, call: Call) -> Reply:
        try:
            return await handler(call)
        except Problem as refusal:
            if refusal.slug != "invalid-request" or "cursor" not in call.query:
                raise
            del call.query["cursor"]
            return await handler(call)

    wrap_call(site, LISTS, lenient)


# --- formats ----------------------------------------------------------------------------------


@fault(
    "audit-times-local",
    breaks=["CPIN-CORE-015"],
    summary="audit events give their time in Beijing time (+08:00), not UTC with Z",
)
def audit_times_local(site: FaultSite) -> None:
    beijing = timezone(timedelta(hours=8))

    def local(call: Call, reply: Reply) -> Reply:
        for event in reply.body["items"]:
            if match := _UTC_TIME.match(event["time"]):
                instant = datetime.fromisoformat(match.group(1) + "+00:00")
                event["time"] = instant.astimezone(beijing).isoformat()
        return reply

    wrap_reply(site, ["listAuditEvents"], local)


@fault(
    "query-timestamp-not-validated",
    breaks=["CPIN-CORE-016"],
    summary="a `since` that is not an RFC 3339 date-time is ignored instead of refused",
)
def query_timestamp_not_validated(site: FaultSite) -> None:
    def lenient(sent: Sent) -> Sent | Answer:
        pairs = _query(sent)
        kept = [(k, v) for k, v in pairs if k != "since" or _UTC_TIME.match(v)]
        return _with_query(sent, kept) if kept != pairs else sent

    site.wrap_app(rewrite_exchange(request=lenient))


def _json_body(site: FaultSite, path: str, change: Any) -> None:
    def changed(sent: Sent) -> Sent | Answer:
        if sent.method != "POST" or sent.path != path or sent.media != "application/json":
            return sent
        try:
            document = json.loads(sent.body)
        except ValueError:
            return sent
        sent.body = json.dumps(change(document)).encode()
        sent.headers["content-length"] = str(len(sent.body))
        return sent

    site.wrap_app(rewrite_exchange(request=changed))


@fault(
    "unit-case-insensitive",
    breaks=["CPIN-CORE-017"],
    summary="units are matched case-insensitively: `tflops` is taken as TFLOPS",
)
def unit_case_insensitive(site: FaultSite) -> None:
    units = {code.lower(): code for code in site.node.spec.codes("unit")}

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (units.get(v.lower(), v) if k == "unit" and isinstance(v, str) else canonical(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [canonical(v) for v in value]
        return value

    for path in ("/v1/selections", "/v1/metrics"):
        _json_body(site, path, canonical)


def _demand_members(site: FaultSite) -> dict[str, Any]:
    properties: dict[str, Any] = site.node.spec.load("schemas/demand.json")["properties"]
    return properties


@fault(
    "unknown-member-ignored",
    breaks=["CPIN-CORE-018"],
    summary="unknown members of a selection demand are dropped silently (lenient parser)",
)
def unknown_member_ignored(site: FaultSite) -> None:
    members = _demand_members(site)

    def known(demand: Any) -> Any:
        if not isinstance(demand, dict):
            return demand
        kept = {k: v for k, v in demand.items() if k in members}
        for name in ("minPeak", "weights"):
            if isinstance(kept.get(name), dict):
                inner = set(members[name].get("properties", {}))
                kept[name] = {k: v for k, v in kept[name].items() if k in inner}
        return kept

    _json_body(site, "/v1/selections", known)


@fault(
    "type-coercion",
    breaks=["CPIN-CORE-019"],
    summary='selection demands coerce JSON types: "1" becomes 1, false becomes 0',
)
def type_coercion(site: FaultSite) -> None:
    def number(value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value):
            return json.loads(value)
        return value

    def coerced(demand: Any) -> Any:
        if not isinstance(demand, dict):
            return demand
        for name in ("acceleratorCount", "limit", "minAcceleratorMemoryGiB"):
            if name in demand:
                demand[name] = number(demand[name])
        for name in ("minPeak", "weights"):
            if isinstance(demand.get(name), dict):
                demand[name] = {
                    k: (v if k == "unit" else number(v)) for k, v in demand[name].items()
                }
        if isinstance(demand.get("regions"), list):
            demand["regions"] = [str(r) for r in demand["regions"]]
        return demand

    _json_body(site, "/v1/selections", coerced)


@fault(
    "media-type-ignored",
    breaks=["CPIN-CORE-021"],
    summary="request bodies are parsed as JSON whatever their Content-Type",
)
def media_type_ignored(site: FaultSite) -> None:
    def as_json(sent: Sent) -> Sent | Answer:
        if sent.method == "POST" and sent.body and sent.path != "/v1/oauth/token":
            sent.headers["content-type"] = "application/json"
        return sent

    site.wrap_app(rewrite_exchange(request=as_json))


@fault(
    "openapi-document-gbk",
    breaks=["CPIN-CORE-029"],
    summary="the OpenAPI document is sent in GBK (charset=GBK), not UTF-8",
)
def openapi_document_gbk(site: FaultSite) -> None:
    def encoded(sent: Sent, answer: Answer) -> Answer:
        if sent.path == "/v1/openapi.json" and answer.media == "application/json":
            answer.body = answer.body.decode("utf-8").encode("gbk", errors="replace")
            answer.set_header("content-type", f"{answer.media}; charset=GBK")
        return answer

    site.wrap_app(rewrite_exchange(response=encoded))


@fault(
    "gzip-unlabelled",
    breaks=["CPIN-CORE-033"],
    summary="the OpenAPI document is gzip-compressed for clients that admit gzip, unlabelled",
)
def gzip_unlabelled(site: FaultSite) -> None:
    def compressed(sent: Sent, answer: Answer) -> Answer:
        if sent.path == "/v1/openapi.json" and "gzip" in sent.headers.get("accept-encoding", ""):
            answer.body = gzip.compress(answer.body)
        return answer

    site.wrap_app(rewrite_exchange(response=compressed))


# --- routing and documented answers -----------------------------------------------------------


@fault(
    "allow-header-missing", breaks=["CPIN-CORE-022"], summary="405 answers carry no Allow header"
)
def allow_header_missing(site: FaultSite) -> None:
    def stripped(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in headers if status != 405 or k.lower() != b"allow"]

    site.wrap_app(rewrite_headers(stripped))


@fault(
    "allow-lists-spec-methods",
    breaks=["CPIN-CORE-022", "CPIN-CORE-023"],
    roles=["national"],
    summary="Allow lists every method the spec defines at the path, also other roles' ones",
)
def allow_lists_spec_methods(site: FaultSite) -> None:
    methods: dict[str, set[str]] = {}
    for path, method, _ in _operations(site):
        methods.setdefault(path, set()).add(method)
    patterns = {route_pattern(path): found for path, found in methods.items()}

    def widened(sent: Sent, answer: Answer) -> Answer:
        if answer.status == 405:
            found = next((m for p, m in patterns.items() if p.match(sent.path)), None)
            if found:
                answer.set_header("allow", ", ".join(sorted(found)))
        return answer

    site.wrap_app(rewrite_exchange(response=widened))


@fault(
    "operation-outside-role-served",
    breaks=["CPIN-CORE-023"],
    roles=["industry"],
    summary="the node answers operations its role does not serve (GET /v1/metrics: 200)",
)
def operation_outside_role_served(site: FaultSite) -> None:
    role = site.node.config.role
    outside = [
        (route_pattern(path), method)
        for path, method, op in _operations(site)
        if role not in op.get("x-roles", [])
    ]

    def served(sent: Sent) -> Sent | Answer:
        if any(p.match(sent.path) and m == sent.method for p, m in outside):
            answer = Answer(200, [], b"")
            answer.set_json({"items": []}, media="application/json")
            return answer
        return sent

    site.wrap_app(rewrite_exchange(request=served))


@fault(
    "unknown-path-200",
    breaks=["CPIN-CORE-024"],
    summary="paths the spec does not define answer 200 with an empty object (a catch-all)",
)
def unknown_path_200(site: FaultSite) -> None:
    def caught(sent: Sent, answer: Answer) -> Answer:
        body = _problem_body(answer)
        if (
            answer.status == 404
            and body
            and str(body.get("detail", "")).endswith("is not an operation of this node.")
        ):
            answer.status = 200
            answer.set_json({}, media="application/json")
        return answer

    site.wrap_app(rewrite_exchange(response=caught))


@fault(
    "list-total-member",
    breaks=["CPIN-CORE-026"],
    summary="list pages carry an undocumented `total` member",
)
def list_total_member(site: FaultSite) -> None:
    def counted(call: Call, reply: Reply) -> Reply:
        reply.body["total"] = len(reply.body["items"])
        return reply

    wrap_reply(site, LISTS, counted)


# --- SHOULDs ----------------------------------------------------------------------------------


@fault("location-missing", breaks=["CPIN-CORE-030"], summary="201 answers carry no Location header")
def location_missing(site: FaultSite) -> None:
    def stripped(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in headers if k.lower() != b"location"]

    site.wrap_app(rewrite_headers(stripped))


@fault(
    "unknown-query-ignored",
    breaks=["CPIN-CORE-031"],
    summary="query parameters an operation does not define are ignored",
)
def unknown_query_ignored(site: FaultSite) -> None:
    declared: list[tuple[re.Pattern[str], str, set[str]]] = []
    for path, method, op in _operations(site):
        names = {
            p.get("name", p.get("$ref", "").rsplit("/", 1)[-1].lower())
            for p in op.get("parameters", [])
        }
        declared.append((route_pattern(path), method, names))

    def ignored(sent: Sent) -> Sent | Answer:
        names = next((n for p, m, n in declared if p.match(sent.path) and m == sent.method), None)
        if names is None:
            return sent
        return _with_query(sent, [(k, v) for k, v in _query(sent) if k in names])

    site.wrap_app(rewrite_exchange(request=ignored))


@fault(
    "accept-ignored",
    breaks=["CPIN-CORE-032"],
    summary="the Accept header is ignored: JSON is sent whatever the client accepts",
)
def accept_ignored(site: FaultSite) -> None:
    def anything(sent: Sent) -> Sent | Answer:
        sent.headers.pop("accept", None)
        return sent

    site.wrap_app(rewrite_exchange(request=anything))
