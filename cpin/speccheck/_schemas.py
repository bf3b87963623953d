"""Schemas and code lists: meta-schema, `$id` convention, resolvable `$ref`s, valid examples."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.exceptions import CannotDetermineSpecification, Unresolvable

from spec import Spec, SpecFileError

from ._findings import Findings, pointer_of, walk

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_META = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def instance_errors(
    registry: Registry[Any], schema_uri: str, instance: Any
) -> list[tuple[str, str]]:
    """(pointer into the instance, message) for each way instance fails the schema at a URI."""
    validator = Draft202012Validator(
        {"$ref": schema_uri},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    try:
        return [(pointer_of(e.absolute_path), e.message) for e in validator.iter_errors(instance)]
    except Unresolvable as exc:  # a dangling $ref is reported where it stands, by _check_refs
        return [("", f"cannot be checked: its schema has an unresolvable reference ({exc})")]


def readable_registry(spec: Spec, found: Findings) -> Registry[Any]:
    """A registry of every schema file that parses; each one that does not is an error."""
    resources = []
    for name in spec.schema_files():
        try:
            resources.append((spec.uri(name), Resource.from_contents(spec.load(name))))
        except SpecFileError as exc:
            found.add(exc.file, "", exc.message)
        except CannotDetermineSpecification:
            found.add(name, "/$schema", f"must be {DIALECT}")
    return Registry().with_resources(resources)


def check_schemas(spec: Spec, found: Findings, registry: Registry[Any]) -> None:
    names = [name for name in spec.schema_files() if spec.uri(name) in registry]
    found.facts["schemas"] = len(spec.files("schemas"))
    found.facts["codelists"] = len(spec.files("codelists"))
    for name in names:
        schema = spec.load(name)
        if _check_header(name, schema, spec, found):
            _check_refs(name, schema, spec.uri(name), registry, found)
            _check_examples(name, schema, spec.uri(name), registry, found)


def _check_header(name: str, schema: Any, spec: Spec, found: Findings) -> bool:
    if not isinstance(schema, dict):
        found.add(name, "", "a schema file must hold a JSON object")
        return False
    if schema.get("$schema") != DIALECT:
        found.add(name, "/$schema", f"must be {DIALECT}")
    if schema.get("$id") != spec.uri(name):
        found.add(name, "/$id", f"must be {spec.uri(name)} (the $id mirrors the file's place)")
    meta_errors = list(_META.iter_errors(schema))
    for error in meta_errors:
        found.add(name, error.absolute_path, f"not a valid 2020-12 schema: {error.message}")
    return not meta_errors


def _check_refs(
    name: str, schema: Any, base: str, registry: Registry[Any], found: Findings
) -> None:
    resolver = registry.resolver(base_uri=base)
    for path, node in walk(schema):
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            try:
                resolver.lookup(node["$ref"])
            except Unresolvable as exc:
                found.add(name, (*path, "$ref"), f"unresolvable reference: {exc}")


def _check_examples(
    name: str, schema: Any, base: str, registry: Registry[Any], found: Findings
) -> None:
    for path, node in walk(schema):
        if path and path[-1] in {"properties", "$defs", "patternProperties"}:
            continue
        if isinstance(node, dict) and isinstance(node.get("examples"), list):
            target = f"{base}#{pointer_of(path)}"
            for index, example in enumerate(node["examples"]):
                for where, message in instance_errors(registry, target, example):
                    found.add(name, (*path, "examples", index), f"example{where}: {message}")
