"""`cpin spec validate`: is the spec folder a consistent, usable standard?

    validate(spec) -> Findings
      ├── schemas and code lists   meta-schema, $id convention, $refs resolve, examples valid
      ├── code lists               unique codes, zh + en labels, cross-references, no gaps
      ├── openapi.yaml             OpenAPI 3.1, house rules per operation, links, examples
      ├── rules                    catalogue, profiles, certification rule, spec/examples/*
      └── vectors                  identifier vectors agree with grammar and check algorithms

Every problem becomes a SpecError naming a file and a JSON pointer. A check that meets a file
it cannot read, or a structure too broken to walk, reports that and the other checks go on:
one broken file never hides the state of the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from spec import Spec, SpecFileError

from ._codelists import check_codelists
from ._findings import Findings, SpecError
from ._openapi import check_openapi
from ._rules import check_documents
from ._schemas import check_schemas, readable_registry
from ._vectors import check_vectors

__all__ = ["Findings", "SpecError", "validate"]


def validate(spec: Spec) -> Findings:
    found = Findings()
    registry = readable_registry(spec, found)
    checks: list[tuple[str, Callable[[], None]]] = [
        ("code lists", lambda: check_codelists(spec, found)),
        ("schemas", lambda: check_schemas(spec, found, registry)),
        ("openapi.yaml", lambda: check_openapi(spec, found, registry)),
        ("rules", lambda: check_documents(spec, found, registry)),
        ("vectors", lambda: check_vectors(spec, found, registry)),
    ]
    for name, check in checks:
        _guard(check, found, name)
    found.errors = sorted(set(found.errors))
    return found


def _guard(check: Callable[[], None], found: Findings, name: str) -> None:
    try:
        check()
    except SpecFileError as exc:
        found.add(exc.file, "", exc.message)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        found.add(f"({name})", "", f"structure too broken to check further: {exc!r}")
