"""Real node processes for tests that need sockets or signals; always stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ENV = {**os.environ, "CPIN_DEMO_CLIENT_SECRET": "test-demo-secret",
       "CPIN_ONBOARDING_SECRET": "test-onboarding-secret"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_block(size: int, start: int = 18700, stop: int = 28700) -> int:
    """The first port of `size` consecutive free loopback ports (a federation's layout)."""
    for base in range(start, stop, size):
        sockets = []
        try:
            for port in range(base, base + size):
                probe = socket.socket()
                sockets.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    raise RuntimeError(f"no {size} consecutive free ports from {start} to {stop}")


def cpin(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "cpin", *args], env=ENV, stdout=output, stderr=subprocess.STDOUT
        )


def wait_serving(base_url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the node at {base_url} exited"
        try:
            if httpx.get(f"{base_url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"the node at {base_url} did not start")


def token(
    base_url: str, scope: str, secret: str = ENV["CPIN_DEMO_CLIENT_SECRET"]
) -> dict[str, str]:
    answer = httpx.post(
        f"{base_url}/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=("demo", secret),
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(*processes: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in reversed(processes):
            stop(process)


def cpin_run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`cpin ...` to completion, as a user runs it: exit code, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "cpin", *args],
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
