"""Data the suite creates through the standard API, and removes again at the end of the run.

A vendor pre-loads nothing: every record a test needs is created here, named with the run's
namespace (`cpin-conformance-<run>`) so an operator can tell it from production data, and
withdrawn, revoked or cancelled when the session ends. A cleanup the node refuses is logged
into the report, not raised: it is not what any test verifies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from conformance.http import NodeClient

__all__ = ["Created", "Provisioner"]


@dataclass(frozen=True)
class Created:
    """A record the suite created: its answer and how to remove it."""

    response: httpx.Response
    body: dict[str, Any]
    cleanup: tuple[str, str] | None  # (METHOD, path) or None when nothing must be undone


@dataclass
class Provisioner:
    node: NodeClient
    namespace: str
    created: list[Created] = field(default_factory=list)
    cleanup_failures: list[str] = field(default_factory=list)

    def create(
        self,
        path: str,
        body: dict[str, Any],
        *,
        key: str,
        cleanup: str | None = "DELETE",
        cleanup_path: str | None = None,
    ) -> Created:
        """POST `body` to `path`; on 201, remember to undo it with `cleanup` on
        `cleanup_path` (default `path/<key of the answer>`). Raises nothing on refusal: the
        caller decides whether a refusal is a finding or an unmet precondition."""
        response = self.node.post(path, json=body)
        record: dict[str, Any] = {}
        if response.status_code == 201:
            try:
                record = dict(response.json())
            except ValueError:
                record = {}
        undo = None
        if response.status_code == 201 and cleanup and key in record:
            undo = (cleanup, cleanup_path or f"{path}/{record[key]}")
        created = Created(response, record, undo)
        self.created.append(created)
        return created

    def label(self, what: str) -> str:
        return f"{self.namespace} {what}"

    def clean_up(self) -> None:
        for created in reversed(self.created):
            if created.cleanup is None:
                continue
            method, path = created.cleanup
            try:
                answer = self.node.request(method, path)
            except httpx.HTTPError as exc:
                self.cleanup_failures.append(f"{method} {path}: {exc}")
                continue
            if answer.status_code >= 300 and answer.status_code not in (404, 409, 410):
                self.cleanup_failures.append(f"{method} {path} -> {answer.status_code}")
        self.created.clear()
