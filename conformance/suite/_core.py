"""Helpers of the core class: the operations a role serves (read from spec/openapi.yaml),
example path values, the documented answer of an operation, and walks over response bodies."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conformance.checks import PROBLEM_MEDIA, Contract, body_of
from conformance.http import NodeClient, basic_authorization
from conformance.identifiers import mod37_36
from spec import ID_BASE, Spec

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PARAMETER = re.compile(r"\{([^}]+)\}")
_RFC3339_UTC = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z$"
)
_LOOKS_LIKE_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")
UNKNOWN_NODE_CODE_BODY = "R6500099"  # Xinjiang, sequence 99: a NodeCode no test registers


@dataclass(frozen=True)
class SpecOperation:
    operation_id: str
    method: str
    path: str
    roles: tuple[str, ...]
    tag: str
    definition: dict[str, Any]

    @property
    def has_path_parameters(self) -> bool:
        return "{" in self.path

    @property
    def secured(self) -> bool:
        return bool(self.definition.get("security", [{}]))

    @property
    def query_parameters(self) -> set[str]:
        return {p["name"] for p in self.parameters if p.get("in") == "query"}

    @property
    def parameters(self) -> list[dict[str, Any]]:
        return list(self.definition.get("x-resolved-parameters", []))

    @property
    def statuses(self) -> set[int]:
        return {int(status) for status in self.definition.get("responses", {})}

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and "limit" in self.query_parameters


class Operations:
    """spec/openapi.yaml as the suite needs it: operations by role and by path, and
    validators for what each operation documents per status."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.base = spec.uri("openapi.yaml")
        document = spec.openapi
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = spec.registry().with_resource(self.base, resource)
        self._resolver = self.registry.resolver(base_uri=self.base)
        self.all: list[SpecOperation] = []
        for path, method, op in spec.operations():
            definition = dict(op)
            definition["x-resolved-parameters"] = [
                self._resolve(p) for p in op.get("parameters", [])
            ]
            self.all.append(
                SpecOperation(
                    op["operationId"],
                    method.upper(),
                    path,
                    tuple(op.get("x-roles", [])),
                    op["tags"][0],
                    definition,
                )
            )
        self._validators: dict[str, Draft202012Validator] = {}

    def _resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in item:
            return dict(self._resolver.lookup(item["$ref"]).contents)
        return item

    def served(self, role: str, classes: list[str] | None = None) -> list[SpecOperation]:
        return [
            op for op in self.all if role in op.roles and (classes is None or op.tag in classes)
        ]

    def not_served(self, role: str) -> list[SpecOperation]:
        return [op for op in self.all if role not in op.roles]

    def methods_at(self, path: str, role: str | None = None) -> set[str]:
        return {
            op.method for op in self.all if op.path == path and (role is None or role in op.roles)
        }

    def paths(self, role: str) -> list[str]:
        return sorted({op.path for op in self.served(role)})

    def answer_errors(self, op: SpecOperation, response: httpx.Response) -> list[str]:
        """What is wrong with `response` as an answer of `op` (CORE-025, CORE-026)."""
        where = f"{op.operation_id} ({op.method} {op.path}) {response.status_code}"
        documented = op.definition.get("responses", {}).get(str(response.status_code))
        if documented is None:
            listed = ", ".join(str(s) for s in sorted(op.statuses))
            return [f"{where}: the status is not documented (documented: {listed})"]
        pointer = f"{self.base}#/paths/{_escape(op.path)}/{op.method.lower()}/responses/" + str(
            response.status_code
        )
        if "$ref" in documented:
            pointer = f"{self.base}{documented['$ref']}"
            documented = self._resolve(documented)
        problems: list[str] = []
        for name, header in documented.get("headers", {}).items():
            at = f"{self.base}{header['$ref']}" if "$ref" in header else f"{pointer}/headers/{name}"
            header = self._resolve(header)
            value = response.headers.get(name)
            if value is None:
                if header.get("required"):
                    problems.append(f"{where}: header {name} is missing")
                continue
            kind = header.get("schema", {}).get("type")
            typed: Any = int(value) if kind == "integer" and value.isdigit() else value
            problems += [f"{where}: header {name}{m}" for m in self._errors(f"{at}/schema", typed)]
        content = documented.get("content", {})
        if content:
            media = response.headers.get("content-type", "").split(";")[0].strip()
            if media not in content:
                shown = media or "(none)"
                return [
                    *problems,
                    f"{where}: Content-Type {shown}, documented: {', '.join(content)}",
                ]
            try:
                body = response.json()
            except ValueError:
                return [*problems, f"{where}: the body is not JSON"]
            schema = f"{pointer}/content/{_escape(media)}/schema"
            problems += [f"{where}: body{m}" for m in self._errors(schema, body)]
        return problems

    def _errors(self, schema_uri: str, value: Any) -> list[str]:
        if schema_uri not in self._validators:
            self._validators[schema_uri] = Draft202012Validator(
                {"$ref": schema_uri},
                registry=self.registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
        found = sorted(
            self._validators[schema_uri].iter_errors(value), key=lambda e: list(e.absolute_path)
        )
        return [f" /{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in found[:3]]


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def node_code_with_check(body: str) -> str:
    return body + mod37_36(body)


def resource_id_under(node_code: str, res_type: str = "GPU", serial: str = "ZZZZZZZ9") -> str:
    """A well-formed ResourceId this node never issued (serial from the top of its range)."""
    return f"{node_code}-{res_type}-{serial}{mod37_36(node_code + res_type + serial)}"


def filled_path(op_path: str, node_code: str) -> str:
    """The path with well-formed values of records that do not exist."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "nodeCode":
            return node_code_with_check(UNKNOWN_NODE_CODE_BODY)
        if name in {"identifier", "resourceId"}:
            return resource_id_under(node_code)
        return str(uuid.uuid4())

    return _PARAMETER.sub(value, op_path)


def problem_flaws(response: httpx.Response, contract: Contract) -> list[str]:
    """CORE-006 and CORE-007 for one error answer: problem+json, the RFC 9457 members, its
    status equal to the HTTP status."""
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    media = response.headers.get("content-type", "").split(";")[0].strip()
    if media != PROBLEM_MEDIA:
        return [f"{where}: Content-Type {media or '(none)'}, the spec requires {PROBLEM_MEDIA}"]
    try:
        body = response.json()
    except ValueError:
        return [f"{where}: the body is not JSON"]
    flaws = [f"{where}: {m}" for m in contract.errors(body, "schemas/problem.json")]
    if isinstance(body, dict) and body.get("status") != response.status_code:
        flaws.append(f"{where}: problem status {body.get('status')!r} differs from the HTTP status")
    return flaws


def problem_type_flaw(response: httpx.Response, spec: Spec, expected: str) -> str | None:
    """CORE-008: the problem type the spec names for this condition, with its status."""
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    statuses = {e["const"]: int(e["x-status"]) for e in spec.codelist("problem-type")}
    try:
        body = body_of(response)
    except AssertionError as failure:
        return str(failure)
    given = body.get("type") if isinstance(body, dict) else None
    if given != f"{ID_BASE}problems/{expected}":
        return f"{where}: problem type {given!r}, the spec names {ID_BASE}problems/{expected}"
    if response.status_code != statuses[expected]:
        return f"{where}: problem type {expected} goes with status {statuses[expected]}"
    return None


def walk(value: Any, pointer: str = "") -> Iterator[tuple[str, str | None, Any]]:
    """(JSON pointer, member name, value) of every value in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{pointer}/{key}", key, item
            yield from walk(item, f"{pointer}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield f"{pointer}/{index}", None, item
            yield from walk(item, f"{pointer}/{index}")


def timestamp_flaws(document: Any) -> list[str]:
    """CORE-015: every value that is a date-time must be RFC 3339 in UTC with `Z`."""
    flaws = []
    for pointer, _, value in walk(document):
        if not isinstance(value, str) or not _LOOKS_LIKE_TIME.match(value):
            continue
        if not _RFC3339_UTC.match(value) or not _valid_instant(value):
            flaws.append(f"{pointer} = {value!r}")
    return flaws


def _valid_instant(value: str) -> bool:
    try:
        datetime.fromisoformat(value[:19])
    except ValueError:
        return False
    return True


def unit_flaws(document: Any, units: set[str]) -> list[str]:
    """CORE-017: every `unit` member holds a code of the unit code list."""
    return [
        f"{pointer} = {value!r}"
        for pointer, name, value in walk(document)
        if name == "unit" and isinstance(value, str) and value not in units
    ]


def selection_demand() -> dict[str, Any]:
    """A small valid demand (demand.json): the JSON body every role can be sent when it serves
    createSelection. Nothing in it depends on the catalogue; 0 matches is a valid answer."""
    return {
        "acceleratorType": "GPU",
        "precision": "FP16",
        "acceleratorCount": 1,
        "minPeak": {"value": 1, "unit": "TFLOPS"},
        "weights": {"performance": 1, "availability": 0},
        "limit": 1,
    }


def stale_metric_batch(node_code: str, timestamp: str) -> dict[str, Any]:
    """A valid metric batch whose one record is too old to be stored (judged `stale-metric`
    after schema validation), so sending it changes nothing on the node."""
    record = {
        "subject": {"nodeCode": node_code},
        "level": "L2",
        "value": 5,
        "unit": "score",
        "timestamp": timestamp,
        "validitySeconds": 60,
    }
    return {"records": [record]}


_CACHE: dict[int, Operations] = {}


def operations_of(spec: Spec) -> Operations:
    """One `Operations` per spec object for the session."""
    if id(spec) not in _CACHE:
        _CACHE[id(spec)] = Operations(spec)
    return _CACHE[id(spec)]


def basic_credentials(node: NodeClient) -> str:
    """HTTP Basic of the ICS's main client (RFC 6749 section 2.3.1), for token requests the
    suite builds itself."""
    if node.credentials is None:
        raise RuntimeError("no client credentials were configured for this node")
    return basic_authorization(node.credentials.client_id, node.credentials.client_secret)
