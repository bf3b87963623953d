"""reference_impl/operations.py: the fast validator may accept only what python-jsonschema
accepts, or the node would take bodies the spec refuses. Checked over every request body
example of the spec and systematic mutations of it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from reference_impl.operations import CompiledSpec
from spec import default

SPEC = default()
WRONG_LEAVES: tuple[Any, ...] = (
    None,
    True,
    -1,
    1.5,
    "",
    "x" * 1025,
    "2026-02-30T25:61:00Z",
    "not a uri",
    [],
    {},
)


def _body_examples() -> Iterator[tuple[str, str, Any]]:
    for role in ("national", "regional", "industry"):
        compiled = CompiledSpec(SPEC, role)
        for operation in compiled.operations:
            if operation.body_schema_uri is None:
                continue
            raw = next(op for _, _, op in SPEC.operations()
                       if op["operationId"] == operation.operation_id)  # fmt: skip
            for media in raw["requestBody"]["content"].values():
                examples = [e["value"] for e in media.get("examples", {}).values()]
                for example in [*examples, *([media["example"]] if "example" in media else [])]:
                    yield role, operation.operation_id, example


def _mutations(document: Any) -> Iterator[Any]:
    """The document with one change each: a member dropped, an unknown member added, a leaf
    replaced by a value of another type or a malformed one."""
    for path, value in _leaves(document, ()):
        for wrong in WRONG_LEAVES:
            if wrong != value:
                yield _replaced(document, path, wrong)
    for path in _objects(document, ()):
        container = _at(document, path)
        for key in container:
            mutated = copy.deepcopy(document)
            del _at(mutated, path)[key]
            yield mutated
        mutated = copy.deepcopy(document)
        _at(mutated, path)["unknownMember"] = 1
        yield mutated


def _leaves(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _objects(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from _objects(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):
            yield from _objects(item, (*path, index))


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    mutated = copy.deepcopy(document)
    if not path:
        return value
    _at(mutated, path[:-1])[path[-1]] = value
    return mutated


CASES = list(_body_examples())


@pytest.mark.parametrize(("role", "operation_id", "example"), CASES,
                         ids=[f"{r}-{o}-{i}" for i, (r, o, _) in enumerate(CASES)])  # fmt: skip
def test_the_fast_validator_never_accepts_what_python_jsonschema_refuses(
    role: str, operation_id: str, example: Any
) -> None:
    compiled = CompiledSpec(SPEC, role)
    operation = next(op for op in compiled.operations if op.operation_id == operation_id)
    assert operation.body_schema_uri is not None
    validator = compiled.validator(operation.body_schema_uri)
    disagreements = []
    for document in [example, *_mutations(example)]:
        refused = list(validator.exact.iter_errors(document))
        if refused and validator.fast.is_valid(document):
            disagreements.append(f"{document!r:.200}: {refused[0].message}")
    assert not disagreements, f"{len(disagreements)} accepted: {disagreements[:3]}"


def test_every_operation_with_a_body_has_an_example_here() -> None:
    assert len({(r, o) for r, o, _ in CASES}) >= 20
