"""Building blocks for faults that change a request before the node validates it, as a
lenient front end would (clamping a value, defaulting a member, dropping a bad parameter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from reference_impl.faults._transport import rewrite_request_json as rewrite_json

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
    """The JSON body of requests with one of `methods` under `path_prefix`, rewritten."""
    return rewrite_json(lambda scope: _applies(scope, methods, path_prefix), rewrite)


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
