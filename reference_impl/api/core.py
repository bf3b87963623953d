"""core: who this node is (service-info), whether it is well (health), what it serves."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from reference_impl.calls import Call, Reply, handles
from reference_impl.node import Node, timestamp
from reference_impl.operations import CompiledSpec
from spec import Spec

_NOT_SERVED = {"excluded"}
_MEASURED_NOT_SERVED = {"perf"}  # CPIN-CORE-004: performance is measured, not an interface


@handles("getServiceInfo")
async def get_service_info(call: Call) -> Reply:
    return Reply(200, service_info(call.node))


@handles("getHealth")
async def get_health(call: Call) -> Reply:
    call.node.store.row("SELECT 1")
    checks = {"database": {"status": "ok"}}
    return Reply(200, {"status": "ok", "time": timestamp(call.node.now()), "checks": checks})


@handles("getOpenApiDocument")
async def get_openapi_document(call: Call) -> Reply:
    return Reply(200, bundled_openapi(call.node.spec, call.node.config.role))


def service_info(node: Node) -> dict[str, Any]:
    role = node.config.role
    profile = node.spec.profiles["roles"][role]
    classes = [
        name
        for name, entry in profile["classes"].items()
        if entry["status"] not in _NOT_SERVED and name not in _MEASURED_NOT_SERVED
    ]
    base = node.config.base_url
    info: dict[str, Any] = {
        "nodeCode": node.node_code,
        "role": role,
        "name": node.config.name,
        "specVersion": node.spec.version,
        "implementation": {
            "name": "CPIN reference node",
            "version": _version(),
            "vendor": "CPIN conformance kit",
        },
        "classes": classes,
        "options": [option["option"] for option in profile.get("options", [])],
        "endpoints": {
            "tokenUrl": f"{base}/v1/oauth/token",
            "jwksUrl": f"{base}/v1/jwks",
            "openapiUrl": f"{base}/v1/openapi.json",
        },
        "limits": {"maxPageSize": 100, "rateLimitPerMinute": node.config.rate_limit_per_minute},
        "time": timestamp(node.now()),
    }
    code = node.node_code or ""
    if role != "national":
        info["province"] = code[1:3]
        if role == "industry":
            info["industry"] = code[3:6]
        if node.config.parent:
            info["parent"] = node.config.parent
        if node.config.upstream:
            info["upstream"] = node.config.upstream
    return info


@cache
def bundled_openapi(spec: Spec, role: str) -> dict[str, Any]:
    """The spec's OpenAPI document for this role, self-contained.

    External references become the absolute `$id` they name, and every schema travels inside
    `components/schemas` with its `$id` intact: a 2020-12 compound document, so a client
    resolves every reference without the spec folder.
    """
    served = {op.operation_id for op in CompiledSpec(spec, role).operations}
    document = copy.deepcopy(spec.openapi)
    for path in list(document["paths"]):
        item = document["paths"][path]
        for method in [m for m, op in item.items() if isinstance(op, dict) and "operationId" in op]:
            if item[method]["operationId"] not in served:
                del item[method]
        if not any(isinstance(op, dict) and "operationId" in op for op in item.values()):
            del document["paths"][path]
    _absolutise(document, spec.uri("openapi.yaml"))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in spec.schema_files():
        schemas[name.removesuffix(".json").replace("/", ".")] = spec.load(name)
    return document


def _absolutise(node: Any, base: str) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith(("#", "http")):
            node["$ref"] = base.rsplit("/", 1)[0] + "/" + ref
        for value in node.values():
            _absolutise(value, base)
    elif isinstance(node, list):
        for value in node:
            _absolutise(value, base)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cpin-conformance-kit")
    except PackageNotFoundError:
        return "0+checkout"
