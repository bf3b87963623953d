"""Building blocks for the core class's faults: app wrappers that rewrite a whole request or a
whole response, as a misbehaving framework layer or proxy in front of a node would."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_impl.calls import Call, Handler, Reply
from reference_impl.faults import FaultSite


@dataclass
class Answer:
    """A whole HTTP response, as a fault may rewrite it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        return next((v.decode("latin-1") for k, v in self.headers if k.lower() == wanted), None)

    def set_header(self, name: str, value: str | None) -> None:
        wanted = name.lower().encode()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != wanted]
        if value is not None:
            self.headers.append((name.lower().encode(), value.encode("latin-1")))

    @property
    def media(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip()

    def json(self) -> Any:
        return json.loads(self.body)

    def set_json(self, document: Any, media: str | None = None) -> None:
        self.body = json.dumps(document, ensure_ascii=False).encode()
        self.set_header("content-length", str(len(self.body)))
        if media is not None:
            self.set_header("content-type", media)


@dataclass
class Sent:
    """A whole HTTP request, as a fault may rewrite it before the node sees it."""

    scope: Scope
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def method(self) -> str:
        return str(self.scope["method"]).upper()

    @property
    def media(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


ResponseRewrite = Callable[[Sent, Answer], Answer]
RequestRewrite = Callable[[Sent], Sent | Answer]


def rewrite_exchange(
    request: RequestRewrite | None = None, response: ResponseRewrite | None = None
) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapper: the request passes through `request` (which may answer it itself) and
    the complete response through `response`."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            body = await _read_body(receive)
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in scope.get("headers", [])
            }
            sent = Sent(scope, body, headers)
            if request is not None:
                rewritten = request(sent)
                if isinstance(rewritten, Answer):
                    await _send_answer(send, rewritten)
                    return
                sent = rewritten
            await _run(app, sent, response, send)

        return wrapped

    return wrap


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _run(app: ASGIApp, sent: Sent, response: ResponseRewrite | None, send: Send) -> None:
    scope = dict(sent.scope)
    scope["headers"] = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in sent.headers.items()]
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": sent.body, "more_body": False}

    if response is None:
        await app(scope, receive, send)
        return
    start: Message = {}
    parts: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, capture)
    answer = Answer(int(start["status"]), list(start.get("headers", [])), b"".join(parts))
    answer = response(sent, answer)
    answer.set_header("content-length", str(len(answer.body)))
    await _send_answer(send, answer)


async def _send_answer(send: Send, answer: Answer) -> None:
    answer.set_header("content-length", str(len(answer.body)))
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body})


def problem_answer(status: int, slug: str, title: str, path: str) -> Answer:
    answer = Answer(status, [], b"")
    answer.set_json(
        {
            "type": f"https://cpin.example/spec/v1/problems/{slug}",
            "title": title,
            "status": status,
            "instance": path,
        },
        media="application/problem+json",
    )
    return answer


def wrap_reply(
    site: FaultSite, operation_ids: list[str], change: Callable[[Call, Reply], Reply]
) -> None:
    """Change what handlers answer (the app still stamps and serialises it)."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            return change(call, await handler(call))

        return wrapped

    for operation_id in operation_ids:
        site.wrap_handler(operation_id, wrap)


def wrap_call(
    site: FaultSite,
    operation_ids: list[str],
    around: Callable[[Handler, Call], Awaitable[Reply]],
) -> None:
    """Run handlers through `around(handler, call)`, which may change the call or rerun it."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            return await around(handler, call)

        return wrapped

    for operation_id in operation_ids:
        site.wrap_handler(operation_id, wrap)


def route_pattern(template: str) -> re.Pattern[str]:
    """The regex of an OpenAPI path template (`/v1/nodes/{nodeCode}`)."""
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
