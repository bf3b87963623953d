"""schemathesis against every role of the reference node: all checks, every phase, authenticated.

This is the run `st run spec/openapi.yaml --url ... -c all --phases
examples,coverage,fuzzing,stateful` makes: the same engine (`schemathesis.engine.from_schema`),
driven in process against a node served by uvicorn on 127.0.0.1, restricted to the operations
whose `x-roles` name the node's role. A failure is reported as `st run` reports it: the check,
the node's answer and the request as curl.

The budget is bounded by counts, never by time (TOOLING.md: `--max-time` is spent, not capped):

- `deterministic`: Hypothesis derandomised, so every run sends the same requests and a red run
  is reproducible from its report alone (the seed is unused in that mode).
- `max-examples` 15 per operation in the fuzzing phase, enough to exercise each operation's
  positive and negative strategies once or twice; the coverage phase adds its own boundary
  cases whatever the budget (it finds most of the boundary bugs).
- stateful: 15 scenarios of at most 6 steps (schemathesis' default step count), which walk the
  spec's links: register -> read -> update -> revoke, select -> task -> cancel.
- `no-shrink`: shrinking costs more than the whole run, and the report already shows the curl.
- one worker: the node's store is SQLite, and parallel requests add only interleavings that a
  report cannot show.
The three roles take just under two minutes on two cores, most of it in the coverage phase of
the federation operations, whose bodies are large.

What schemathesis cannot know about this spec, and how the test tells it (never by switching a
check off):

- Rules JSON Schema cannot state (spec/identification.md: check characters, code lists,
  node-type rules; "verified by code", say the identifier schemas). A generated identifier is
  almost never valid, so every positive case with one would be a 400 and no handler would run.
  Positive cases get their identifiers made valid (`_valid_identifier`, with the harness's own
  check-character routines, not the node's), so positive_data_acceptance judges real requests.
- CPIN-CORE-014: a cursor the node did not issue is 400. No generated cursor was issued, so
  positive cases send none; negative cases still do.
- listResources: minPeak "Requires `precision`" (CPIN-AGG-007; otherwise 422), a dependency
  between query parameters OpenAPI cannot state. Positive cases that give minPeak alone drop it.
- Semantic rules of an operation (a window that ends before it starts, CPIN-MON-001; a total
  that is not the sum of its groups, CPIN-AGG-001). A 400 to a schema-valid request is excused
  only when every error it lists names, in `rule`, a requirement of that operation
  (`x-requirements`); any other rejection of valid data still fails.
- State, not data: 410 (a revoked identifier) and 412 (an If-Match that is not the current
  ETag) join 404 and 409, which schemathesis already expects for valid data.
- No upstream exists here: node-to-node calls are refused at once, and the node answers the
  documented 502 upstream-unavailable; not_a_server_error accepts 502 and 504 (still only where
  documented: status_code_conformance keeps judging them).
- schemathesis 4.32 sometimes labels a request positive that its own validator finds invalid
  (a coverage case whose body is a negative placeholder; If-None-Match '0'); positive cases are
  re-judged by schemathesis before they are sent.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData

from conformance.identifiers import mod37_36, uscc_check
from reference_impl.app import create_app
from reference_impl.node import NodeConfig
from spec import ROOT, default

from .conftest import NODE_CODES, PARENTS

SPEC = default()
ROLES = ("national", "regional", "industry")
CLIENT_ID = "schemathesis"
# Far above what a run sends (and the largest service-info allows): a 429 is documented, but
# it would hide what the node does with the requests it refused.
RATE_LIMIT = 1_000_000
BUDGET: dict[str, Any] = {
    "generation": {"deterministic": True, "max-examples": 15, "no-shrink": True},
    "workers": 1,
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": True, "max-steps": 6, "generation": {"max-examples": 15}},
    },
    "checks": {
        # No upstream exists in this run: the documented 502/504 of a node-to-node call.
        "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "502", "504"]},
        # An absent If-Match is 428 precondition-required (RFC 6585), as every PATCH documents.
        "missing_required_header": {
            "expected-statuses": ["400", "401", "403", "406", "415", "422", "428"]
        },
        # 410 (revoked) and 412 (stale If-Match) answer state, not data, like 404 and 409.
        "positive_data_acceptance": {
            "expected-statuses": [
                *("2xx", "3xx", "401", "403", "404", "409", "410", "412", "429", "5xx")
            ]
        },
    },
}

# Per-operation settings (`[[operations]]` of schemathesis.toml), each with its reason.
OPERATIONS: list[dict[str, Any]] = [
    # listPeers gives each peer's status in the national registry, unreachable in this run; the
    # spec documents 503 for it, not the 502 of the other operations that need the federation.
    {
        "include-operation-id": "listPeers",
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
    },
]
# Rules a node applies to an operation whose x-requirements do not list them yet (reported as a
# spec gap): pushMetrics refuses a throughput unit that does not suit the precision, which only
# getRollup's CPIN-MON-014 states.
_UNLISTED_RULES = {"pushMetrics": {"CPIN-MON-014"}}

_OPERATIONS = {op["operationId"]: op for _, _, op in SPEC.operations()}
_IDS = SPEC.load("schemas/identifiers.json")["$defs"]
_NODE_CODE = re.compile(_IDS["NodeCode"]["pattern"])
_RESOURCE_ID = re.compile(_IDS["ResourceId"]["pattern"])
_USCC = re.compile(_IDS["Uscc"]["pattern"])
_TYPE_RULES = {e["x-node-type"]: e["x-rules"] for e in SPEC.codelist("node-role")}
_MAINLAND = sorted(set(SPEC.codes("province")) - {"00"})
_DIVISIONS = {e["const"]: e["x-section"] for e in SPEC.codelist("industry-division")}
_RESOURCE_TYPES = set(SPEC.codes("resource-type"))


@dataclass
class Served:
    role: str
    base_url: str
    token: str
    secret: str


def _bound_socket() -> socket.socket:
    """A loopback TCP socket on a free port. IPPROTO_TCP is named, not left 0: asyncio sets
    TCP_NODELAY only on sockets that say so, and without it every answer waited 40 ms for a
    delayed ACK (Nagle), which tripled the run time."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(params=ROLES)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """A node of the role, served on a free loopback port until the test ends.

    Its upstream is a port bound but never listening, so node-to-node calls are refused at once
    and answered with the documented 502 (no federation exists in this test)."""
    role: str = request.param
    listener, dead_upstream = _bound_socket(), _bound_socket()
    secret = secrets.token_urlsafe(24)
    config = NodeConfig(
        role=role,
        data_dir=tmp_path / role,
        port=listener.getsockname()[1],
        node_code=NODE_CODES[role],
        parent=PARENTS.get(role),
        upstream=f"http://127.0.0.1:{dead_upstream.getsockname()[1]}" if role in PARENTS else None,
        rate_limit_per_minute=RATE_LIMIT,
        clients=[(CLIENT_ID, secret, set(SPEC.scopes))],
    )
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the node did not start"
        time.sleep(0.02)
    token, _ = app.state.node.security.issue(CLIENT_ID, set(SPEC.scopes))
    try:
        yield Served(role, config.base_url, token, secret)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
        dead_upstream.close()


def _schema(served: Served) -> Any:
    """The spec, as schemathesis loads it, for the operations of the node's role."""
    config = SchemathesisConfig.from_dict(
        {
            **BUDGET,
            "base-url": served.base_url,
            "operations": OPERATIONS,
            "auth": {
                "openapi": {
                    "oauth2": {"bearer": served.token},
                    "clientBasic": {"username": CLIENT_ID, "password": served.secret},
                }
            },
        }
    )
    config.projects.default.checks.update(included_check_names=["all"])  # `-c all`
    schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml", config=config)
    _keep_role(schema.raw_schema, served.role)
    schema.hook(map_case)
    schema.hook(before_add_examples)
    schema.hook(filter_failure)
    return schema


