"""RFC 9457 problem details: the only way the reference node reports an error.

A handler raises `Problem("unknown-identifier", detail=...)`; the app turns it into an
`application/problem+json` answer whose status and title come from the spec's problem-type
code list, so a slug can never drift from its status.
"""

from __future__ import annotations

from typing import Any

from spec import ID_BASE, Spec


class Problem(Exception):
    """An error answer. `members` are RFC 9457 extension members (errors, retryAfter, ...)."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **members: Any,
    ) -> None:
        super().__init__(f"{slug}: {detail}")
        self.slug = slug
        self.detail = detail
        self.headers = headers or {}
        self.members = members


class ProblemTypes:
    """Status and title of every problem type, read from spec/codelists/problem-type.json."""

    def __init__(self, spec: Spec) -> None:
        self._types = {e["const"]: e for e in spec.codelist("problem-type")}

    def status(self, slug: str) -> int:
        return int(self._types[slug]["x-status"])

    def body(self, problem: Problem, instance: str, request_id: str) -> dict[str, Any]:
        entry = self._types[problem.slug]
        return {
            "type": f"{ID_BASE}problems/{problem.slug}",
            "title": entry["title"],
            "status": int(entry["x-status"]),
            "detail": problem.detail,
            "instance": instance,
            "requestId": request_id,
            **problem.members,
        }
