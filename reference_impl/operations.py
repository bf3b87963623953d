"""The spec's operations compiled for one role: what to route, check and validate.

Everything a request is checked against comes from spec/openapi.yaml and the schemas it
references: which operations a role serves (`x-roles`), the scope each needs, every parameter
with its schema, the accepted media types, the documented statuses. Nothing is restated here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import quote

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from spec import Spec

_IDENTIFIER_DEFS = {"NodeCode": "node-code", "ResourceId": "resource-id"}


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str
    required: bool
    schema_uri: str
    type: str | None
    identifier: str | None
    default: Any = None


@dataclass
class Operation:
    operation_id: str
    method: str
    path: str
    scopes: list[str] | None
    parameters: list[Parameter]
    media_types: list[str]
    body_schema_uri: str | None
    body_required: bool
    responses: dict[str, str | None] = field(default_factory=dict)

    @cached_property
    def query_parameters(self) -> dict[str, Parameter]:
        return {p.name: p for p in self.parameters if p.location == "query"}

    @cached_property
    def query_defaults(self) -> dict[str, Any]:
        """What a handler sees for a query parameter not given: the spec's default."""
        return {p.name: p.default for p in self.query_parameters.values() if p.default is not None}


def _uri_reference(uri: str) -> str:
    """RFC 6901 §6: a JSON pointer in a fragment is percent-encoded (`{identifier}` in a path
    is not a URI character; python's referencing tolerates it, jsonschema-rs does not)."""
    base, _, pointer = uri.partition("#")
    return f"{base}#{quote(pointer, safe=_POINTER_SAFE)}" if pointer else uri


_POINTER_SAFE = "/~!$&'()*+,;=:@-._"  # RFC 3986 pchar, unreserved and sub-delims


class Validator:
    """python-jsonschema, with jsonschema-rs in front. Whatever jsonschema-rs finds valid is
    accepted at once (a 1000-item catalogue push costs a millisecond instead of a tenth of a
    second); anything else is judged by python-jsonschema alone, whose errors the node answers
    with, so every refusal and its details stay what they were."""

    def __init__(self, exact: Draft202012Validator, fast: jsonschema_rs.Validator) -> None:
        self.exact = exact
        self.fast = fast

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        if self.fast.is_valid(instance):
            return iter(())
        return self.exact.iter_errors(instance)


