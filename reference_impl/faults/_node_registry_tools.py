"""Building blocks for node-registry and federation faults: a lenient front end that changes a
request's JSON body before the node validates it, and handler wrappers that change a reply."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_impl.calls import Call, Handler, Reply

JsonRewrite = Callable[[Any], Any]


def rewrite_request_json(
    method: str, path: str, rewrite: JsonRewrite
) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper that passes the JSON body of `method` requests whose path matches the
    regular expression `path` through `rewrite` (bodies that are not JSON pass unchanged)."""
    pattern = re.compile(path)

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if (
                scope["type"] != "http"
                or scope["method"] != method
                or not pattern.fullmatch(scope["path"])
            ):
                await app(scope, receive, send)
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            with contextlib.suppress(ValueError):
                body = json.dumps(rewrite(json.loads(body)), ensure_ascii=False).encode()
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app({**scope, "headers": headers}, replay, send)

        return wrapped

    return wrap


def rewrite_reply(rewrite: Callable[[Call, Reply], Reply]) -> Callable[[Handler], Handler]:
    """A handler wrapper that passes every reply of the handler through `rewrite`."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            return rewrite(call, await handler(call))

        return wrapped

    return wrap


def rewrite_call(rewrite: Callable[[Call], None]) -> Callable[[Handler], Handler]:
    """A handler wrapper that changes the validated call (its body, its headers) in place
    before the handler sees it."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            rewrite(call)
            return await handler(call)

        return wrapped

    return wrap
