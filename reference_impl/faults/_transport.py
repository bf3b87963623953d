"""Building blocks for faults that rewrite what the node sends, as a broken proxy would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HeaderRewrite = Callable[[int, list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]]


def rewrite_headers(rewrite: HeaderRewrite) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper that passes each response's status and headers through `rewrite`."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    message = {**message, "headers": rewrite(message["status"], headers)}
                await send(message)

            await app(scope, receive, sending)

        return wrapped

    return wrap


JsonRewrite = Callable[[Any], Any]


def rewrite_request_json(
    matches: Callable[[Scope], bool], rewrite: JsonRewrite
) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper that passes the JSON body of the requests `matches` selects through
    `rewrite`, before the node validates it, as a lenient front end would; a body that is not
    JSON goes through unchanged."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not matches(scope):
                await app(scope, receive, send)
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            raw = b"".join(chunks)
            with contextlib.suppress(ValueError):
                raw = json.dumps(rewrite(json.loads(raw)), ensure_ascii=False).encode()
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
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
