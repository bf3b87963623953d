"""Reference nodes for tests, in process, with every answer checked against the spec."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from reference_impl.app import create_app
from reference_impl.node import Node, NodeConfig

NODE_CODES = {"national": "N0000001U", "regional": "R4400001E", "industry": "I44C3801D"}
PARENTS = {"regional": "N0000001U", "industry": "R4400001E"}


@dataclass
class RunningNode:
    client: TestClient
    node: Node

    def auth(self, scopes: str) -> dict[str, str]:
        """Headers carrying a valid token of this node with the given scopes."""
        token, _ = self.node.security.issue("test-client", set(scopes.split()))
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """`node_factory(role, **config)` starts a node; all are stopped after the test."""
    clients: list[TestClient] = []

    def make(role: str = "regional", **overrides: Any) -> RunningNode:
        settings: dict[str, Any] = {
            "node_code": NODE_CODES[role],
            "parent": PARENTS.get(role),
            "upstream": "http://127.0.0.1:8001" if role in PARENTS else None,
            "validate_responses": True,
            **overrides,
        }
        config = NodeConfig(role=role, data_dir=tmp_path / f"{role}-{len(clients)}", **settings)
        app = create_app(config)
        client = TestClient(app, base_url=config.base_url)
        client.__enter__()
        clients.append(client)
        return RunningNode(client, app.state.node)

    yield make
    for client in clients:
        client.__exit__(None, None, None)
