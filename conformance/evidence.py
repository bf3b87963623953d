"""HTTP evidence: every exchange the harness has with a node, as HAR 1.2, secrets redacted.

The recorder is the single place exchanges are written down. Each entry is numbered; the test
that was running when it happened keeps the numbers, so a requirement's verdict in report.json
points at `evidence/http.har#/log/entries/<n>`. Redaction is applied when an entry is made, so
nothing secret is ever held in the recorder.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from conformance.redaction import redact_headers, redact_text

__all__ = ["HAR_PATH", "Exchange", "Recorder"]

HAR_PATH = "evidence/http.har"
_BODY_LIMIT = 64 * 1024  # evidence, not an archive: a runaway body is cut, and says so


@dataclass(frozen=True)
class Exchange:
    """A pointer to one recorded exchange, for a verdict's evidence list."""

    index: int
    summary: str

    @property
    def ref(self) -> str:
        return f"{HAR_PATH}#/log/entries/{self.index}"


@dataclass
class Recorder:
    secrets: list[str] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    by_test: dict[str, list[Exchange]] = field(default_factory=lambda: defaultdict(list))
    current_test: str = "(session)"

    def record(
        self,
        request: httpx.Request,
        response: httpx.Response | None,
        elapsed_ms: float,
        error: str | None = None,
        started: datetime | None = None,
    ) -> Exchange:
        """`started`: when the request was sent, if that was before now (an exchange a timer
        made while another test ran is recorded by the test that judges it)."""
        entry = {
            "startedDateTime": (started or datetime.now(UTC)).isoformat(timespec="milliseconds"),
            "time": round(elapsed_ms, 3),
            "request": self._request(request),
            "response": self._response(response, error),
            "cache": {},
            "timings": {"send": 0, "wait": round(elapsed_ms, 3), "receive": 0},
            "comment": self.current_test,
        }
        self.entries.append(entry)
        status = f"{response.status_code}" if response is not None else f"no answer ({error})"
        summary = redact_text(f"{request.method} {request.url.raw_path.decode()} -> {status}",
                              self.secrets)  # fmt: skip
        exchange = Exchange(len(self.entries) - 1, summary)
        self.by_test[self.current_test].append(exchange)
        return exchange

    def _request(self, request: httpx.Request) -> dict[str, Any]:
        har: dict[str, Any] = {
            "method": request.method,
            "url": redact_text(str(request.url), self.secrets),
            "httpVersion": "HTTP/1.1",
            "headers": redact_headers(request.headers.multi_items()),
            "queryString": [
                {"name": k, "value": redact_text(v, self.secrets)}
                for k, v in request.url.params.multi_items()
            ],
            "cookies": [],
            "headersSize": -1,
            "bodySize": len(request.content) if request.content else 0,
        }
        if request.content:
            har["postData"] = {
                "mimeType": request.headers.get("content-type", ""),
                **self._content(request.content),
            }
        return har

    def _response(self, response: httpx.Response | None, error: str | None) -> dict[str, Any]:
        if response is None:
            return {"status": 0, "statusText": "", "httpVersion": "", "headers": [],
                    "cookies": [], "content": {"size": 0, "mimeType": ""},
                    "redirectURL": "", "headersSize": -1, "bodySize": -1,
                    "_error": redact_text(error or "", self.secrets)}  # fmt: skip
        body = response.content
        return {
            "status": response.status_code,
            "statusText": response.reason_phrase,
            "httpVersion": response.http_version,
            "headers": redact_headers(response.headers.multi_items()),
            "cookies": [],
            "content": {
                "size": len(body),
                "mimeType": response.headers.get("content-type", ""),
                **self._content(body),
            },
            "redirectURL": response.headers.get("location", ""),
            "headersSize": -1,
            "bodySize": len(body),
        }

    def _content(self, body: bytes) -> dict[str, Any]:
        try:
            return {"text": self._text(body)}
        except UnicodeDecodeError:
            clipped = base64.b64encode(body[:_BODY_LIMIT]).decode()
            return {"text": clipped, "encoding": "base64"}

    def _text(self, body: bytes) -> str:
        text = body[:_BODY_LIMIT].decode("utf-8")
        if len(body) > _BODY_LIMIT:
            text += f"\n[cut: {len(body)} bytes in all]"
        return redact_text(text, self.secrets)

    def for_test(self, nodeid: str) -> list[Exchange]:
        return list(self.by_test.get(nodeid, []))

    def write(self, folder: Path, harness_version: str) -> Path:
        path = folder / HAR_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        har = {
            "log": {
                "version": "1.2",
                "creator": {"name": "cpin-conformance", "version": harness_version},
                "entries": self.entries,
            }
        }
        path.write_text(json.dumps(har, ensure_ascii=False, indent=1), encoding="utf-8")
        return path