def _keep_role(document: dict[str, Any], role: str) -> None:
    """The document this role's node serves (getOpenApiDocument: "a node may omit the
    operations its role does not serve"): operations of other roles leave their path items, so
    schemathesis tests only the role's and judges `Allow` by the methods the node serves. A
    filter (`schema.include`) would select the same operations but keep the other methods in
    the path items."""
    for path, item in list(document["paths"].items()):
        for method in [m for m, op in item.items() if isinstance(op, dict) and "x-roles" in op]:
            if role not in item[method]["x-roles"]:
                del item[method]
        if not any(isinstance(op, dict) and "x-roles" in op for op in item.values()):
            del document["paths"][path]


# -- hooks: what the spec says and JSON Schema cannot --------------------------------------


def map_case(context: Any, case: Any) -> Any:
    """A positive case made valid by the rules schemas cannot state, then re-judged."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    case.path_parameters = {k: _valid(v) for k, v in case.path_parameters.items()}
    case.query = {k: _valid(v) for k, v in case.query.items() if k != "cursor"}  # CPIN-CORE-014
    if "minPeak" in case.query and "precision" not in case.query:  # CPIN-AGG-007
        case.query = {k: v for k, v in case.query.items() if k != "minPeak"}
    if isinstance(case.body, dict | list):
        case.body = _valid(case.body)
    for location, component in meta.components.items():
        if component.mode.is_positive:
            meta.mark_dirty(location)  # schemathesis validates it again on the next read
    _ = case.meta
    return case


def before_add_examples(context: Any, examples: list[Any]) -> None:
    """The examples phase does not run map_case; the spec's examples get the same treatment."""
    examples[:] = [map_case(context, case) for case in examples]


