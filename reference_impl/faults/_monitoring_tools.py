"""Building blocks for monitoring faults: rewrite a request's JSON body before the node's
pipeline validates it, as a lenient ingestion layer in front of the node would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp

from reference_impl.faults._transport import rewrite_request_json as rewrite_json

BodyRewrite = Callable[[Any], Any]


def rewrite_request_body(
    method: str, path: str, rewrite: BodyRewrite
) -> Callable[[ASGIApp], ASGIApp]:
    """The JSON body of `method path` requests, rewritten."""
    return rewrite_json(lambda scope: scope["method"] == method and scope["path"] == path, rewrite)


def each_record(change: Callable[[dict[str, Any]], None]) -> BodyRewrite:
    """A body rewrite that applies `change` to every record of a metric batch."""

    def rewrite(body: Any) -> Any:
        for record in body.get("records", []) if isinstance(body, dict) else []:
            if isinstance(record, dict):
                change(record)
        return body

    return rewrite
