"""Building blocks for node-registry and federation faults: a lenient front end that changes a
request's JSON body before the node validates it, and handler wrappers that change a reply."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp

from reference_impl.calls import Call, Handler, Reply
from reference_impl.faults._transport import rewrite_request_json as rewrite_json

JsonRewrite = Callable[[Any], Any]


def rewrite_request_json(
    method: str, path: str, rewrite: JsonRewrite
) -> Callable[[ASGIApp], ASGIApp]:
    """The JSON body of `method` requests whose path matches the regular expression `path`,
    rewritten."""
    pattern = re.compile(path)
    return rewrite_json(
        lambda scope: scope["method"] == method and bool(pattern.fullmatch(scope["path"])),
        rewrite,
    )


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