def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a 400 to valid data whose errors all name, in `rule`, a
    requirement of this operation: a rule the schema cannot state, applied as the spec says."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return True
    operation_id = case.operation.definition.raw["operationId"]
    rules = {*_OPERATIONS[operation_id]["x-requirements"], *_UNLISTED_RULES.get(operation_id, ())}
    cited = {error.get("rule") for error in errors}
    return not errors or not cited <= rules


def _valid(value: Any) -> Any:
    """`value` with every identifier in it made valid, keeping what was valid already."""
    if isinstance(value, dict):
        return {k: _valid(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid(v) for v in value]
    return _valid_identifier(value) if isinstance(value, str) else value


def _valid_identifier(text: str) -> str:
    if _NODE_CODE.fullmatch(text):
        return _valid_node_code(text)
    if _RESOURCE_ID.fullmatch(text):
        res_type = text[10:13] if text[10:13] in _RESOURCE_TYPES else "GPU"
        data = _valid_node_code(text[:9]) + res_type + text[14:22]
        return f"{data[:9]}-{res_type}-{text[14:22]}{mod37_36(data)}"
    if _USCC.fullmatch(text):
        return text[:17] + uscc_check(text[:17])
    return text


def _valid_node_code(code: str) -> str:
    """identification.md §3-5: province and industry as the node type's rules say (the
    generated ones when they fit), then the check character."""
    rules = _TYPE_RULES[code[0]]
    province, industry = code[1:3], code[3:6]
    if rules["province"] == "national":
        province = "00"
    elif province not in _MAINLAND:
        province = _MAINLAND[0]
    if rules["industry"] == "none":
        industry = "000"
    elif _DIVISIONS.get(industry[1:]) != industry[0]:
        division = next(iter(_DIVISIONS))
        industry = _DIVISIONS[division] + division
    data = code[0] + province + industry + code[6:8]
    return data + mod37_36(data)


# -- the run ---------------------------------------------------------------------------------


def _describe(recorder: Any, case_id: str, info: Any) -> str:
    """One failure as `st run` shows it: check, message, the answer, and curl to replay it."""
    failure = info.failure
    interaction = recorder.interactions.get(case_id)
    answer = ""
    if interaction is not None and interaction.response is not None:
        response = interaction.response
        answer = f"[{response.status_code}] {response.content[:600].decode(errors='replace')}\n"
    return (
        f"{failure.operation}: [{failure.code}] {failure.title}\n{failure.message}\n"
        f"{answer}{info.code_sample}"
    )


def test_schemathesis_reports_no_failure(served: Served) -> None:
    problems: list[str] = []
    ran: set[str] = set()
    for event in from_schema(_schema(served)).execute():
        if isinstance(event, events.ScenarioFinished):
            ran.add(str(event.phase))
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        problems.append(_describe(event.recorder, case_id, check.failure_info))
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: error\n{event.info.format()}")
        elif isinstance(event, events.FatalError):
            problems.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            problems.extend(str(failure) for failure in event.failures)
    unique = sorted(set(problems))
    assert not unique, f"{len(unique)} failures:\n\n" + "\n\n".join(unique)
    assert ran >= {"examples", "coverage", "fuzzing", "stateful"}, f"phases that ran: {ran}"
