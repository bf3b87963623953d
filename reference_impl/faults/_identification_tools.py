"""App wrappers for the identification faults: a front end that rewrites problem answers,
requests or headers on the identifier paths, as a broken gateway or validation layer would."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spec import ID_BASE, Spec

IDENTIFIER_PATHS = "/v1/identifiers"
ProblemChange = Callable[[Scope, int, str], tuple[int, str] | None]
RequestChange = Callable[[Scope, bytes], tuple[Scope, bytes]]
HeaderChange = Callable[[Scope, int, list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]]


def on_identifiers(scope: Scope) -> bool:
    return scope["type"] == "http" and str(scope["path"]).startswith(IDENTIFIER_PATHS)


def problem_titles(spec: Spec) -> dict[str, str]:
    titles = {}
    for entry in spec.codelist("problem-type"):
        title = entry.get("title", entry["const"])
        titles[entry["const"]] = str(title.get("en", entry["const"]) if isinstance(title, dict)
                                     else title)  # fmt: skip
    return titles


def rewrite_problems(spec: Spec, change: ProblemChange) -> Callable[[ASGIApp], ASGIApp]:
    """Problem answers on identifier paths whose (status, slug) `change` maps to another."""
    titles = problem_titles(spec)

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if not on_identifiers(scope):
                await app(scope, receive, send)
                return
            start: Message | None = None
            chunks: list[bytes] = []

            async def sending(message: Message) -> None:
                nonlocal start
                if message["type"] == "http.response.start":
                    media = dict(message.get("headers", [])).get(b"content-type", b"")
                    if not media.startswith(b"application/problem+json"):
                        await send(message)
                        return
                    start = message
                    return
                if start is None:
                    await send(message)
                    return
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = json.loads(b"".join(chunks))
                slug = str(body.get("type", "")).removeprefix(f"{ID_BASE}problems/")
                changed = change(scope, int(start["status"]), slug)
                if changed is not None:
                    status, new_slug = changed
                    body.update(type=f"{ID_BASE}problems/{new_slug}", status=status,
                                title=titles.get(new_slug, new_slug))  # fmt: skip
                    start = {**start, "status": status}
                raw = json.dumps(body, ensure_ascii=False).encode()
                headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
                headers.append((b"content-length", str(len(raw)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": raw})

            await app(scope, receive, sending)

        return wrapped

    return wrap


def rewrite_requests(change: RequestChange) -> Callable[[ASGIApp], ASGIApp]:
    """Requests on identifier paths, scope and whole body, as `change` returns them."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if not on_identifiers(scope):
                await app(scope, receive, send)
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            new_scope, body = change(scope, b"".join(chunks))
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(new_scope, replay, send)

        return wrapped

    return wrap


def rewrite_identifier_headers(change: HeaderChange) -> Callable[[ASGIApp], ASGIApp]:
    """Response headers on identifier paths, as `change` returns them."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if not on_identifiers(scope):
                await app(scope, receive, send)
                return

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    message = {**message, "headers": change(scope, message["status"], headers)}
                await send(message)

            await app(scope, receive, sending)

        return wrapped

    return wrap
