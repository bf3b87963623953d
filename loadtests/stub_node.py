"""A stand-in node that answers every operation at once with the spec's own response example.

It checks nothing and stores nothing, so it costs next to no CPU: a load run against it
measures the load generator's own ceiling (scripts/bench_load.py), and with `--delay` it is a
node of known latency for the tests of `cpin load`. Loopback only.

    python -m loadtests.stub_node --port P [--role R] [--delay OPERATION=MS ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
from typing import Any

from spec import Spec, default

__all__ = ["main", "routes"]

Route = tuple[str, re.Pattern[str], str, int, bytes]


def routes(spec: Spec, role: str) -> list[Route]:
    """(METHOD, path pattern, operationId, status, body) of every operation the role serves,
    answered with the first example of its documented success response."""
    table = []
    for path, method, operation in spec.operations():
        if role not in operation.get("x-roles", []):
            continue
        status = min(int(code) for code in operation["responses"] if code.startswith("2"))
        content: dict[str, Any] = operation["responses"][str(status)].get("content", {})
        media: dict[str, Any] = next(iter(content.values()), {})
        examples: dict[str, Any] = media.get("examples", {})
        body: Any = next(iter(examples.values()))["value"] if examples else None
        if operation["operationId"] == "getServiceInfo":
            body = dict(examples.get(role, next(iter(examples.values())))["value"], role=role)
        pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")
        payload = json.dumps(body).encode() if body is not None else b""
        table.append((method, pattern, operation["operationId"], status, payload))
    return table


class _Server:
    def __init__(self, table: list[Route], delays: dict[str, float]) -> None:
        self.table = table
        self.delays = delays

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                               if line.lower().startswith("content-length:")), 0)  # fmt: skip
                if length:
                    await reader.readexactly(length)
                writer.write(await self.answer(method, target.split("?", 1)[0]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def answer(self, method: str, path: str) -> bytes:
        for route_method, pattern, operation, status, body in self.table:
            if route_method == method and pattern.match(path):
                if delay := self.delays.get(operation):
                    await asyncio.sleep(delay)
                kind = b"Content-Type: application/json\r\n" if body else b""
                return (
                    f"HTTP/1.1 {status} -\r\nContent-Length: {len(body)}\r\n".encode()
                    + kind
                    + b"\r\n"
                    + body
                )
        return b"HTTP/1.1 404 -\r\nContent-Length: 0\r\n\r\n"


async def _run(port: int, role: str, delays: dict[str, float]) -> None:
    server = _Server(routes(default(), role), delays)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", port)
    print(f"stub node: {role} at http://127.0.0.1:{port}", flush=True)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--role", default="regional", choices=["national", "regional", "industry"])
    parser.add_argument("--delay", action="append", default=[], metavar="OPERATION=MS")
    args = parser.parse_args()
    delays = {op: float(ms) / 1000 for op, ms in (item.split("=", 1) for item in args.delay)}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.port, args.role, delays))


if __name__ == "__main__":
    main()
