"""schemathesis against every role of the reference node: all checks, every phase, authenticated.

This is the run `st run spec/openapi.yaml --url ... -c all --phases
examples,coverage,fuzzing,stateful` makes, driven in process against a node served by uvicorn
on 127.0.0.1, restricted to the operations whose `x-roles` name the node's role, through the
harness's own driver (conformance.fuzzing: its hooks teach schemathesis the rules JSON Schema
cannot state), so the reference node is fuzzed exactly as a vendor's node is. A failure is
reported with the check, the node's answer and the request as curl.

The budget is bounded by counts, never by time (TOOLING.md: `--max-time` is spent, not capped):
a fixed seed (a red run replays), 15 examples per operation in the fuzzing phase plus the
coverage phase's boundary cases, 15 stateful scenarios of at most 6 steps along the spec's
links, no shrinking, one worker. Unlike a certification run at a live federation, every
operation is fuzzed, the registry's writes too: this node stands alone. Its upstream is a
port that never listens, so node-to-node calls get the documented 502 at once.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from conformance.fuzzing import STATEFUL, STATELESS, FuzzTarget, fuzz
from reference_impl.app import create_app
from reference_impl.node import NodeConfig
from spec import default

from .conftest import NODE_CODES, PARENTS

SPEC = default()
ROLES = ("national", "regional", "industry")
CLIENT_ID = "schemathesis"
# Far above what a run sends (and the largest service-info allows): a 429 is documented, but
# it would hide what the node does with the requests it refused.
RATE_LIMIT = 1_000_000
BUDGET = {
    "fuzzPhases": [*STATELESS, *STATEFUL],
    "fuzzExamples": 15,
    "statefulExamples": 15,
    "statefulSteps": 6,
    "requestTimeoutS": 10,
}
SEED = 20261124


@dataclass
class Served:
    role: str
    base_url: str
    token: str
    secret: str


def _bound_socket() -> socket.socket:
    """A loopback TCP socket on a free port. IPPROTO_TCP is named, not left 0: asyncio sets
    TCP_NODELAY only on sockets that say so, and without it every answer waited 40 ms for a
    delayed ACK (Nagle), which tripled the run time."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(params=ROLES)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """A node of the role, served on a free loopback port until the test ends.

    Its upstream is a port bound but never listening, so node-to-node calls are refused at once
    and answered with the documented 502 (no federation exists in this test)."""
    role: str = request.param
    listener, dead_upstream = _bound_socket(), _bound_socket()
    secret = secrets.token_urlsafe(24)
    config = NodeConfig(
        role=role,
        data_dir=tmp_path / role,
        port=listener.getsockname()[1],
        node_code=NODE_CODES[role],
        parent=PARENTS.get(role),
        upstream=f"http://127.0.0.1:{dead_upstream.getsockname()[1]}" if role in PARENTS else None,
        rate_limit_per_minute=RATE_LIMIT,
        clients=[(CLIENT_ID, secret, set(SPEC.scopes))],
    )
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the node did not start"
        time.sleep(0.02)
    token, _ = app.state.node.security.issue(CLIENT_ID, set(SPEC.scopes))
    try:
        yield Served(role, config.base_url, token, secret)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
        dead_upstream.close()


def test_schemathesis_reports_no_failure(served: Served) -> None:
    target = FuzzTarget(served.base_url, served.role, served.token, CLIENT_ID, served.secret)
    result = fuzz(SPEC, target, (*STATELESS, *STATEFUL), BUDGET, SEED, excluded=set())
    problems = [
        f"{f.operation_id}: {f.check}: {f.message}\n{f.reproduction}" for f in result.findings
    ]
    assert not problems + result.errors, "\n\n".join(problems + result.errors)
    assert result.phases >= {*STATELESS, *STATEFUL}, f"phases that ran: {result.phases}"
