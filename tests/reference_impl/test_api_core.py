from __future__ import annotations

from collections.abc import Callable

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from spec import ID_BASE, default

from .conftest import NODE_CODES, RunningNode


@pytest.mark.parametrize("role", ["national", "regional", "industry"])
def test_service_info_names_role_code_and_classes(
    node_factory: Callable[..., RunningNode], role: str
) -> None:
    running = node_factory(role)
    info = running.client.get("/v1/service-info").json()
    assert (info["role"], info["nodeCode"]) == (role, NODE_CODES[role])
    assert info["specVersion"] == running.node.spec.version
    assert "perf" not in info["classes"]
    profile = running.node.spec.profiles["roles"][role]["classes"]
    required = {name for name, entry in profile.items() if entry["status"] == "required"}
    assert required - {"perf"} <= set(info["classes"])


def test_health_is_ok(node_factory: Callable[..., RunningNode]) -> None:
    assert node_factory("industry").client.get("/v1/health").json()["status"] == "ok"


def test_served_openapi_is_self_contained(node_factory: Callable[..., RunningNode]) -> None:
    """Every reference of the served document resolves from the document alone."""
    document = node_factory("regional").client.get("/v1/openapi.json").json()
    assert document["info"]["version"] == default().version
    operations = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert "submitNodeApplication" not in operations
    assert "resolveIdentifier" in operations
    root = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource(f"{ID_BASE}openapi.yaml", root)
    registry = registry.with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in document["components"]["schemas"].values()
    )
    media = document["paths"]["/v1/service-info"]["get"]["responses"]["200"]["content"]
    validator = Draft202012Validator(
        {"$ref": media["application/json"]["schema"]["$ref"]}, registry=registry
    )
    example = next(iter(media["application/json"]["examples"].values()))["value"]
    assert list(validator.iter_errors(example)) == []
