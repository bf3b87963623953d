"""Transport-level building blocks of the security faults: answer some requests before the
node sees them, or change a response's status and headers on the way out."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
StatusRewrite = Callable[[int, list[tuple[bytes, bytes]]], tuple[int, list[tuple[bytes, bytes]]]]


def intercept(matches: Callable[[str, str], bool], answer: Answer) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper that answers `answer` to every request whose (method, path) matches."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not matches(scope["method"], scope["path"]):
                await app(scope, receive, send)
                return
            status, headers, body = answer
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return wrapped

    return wrap


def rewrite_status(rewrite: StatusRewrite) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper that passes each response's status and headers through `rewrite`."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status, headers = rewrite(message["status"], list(message.get("headers", [])))
                    message = {**message, "status": status, "headers": headers}
                await send(message)

            await app(scope, receive, sending)

        return wrapped

    return wrap