class CompiledSpec:
    """The operations of one role, and validators built once for every schema they use."""

    def __init__(self, spec: Spec, role: str) -> None:
        self.spec = spec
        self.base = spec.uri("openapi.yaml")
        resource = Resource.from_contents(spec.openapi, default_specification=DRAFT202012)
        self.registry: Registry[Any] = spec.registry().with_resource(self.base, resource)
        self.resolver = self.registry.resolver(base_uri=self.base)
        self._validators: dict[str, Validator] = {}
        self.operations = [
            self._compile(path, method, op)
            for path, method, op in spec.operations()
            if role in op.get("x-roles", [])
        ]

    @cached_property
    def identifier_patterns(self) -> dict[str, str]:
        """Pattern of each identifier $def: a pattern failure on one is malformed-identifier."""
        definitions = self.spec.load("schemas/identifiers.json")["$defs"]
        return {definitions[name]["pattern"]: kind for name, kind in _IDENTIFIER_DEFS.items()}

    def validator(self, schema_uri: str) -> Validator:
        if schema_uri not in self._validators:
            self._validators[schema_uri] = Validator(
                Draft202012Validator(
                    {"$ref": schema_uri},
                    registry=self.registry,
                    format_checker=Draft202012Validator.FORMAT_CHECKER,
                ),
                jsonschema_rs.Draft202012Validator(
                    {"$ref": _uri_reference(schema_uri)},
                    registry=self._fast_registry,
                    validate_formats=True,
                    offline=True,  # every $ref is in the spec: nothing is fetched
                ),
            )
        return self._validators[schema_uri]

    @cached_property
    def _fast_registry(self) -> jsonschema_rs.Registry:
        files = [(self.spec.uri(name), self.spec.load(name)) for name in self.spec.schema_files()]
        return jsonschema_rs.Registry([*files, (self.base, self.spec.openapi)])

    def _pointer(self, *parts: str) -> str:
        return f"{self.base}#/" + "/".join(_escape(p) for p in parts)

    def _compile(self, path: str, method: str, op: dict[str, Any]) -> Operation:
        security = op.get("security", self.spec.openapi.get("security", []))
        bearer = [requirement["oauth2"] for requirement in security if "oauth2" in requirement]
        scopes = bearer[0] if bearer else None  # other schemes (clientBasic) are the handler's
        parameters = [
            self._parameter(p, self._pointer("paths", path, method.lower(), "parameters", str(i)))
            for i, p in enumerate(op.get("parameters", []))
        ]
        body = op.get("requestBody", {})
        body_base = self._pointer("paths", path, method.lower(), "requestBody")
        if "$ref" in body:
            body_base = f"{self.base}{body['$ref']}"
            body = self.resolver.lookup(body["$ref"]).contents
        content = body.get("content", {})
        first = next(iter(content), None)
        body_uri = f"{body_base}/content/{_escape(first)}/schema" if first else None
        return Operation(
            operation_id=op["operationId"],
            method=method,
            path=path,
            scopes=scopes,
            parameters=parameters,
            media_types=list(content),
            body_schema_uri=body_uri,
            body_required=bool(body.get("required")),
            responses=self._responses(path, method, op),
        )

    def _parameter(self, parameter: dict[str, Any], uri: str) -> Parameter:
        if "$ref" in parameter:
            uri = f"{self.base}{parameter['$ref']}"
            parameter = self.resolver.lookup(parameter["$ref"]).contents
        schema_uri = f"{uri}/schema"
        return Parameter(
            name=parameter["name"],
            location=parameter["in"],
            required=bool(parameter.get("required")),
            schema_uri=schema_uri,
            type=_json_type(schema := self._resolved(parameter["schema"], uri)),
            default=schema.get("default"),
            identifier=self._identifier_kind(parameter["schema"]),
        )

    def _resolved(self, schema: dict[str, Any], base: str) -> dict[str, Any]:
        """A parameter's schema with its $refs followed to the one that states its type."""
        seen = 0
        resolver = self.registry.resolver(base_uri=base)
        while "type" not in schema and "$ref" in schema and seen < 8:
            resolved = resolver.lookup(schema["$ref"])
            schema, resolver, seen = resolved.contents, resolved.resolver, seen + 1
        return schema

    def _identifier_kind(self, schema: dict[str, Any]) -> str | None:
        ref = str(schema.get("$ref", ""))
        return next((kind for name, kind in _IDENTIFIER_DEFS.items() if ref.endswith(name)), None)

    def _responses(self, path: str, method: str, op: dict[str, Any]) -> dict[str, str | None]:
        """Documented status -> schema URI of its body (None when it has none)."""
        documented: dict[str, str | None] = {}
        for status, response in op.get("responses", {}).items():
            uri = self._pointer("paths", path, method.lower(), "responses", str(status))
            if "$ref" in response:
                uri = f"{self.base}{response['$ref']}"
                response = self.resolver.lookup(response["$ref"]).contents
            media = next(iter(response.get("content", {})), None)
            documented[str(status)] = f"{uri}/content/{_escape(media)}/schema" if media else None
        return documented


def _escape(part: str) -> str:
    """One RFC 6901 reference token."""
    return part.replace("~", "~0").replace("/", "~1")


def _json_type(schema: dict[str, Any]) -> str | None:
    """The JSON type a query or path string must be converted to."""
    kind = schema.get("type")
    return kind if isinstance(kind, str) else None
