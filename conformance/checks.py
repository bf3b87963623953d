"""Assertions about a node's answers, judged by the spec's own schemas and code lists.

A failed expectation raises `AssertionError` with a message that says what the node did and
what the spec wanted: the plugin turns it into `fail`. A precondition that does not hold (the
data a test needs could not be created) calls `precondition`, which skips: `skipped` is never
a pass. Nothing here catches an exception to pass a test.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from spec import ID_BASE, Spec

__all__ = ["Contract", "body_of", "expect_status", "precondition"]

PROBLEM_MEDIA = "application/problem+json"


def precondition(holds: object, message: str) -> None:
    """Skip the test when what it needs is not there (never a pass, never a fail)."""
    if not holds:
        pytest.skip(f"precondition failed: {message}")


def expect_status(response: httpx.Response, *statuses: int) -> None:
    if response.status_code not in statuses:
        wanted = " or ".join(str(s) for s in statuses)
        raise AssertionError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}, the spec requires {wanted}: {_excerpt(response)}"
        )


def body_of(response: httpx.Response) -> Any:
    """The JSON body, or a failure saying the node sent something else."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AssertionError(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: the body is not JSON: {_excerpt(response)}"
        ) from None


def _excerpt(response: httpx.Response) -> str:
    text = response.content[:300].decode("utf-8", errors="replace")
    return text if len(response.content) <= 300 else text + "..."


class Contract:
    """The spec's schemas as validators: a JSON value against `schemas/x.json`, an answer
    against what its operation documents for its status."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._registry = spec.registry()
        self._problem_types = {e["const"]: e.get("x-status") for e in spec.codelist("problem-type")}

    def errors(self, instance: Any, schema_ref: str) -> list[str]:
        """Validation messages for `instance` against a spec schema (`schemas/resource.json`,
        `schemas/common.json#/$defs/Timestamp`); empty when valid."""
        validator = self._validator(schema_ref)
        found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{_where(e)}: {e.message}" for e in found[:5]]

    def expect_valid(self, instance: Any, schema_ref: str, what: str = "the body") -> None:
        messages = self.errors(instance, schema_ref)
        if messages:
            raise AssertionError(
                f"{what} is not valid against {schema_ref}: " + "; ".join(messages)
            )

    def expect_json(self, response: httpx.Response, schema_ref: str) -> Any:
        """The body parsed and valid against `schema_ref`, else a failure."""
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media != "application/json":
            raise AssertionError(
                f"{response.request.method} {response.request.url.path} answered Content-Type "
                f"{media or '(none)'}, the spec requires application/json"
            )
        body = body_of(response)
        self.expect_valid(body, schema_ref, f"the {response.status_code} body")
        return body

    def expect_problem(
        self, response: httpx.Response, status: int, problem_type: str | None = None
    ) -> dict[str, Any]:
        """An RFC 9457 answer with this status (and type slug, when given)."""
        expect_status(response, status)
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media != PROBLEM_MEDIA:
            raise AssertionError(f"a {status} answer has Content-Type {media or '(none)'}, "
                                 f"the spec requires {PROBLEM_MEDIA}")  # fmt: skip
        body = body_of(response)
        self.expect_valid(body, "schemas/problem.json", "the problem body")
        if body.get("status") != status:
            raise AssertionError(f"problem status {body.get('status')} differs from HTTP {status}")
        slug = str(body.get("type", "")).removeprefix(f"{ID_BASE}problems/")
        if slug not in self._problem_types:
            raise AssertionError(f"problem type {body.get('type')!r} is not in the code list")
        if problem_type is not None and slug != problem_type:
            raise AssertionError(f"problem type {slug!r}, the spec requires {problem_type!r}")
        return dict(body)

    def _validator(self, schema_ref: str) -> Draft202012Validator:
        return _validator(self, schema_ref)


@lru_cache(maxsize=256)
def _validator(contract: Contract, schema_ref: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": ID_BASE + schema_ref},
        registry=contract._registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _where(error: Any) -> str:
    return "/" + "/".join(str(part) for part in error.absolute_path)


def first_error(validator: Draft202012Validator, instance: Any) -> str | None:
    error = best_match(validator.iter_errors(instance))
    return None if error is None else f"{_where(error)}: {error.message}"
