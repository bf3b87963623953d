"""RFC 9457 problem details: the only way the reference node reports an error.

A handler raises `Problem("unknown-identifier", detail=...)`; the app turns it into an
`application/problem+json` answer whose status and title come from the spec's problem-type
code list, so a slug can never drift from its status.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from spec import ID_BASE, Spec

# RFC 3986 pchar and "/", less "%": a decoded path re-encoded is a valid URI reference.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"
_ELLIPSIS = "…"


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
    """Status and title of every problem type, read from spec/codelists/problem-type.json.

    A body always fits problem.json, whatever the request was: `instance` is the path
    percent-encoded, and texts that repeat what the client sent (a message quoting a huge
    value, an unknown parameter's name) are cut to the schema's maxLength and maxItems."""

    def __init__(self, spec: Spec) -> None:
        self._types = {e["const"]: e for e in spec.codelist("problem-type")}
        schema = spec.load("schemas/problem.json")
        members = schema["properties"]
        self._detail_max = int(members["detail"]["maxLength"])
        self._instance_max = int(members["instance"]["maxLength"])
        self._errors_max = int(members["errors"]["maxItems"])
        self._field_max = {
            name: int(member["maxLength"])
            for name, member in schema["$defs"]["FieldError"]["properties"].items()
            if "maxLength" in member
        }

    def status(self, slug: str) -> int:
        return int(self._types[slug]["x-status"])

    def body(self, problem: Problem, path: str, request_id: str) -> dict[str, Any]:
        """The problem document of a request to `path` (decoded, as Starlette gives it)."""
        entry = self._types[problem.slug]
        body = {
            "type": f"{ID_BASE}problems/{problem.slug}",
            "title": entry["title"],
            "status": int(entry["x-status"]),
            "detail": _clip(problem.detail, self._detail_max),
            "instance": self._instance(path),
            "requestId": request_id,
            **problem.members,
        }
        if isinstance(body.get("errors"), list):
            body["errors"] = [self._field_error(e) for e in body["errors"][: self._errors_max]]
        return body

    def _instance(self, path: str) -> str:
        encoded = quote(path, safe=_PATH_SAFE)
        if len(encoded) <= self._instance_max:
            return encoded
        cut = encoded[: self._instance_max]
        escape = cut.rfind("%", len(cut) - 2)  # never split a %XX escape
        return cut if escape == -1 else cut[:escape]

    def _field_error(self, error: dict[str, Any]) -> dict[str, Any]:
        clipped = dict(error)
        for name, limit in self._field_max.items():
            value = clipped.get(name)
            if not isinstance(value, str) or len(value) <= limit:
                continue
            if name == "pointer":  # the nearest ancestor that fits is still a JSON Pointer
                clipped[name] = value[: limit + 1].rsplit("/", 1)[0]
            else:
                clipped[name] = _clip(value, limit)
        return clipped


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS
