"""Building blocks for faults that rewrite what the node sends, as a broken proxy would."""

from __future__ import annotations

from collections.abc import Callable

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
