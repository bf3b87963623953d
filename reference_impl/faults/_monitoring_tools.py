"""Building blocks for monitoring faults: rewrite a request's JSON body before the node's
pipeline validates it, as a lenient ingestion layer in front of the node would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BodyRewrite = Callable[[Any], Any]


def rewrite_request_body(
    method: str, path: str, rewrite: BodyRewrite
) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper that passes the JSON body of `method path` requests through `rewrite`;
    a body that is not JSON goes through unchanged."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] != method or scope["path"] != path:
                await app(scope, receive, send)
                return
            raw = b""
            while True:
                message = await receive()
                raw += message.get("body", b"")
                if not message.get("more_body"):
                    break
            with contextlib.suppress(ValueError):
                raw = json.dumps(rewrite(json.loads(raw)), ensure_ascii=False).encode()
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(raw)).encode()))
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}

            await app({**scope, "headers": headers}, replay, send)

        return wrapped

    return wrap


def each_record(change: Callable[[dict[str, Any]], None]) -> BodyRewrite:
    """A body rewrite that applies `change` to every record of a metric batch."""

    def rewrite(body: Any) -> Any:
        for record in body.get("records", []) if isinstance(body, dict) else []:
            if isinstance(record, dict):
                change(record)
        return body

    return rewrite
