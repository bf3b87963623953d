"""The two servers scripts/bench_resolution.py compares, each in its own process.

    _bench_server.py node --port P --data DIR --upstream URL --rate-limit N
    _bench_server.py bare --port P --answer DIR

Both are served by `serve`, so they run with the same uvicorn settings, which are those of
`cpin node` (cpin/node_command.py: one worker, log level warning, uvicorn's
default loop and HTTP implementation). The node is a regional node that already knows its
NodeCode, so it serves its pre-built registry without onboarding; its upstream is a loopback
port nobody listens on (a node that knows its code keeps serving when its parent is away, and
no background report of a million identifiers competes with the measurement). The demo
client's secret arrives only through CPIN_DEMO_CLIENT_SECRET, as for `cpin node`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

from cpin.node_command import settle_heap
from reference_impl.app import create_app
from reference_impl.demo import DEMO_CLIENT
from reference_impl.node import NodeConfig
from spec import default

NODE_CODE = "R4400001E"
PARENT_CODE = "N0000001U"
PROVINCE = "44"
DEMO_SECRET_ENV = "CPIN_DEMO_CLIENT_SECRET"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def serve(app: Any, port: int) -> None:
    """The one server configuration both contenders share (that of `cpin node`, whose start-up
    objects are frozen out of garbage collection too)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    settle_heap()
    uvicorn.Server(config).run()


def node_app(port: int, data: Path, upstream: str, rate_limit: int) -> Any:
    config = NodeConfig(
        role="regional",
        data_dir=data,
        port=port,
        upstream=upstream,
        province=PROVINCE,
        node_code=NODE_CODE,
        parent=PARENT_CODE,
        rate_limit_per_minute=rate_limit,
        clients=[(DEMO_CLIENT, os.environ[DEMO_SECRET_ENV], set(default().scopes))],
    )
    return create_app(config)


def bare_app(answer: Path) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A plain ASGI callable answering every request with one recorded resolution answer:
    the same body bytes and the same response headers (uvicorn adds date and server to both)."""
    body = (answer / "body").read_bytes()
    recorded: dict[str, str] = json.loads((answer / "headers.json").read_text(encoding="utf-8"))
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in recorded.items()]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    finish = {"type": "http.response.body", "body": body}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:  # bounded by the server's life: shutdown ends it
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await send(start)
            await send(finish)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    node = kinds.add_parser("node")
    node.add_argument("--port", type=int, required=True)
    node.add_argument("--data", type=Path, required=True)
    node.add_argument("--upstream", required=True)
    node.add_argument("--rate-limit", type=int, required=True)
    bare = kinds.add_parser("bare")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--answer", type=Path, required=True)
    args = parser.parse_args()
    app = (
        node_app(args.port, args.data, args.upstream, args.rate_limit)
        if args.kind == "node"
        else bare_app(args.answer)
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it stopped on
        serve(app, args.port)


if __name__ == "__main__":
    main()
