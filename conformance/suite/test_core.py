"""Core class: who the node says it is (service-info, cross-checked against the ICS), its
health, the OpenAPI document it serves, and the version prefix of its paths."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from conformance.checks import Contract, body_of, expect_status
from conformance.http import NodeClient
from conformance.ics import Ics
from conformance.identifiers import IdentifierRules
from conformance.suite._core import filled_path, operations_of, problem_flaws
from spec import Spec

_RELEASE_HEADING = re.compile(r"^## ([0-9]+\.[0-9]+\.[0-9]+\S*)", re.MULTILINE)


@pytest.mark.requirement("CPIN-CORE-001")
def test_service_info_is_served_without_authentication(
    node: NodeClient, contract: Contract
) -> None:
    response = node.get("/v1/service-info", authenticated=False)
    expect_status(response, 200)
    contract.expect_json(response, "schemas/service-info.json")


@pytest.mark.requirement("CPIN-CORE-002")
def test_service_info_names_the_declared_role_and_node_code(
    service_info: dict[str, Any], ics: Ics, identifier_rules: IdentifierRules, spec: Spec
) -> None:
    assert service_info["role"] == ics.role, (
        f"service-info role {service_info['role']!r}, the ICS declares {ics.role!r}"
    )
    code = service_info["nodeCode"]
    flaw = identifier_rules.node_code_flaw(code)
    assert flaw is None, f"service-info nodeCode {code!r}: {flaw}"
    node_type = next(
        e["x-node-type"] for e in spec.codelist("node-role") if e["const"] == service_info["role"]
    )
    assert code[0] == node_type, (
        f"service-info nodeCode {code!r} has NodeType {code[0]}, a {service_info['role']} node's "
        f"is {node_type}"
    )
    assert code == ics.node_code, (
        f"service-info nodeCode {code!r}, the ICS declares {ics.node_code!r}"
    )


@pytest.mark.requirement("CPIN-CORE-003")
def test_spec_version_is_a_published_version_of_major_1(
    service_info: dict[str, Any], spec: Spec
) -> None:
    version = service_info["specVersion"]
    published = _RELEASE_HEADING.findall((spec.root / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert version.split(".")[0] == "1", (
        f"specVersion {version!r}: its major version must be 1, the major version of the /v1 paths"
    )
    assert version in published, (
        f"specVersion {version!r} is not a published version of the specification "
        f"({', '.join(published)})"
    )


@pytest.mark.requirement("CPIN-CORE-004")
def test_service_info_lists_the_required_classes_and_the_declared_options(
    service_info: dict[str, Any], ics: Ics, spec: Spec
) -> None:
    profile = spec.profiles["roles"][ics.role]
    classes = set(service_info["classes"])
    required = {
        name
        for name, entry in profile["classes"].items()
        if entry["status"] == "required" and name != "perf"
    }
    assert not required - classes, (
        f"service-info classes lack {sorted(required - classes)}, required for a {ics.role} node"
    )
    offered = {option["option"]: option["class"] for option in profile.get("options", [])}
    options = set(service_info["options"])
    assert options == set(ics.options), (
        f"service-info options {sorted(options)}, the ICS declares {sorted(ics.options)}"
    )
    assert options <= set(offered), (
        f"service-info options {sorted(options - set(offered))} are not options of the "
        f"{ics.role} profile"
    )
    missing = {offered[o] for o in options} - classes
    assert not missing, f"declared options turn on {sorted(missing)}, absent from classes"
    excluded = {name for name, entry in profile["classes"].items() if entry["status"] == "excluded"}
    assert not classes & excluded, (
        f"service-info lists {sorted(classes & excluded)}, classes a {ics.role} node does not serve"
    )


@pytest.mark.requirement("CPIN-CORE-004")
def test_every_operation_of_the_listed_classes_is_served(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec
) -> None:
    """An operation is served when its route exists: never 405, and never 404 where no
    record is named (a path with parameters may answer 404 for the made-up record)."""
    unserved = []
    for op in operations_of(spec).served(role, service_info["classes"]):
        path = filled_path(op.path, service_info["nodeCode"])
        response = node.request(op.method, path)
        route_missing = response.status_code == 405 or (
            response.status_code == 404 and not op.has_path_parameters
        )
        if route_missing:
            unserved.append(f"{op.operation_id} ({op.method} {path} -> {response.status_code})")
    assert not unserved, f"operations of listed classes are not served: {'; '.join(unserved)}"


@pytest.mark.requirement("CPIN-CORE-005")
def test_health_is_served_without_authentication(
    node: NodeClient, contract: Contract, spec: Spec
) -> None:
    response = node.get("/v1/health", authenticated=False)
    expect_status(response, 200)
    body = body_of(response)
    states = spec.codes("health-state")
    status = body.get("status") if isinstance(body, dict) else None
    assert status in states, f"health status {status!r} is not a code of {states}"
    contract.expect_json(response, "schemas/health.json")


@cache
def _openapi_31_validator() -> Draft202012Validator:
    """The OpenAPI 3.1 schema (as openapi-spec-validator ships it): the document's structure,
    judged without following its references, which name schemas by `$id`, not by location."""
    schema = files("openapi_spec_validator") / "resources/schemas/v3.1/schema.json"
    return Draft202012Validator(json.loads(schema.read_text(encoding="utf-8")))


@pytest.mark.requirement("CPIN-CORE-027")
def test_openapi_document_describes_every_served_operation(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec
) -> None:
    response = node.get("/v1/openapi.json", authenticated=False)
    expect_status(response, 200)
    media = response.headers.get("content-type", "").split(";")[0].strip()
    assert media == "application/json", f"/v1/openapi.json has Content-Type {media!r}"
    document = body_of(response)
    assert isinstance(document, dict), "/v1/openapi.json is not a JSON object"
    assert re.fullmatch(r"3\.1\.[0-9]+", str(document.get("openapi"))), (
        f"openapi {document.get('openapi')!r}: the document must be OpenAPI 3.1"
    )
    version = document.get("info", {}).get("version")
    assert version == service_info["specVersion"], (
        f"info.version {version!r} differs from service-info specVersion "
        f"{service_info['specVersion']!r}"
    )
    invalid = [
        f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in _openapi_31_validator().iter_errors(document)
    ]
    assert not invalid, f"not a valid OpenAPI 3.1 document: {'; '.join(invalid[:3])}"
    paths = document.get("paths", {})
    absent = [
        f"{op.method} {op.path} ({op.operation_id})"
        for op in operations_of(spec).served(role, service_info["classes"])
        if paths.get(op.path, {}).get(op.method.lower(), {}).get("operationId") != op.operation_id
    ]
    assert not absent, f"the document does not describe {', '.join(absent)}"
    known = {(op.path, op.method.lower()): op.operation_id for op in operations_of(spec).all}
    foreign = [
        f"{method.upper()} {path}"
        for path, item in paths.items()
        for method, operation in item.items()
        if isinstance(operation, dict)
        and "operationId" in operation
        and known.get((path, method)) != operation["operationId"]
    ]
    assert not foreign, (
        f"operations not in spec/openapi.yaml under these paths and operationIds: {foreign}"
    )


@pytest.mark.requirement("CPIN-CORE-028")
def test_paths_under_another_major_version_answer_404(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec, contract: Contract
) -> None:
    flaws = []
    served = [
        op
        for op in operations_of(spec).served(role, service_info["classes"])
        if op.method == "GET" and not op.has_path_parameters
    ]
    assert served, "the role serves no GET operation below /v1"
    for op in served:
        for prefix in ("/v2", "/v0", "/v10"):
            path = prefix + op.path.removeprefix("/v1")
            response = node.get(path)
            if response.status_code != 404:
                flaws.append(f"GET {path} -> {response.status_code}")
            else:
                flaws += problem_flaws(response, contract)
    assert not flaws, f"paths outside /v1 must answer 404 problem+json: {'; '.join(flaws[:6])}"
