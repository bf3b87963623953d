"""The OpenAPI document: structure, the house rules on operations, examples, links."""

from __future__ import annotations

from collections import Counter
from typing import Any

from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from spec import Spec

from ._findings import Findings, pointer_of, walk
from ._schemas import instance_errors

FILE = "openapi.yaml"
PROBLEM_MEDIA_TYPE = "application/problem+json"


def check_openapi(spec: Spec, found: Findings, registry: Registry[Any]) -> None:
    document = spec.openapi
    _check_structure(spec, document, found)
    operations = list(spec.operations())
    _check_operations(spec, operations, found)
    _check_links(operations, found)
    # An OpenAPI 3.1 document has no $schema; its Schema Objects are 2020-12 (jsonSchemaDialect).
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = registry.with_resource(spec.uri(FILE), resource)
    _check_examples(spec.uri(FILE), document, registry, found)


def _check_structure(spec: Spec, document: dict[str, Any], found: Findings) -> None:
    validator = OpenAPIV31SpecValidator(document, base_uri=(spec.root / FILE).as_uri())
    try:
        for error in validator.iter_errors():
            found.add(FILE, error.absolute_path, f"OpenAPI 3.1: {error.message}")
    except Exception as exc:  # the validator raises, not yields, on a dangling $ref (TOOLING.md)
        found.add(FILE, "", f"OpenAPI 3.1: cannot resolve a reference: {exc}")


def _check_operations(
    spec: Spec, operations: list[tuple[str, str, dict[str, Any]]], found: Findings
) -> None:
    classes = set(spec.codes("conformance-class"))
    roles = set(spec.codes("node-role"))
    known_ids = {r["id"] for r in spec.requirements}
    _check_known(spec.openapi.get("x-requirements", []), ("x-requirements",), known_ids, found)
    per_class: Counter[str] = Counter()
    for path, method, operation in operations:
        where = ("paths", path, method.lower())
        tags = operation.get("tags", [])
        if len(tags) != 1 or tags[0] not in classes:
            found.add(FILE, (*where, "tags"), "needs exactly one tag: its conformance class")
        else:
            per_class[tags[0]] += 1
        if not operation.get("operationId"):
            found.add(FILE, where, "has no operationId")
        if not operation.get("x-roles") or not set(operation["x-roles"]) <= roles:
            found.add(FILE, (*where, "x-roles"), f"must list roles from {sorted(roles)}")
        if "security" not in operation and "security" not in spec.openapi:
            found.add(FILE, where, "must state its security (use [] for a public operation)")
        requirement_ids = operation.get("x-requirements") or []
        if not requirement_ids:
            found.add(FILE, (*where, "x-requirements"), "must name the requirements it carries")
        _check_known(requirement_ids, (*where, "x-requirements"), known_ids, found)
        _check_error_media(operation, where, found)
    ids = Counter(op.get("operationId") for _, _, op in operations)
    for operation_id, count in ids.items():
        if operation_id and count > 1:
            found.add(FILE, "/paths", f"operationId {operation_id} is used {count} times")
    found.facts["operations_per_class"] = dict(sorted(per_class.items()))


def _check_known(
    requirement_ids: list[str], where: tuple[str, ...], known_ids: set[str], found: Findings
) -> None:
    for index, requirement_id in enumerate(requirement_ids):
        if requirement_id not in known_ids:
            found.add(FILE, (*where, index), f"unknown requirement {requirement_id}")


def _check_error_media(operation: dict[str, Any], where: tuple[str, ...], found: Findings) -> None:
    """Errors are problem+json (RFC 9457), except where an RFC prescribes another body."""
    for status, response in operation.get("responses", {}).items():
        if not str(status).startswith(("4", "5")) or "$ref" in response:
            continue
        media = response.get("content", {})
        if PROBLEM_MEDIA_TYPE not in media and "x-problem-exempt" not in response:
            found.add(
                FILE,
                (*where, "responses", status),
                f"an error must be {PROBLEM_MEDIA_TYPE} (or say why not in x-problem-exempt)",
            )


def _check_links(operations: list[tuple[str, str, dict[str, Any]]], found: Findings) -> None:
    operation_ids = {op.get("operationId") for _, _, op in operations}
    for path, method, operation in operations:
        for status, response in operation.get("responses", {}).items():
            for name, link in response.get("links", {}).items():
                target = link.get("operationId")
                if target and target not in operation_ids:
                    found.add(
                        FILE,
                        ("paths", path, method.lower(), "responses", status, "links", name),
                        f"links to unknown operation {target}",
                    )


def _check_examples(base: str, document: Any, registry: Registry[Any], found: Findings) -> None:
    """Every example or examples value beside a `schema` validates against that schema."""
    for path, node in walk(document):
        if not isinstance(node, dict) or "schema" not in node:
            continue
        target = f"{base}#{pointer_of((*path, 'schema'))}"
        for where, example in _examples_of(node):
            for at, message in instance_errors(registry, target, example):
                found.add(FILE, (*path, *where), f"example{at}: {message}")


def _examples_of(node: dict[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    found: list[tuple[tuple[str, ...], Any]] = []
    if "example" in node:
        found.append((("example",), node["example"]))
    for name, example in (node.get("examples") or {}).items():
        if isinstance(example, dict) and "value" in example:
            found.append((("examples", name, "value"), example["value"]))
    return found
