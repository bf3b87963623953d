"""The load generator of scripts/bench_resolution.py: keep-alive GETs, each timed on its own.

Two clients open `concurrency` connections to one server and give one `Fetch` per connection:

  raw    HTTP/1.1 over asyncio streams: the request line and headers out, the status line
         and Content-Length in. About a tenth of httpx's CPU per request, so a single-worker
         server on the same machine, not the client, is what runs out of CPU first.
  httpx  httpx.AsyncClient, for comparison: on a two-core machine it needs about 1 ms of CPU
         per request and saturates before a bare uvicorn endpoint does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx

Fetch = Callable[[str], Awaitable[int]]
"""GET a path on the connection it owns; the response's status, its body read whole."""

CLIENTS = ("raw", "httpx")


class ClientError(Exception):
    """The server answered something the raw client cannot read as one HTTP/1.1 response."""


@asynccontextmanager
async def connections(
    client: str, host: str, port: int, headers: dict[str, str], concurrency: int, timeout: float
) -> AsyncIterator[list[Fetch]]:
    """`concurrency` fetchers, one per keep-alive connection, closed on leaving."""
    async with AsyncExitStack() as stack:
        if client == "httpx":
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            shared = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://{host}:{port}",
                    headers=headers,
                    limits=limits,
                    timeout=timeout,
                )
            )

            async def get(path: str) -> int:
                return (await shared.get(path)).status_code

            yield [get] * concurrency
        else:
            fixed = "".join(
                f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items()
            )
            yield [
                await stack.enter_async_context(_raw(host, port, fixed, timeout))
                for _ in range(concurrency)
            ]


@asynccontextmanager
async def _raw(host: str, port: int, fixed: str, timeout: float) -> AsyncIterator[Fetch]:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)

    async def get(path: str) -> int:
        async with asyncio.timeout(timeout):
            writer.write(f"GET {path} HTTP/1.1\r\n{fixed}\r\n".encode("latin-1"))
            head = await reader.readuntil(b"\r\n\r\n")
            status, length = _status_and_length(head)
            await reader.readexactly(length)
        return status

    try:
        yield get
    finally:
        writer.close()
        await writer.wait_closed()


def _status_and_length(head: bytes) -> tuple[int, int]:
    lines = head.decode("latin-1").split("\r\n")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(lines[0].split()[1]), int(value)
    raise ClientError(f"a response without Content-Length: {lines[0]!r}")


async def drive(
    fetchers: list[Fetch], paths: list[str], latencies: list[float], failures: Counter[int]
) -> None:
    """One worker per fetcher, all taking paths from one queue; each request timed alone."""
    queue = iter(paths)

    async def worker(fetch: Fetch) -> None:
        for path in queue:  # the shared iterator hands each path to exactly one worker
            started = time.perf_counter()
            status = await fetch(path)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures[status] += 1

    await asyncio.gather(*(worker(fetch) for fetch in fetchers))
