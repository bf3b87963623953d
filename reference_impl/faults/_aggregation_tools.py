"""Building blocks for faults that change a request before the node validates it, as a
lenient front end would (clamping a value, defaulting a member, dropping a bad parameter)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

JsonRewrite = Callable[[Any], Any]
QueryRewrite = Callable[[list[tuple[str, str]]], list[tuple[str, str]]]


def _applies(scope: Scope, methods: set[str], path_prefix: str) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] in methods
        and str(scope["path"]).startswith(path_prefix)
    )


def rewrite_request_json(
    methods: set[str], path_prefix: str, rewrite: JsonRewrite
) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper that passes the JSON body of matching requests through `rewrite`."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if not _applies(scope, methods, path_prefix):
                await app(scope, receive, send)
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            raw = b"".join(chunks)
            with contextlib.suppress(ValueError):  # not JSON: the node answers it as it would
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


def rewrite_query(
    methods: set[str], path: str, rewrite: QueryRewrite
) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper that passes the query parameters of requests to `path` through `rewrite`."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if not _applies(scope, methods, path) or scope["path"] != path:
                await app(scope, receive, send)
                return
            pairs = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
            query = urlencode(rewrite(pairs)).encode()
            await app({**scope, "query_string": query}, receive, send)

        return wrapped

    return wrap
