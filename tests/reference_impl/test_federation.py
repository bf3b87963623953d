"""A whole federation in one process: onboarding, hierarchical resolution, upward reports.

Nodes talk to each other through `Loopback`, an httpx transport that hands each request to
the app whose base URL it names, so no socket is opened and every node runs its real code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from reference_impl.app import create_app
from reference_impl.demo import DEMO_CLIENT, federation
from spec import default

BASE_PORT = 18400
OWNER = {"uscc": "91350100M000100Y43", "name": "福建闽算智造有限公司"}


class Loopback(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.apps: dict[str, Starlette] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        if base not in self.apps:
            raise httpx.ConnectError(f"nothing listens at {base}", request=request)
        return await httpx.ASGITransport(app=self.apps[base]).handle_async_request(request)


class Federation:
    def __init__(self, tmp_path: Path) -> None:
        self.demo = federation(default(), BASE_PORT, tmp_path)
        self.loopback = Loopback()
        self.clients: dict[str, TestClient] = {}
        for key, config in self.demo.configs.items():  # parents first
            app = create_app(config, transport=self.loopback)
            self.loopback.apps[config.base_url] = app
            client = TestClient(app, base_url=config.base_url)
            client.__enter__()
            self.clients[key] = client

    def auth(self, key: str, scope: str) -> dict[str, str]:
        token = self.clients[key].post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(DEMO_CLIENT, self.demo.demo_secret),
        )
        assert token.status_code == 200, token.text
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def code(self, key: str) -> str:
        return str(self.clients[key].get("/v1/service-info").json()["nodeCode"])

    def close(self) -> None:
        for client in reversed(self.clients.values()):
            client.__exit__(None, None, None)


@pytest.fixture
def federated(tmp_path: Path) -> Iterator[Federation]:
    running = Federation(tmp_path)
    yield running
    running.close()


def _eventually(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_nodes_onboard_and_get_their_codes(federated: Federation) -> None:
    assert federated.code("guangdong") == "R4400001E"
    assert federated.code("beijing") == "R11000018"
    assert federated.code("guangdong-manufacturing") == "I44C3801D"
    record = (
        federated.clients["national"]
        .get("/v1/nodes/I44C3801D", headers=federated.auth("national", "registry:read"))
        .json()
    )
    assert (record["status"], record["parentNodeCode"]) == ("active", "R4400001E")


def test_identifier_from_industry_resolves_everywhere(federated: Federation) -> None:
    registered = federated.clients["guangdong-manufacturing"].post(
        "/v1/identifiers",
        json={"resType": "GPU", "owner": OWNER},
        headers=federated.auth("guangdong-manufacturing", "ids:write"),
    )
    assert registered.status_code == 201, registered.text
    identifier = registered.json()["identifier"]
    assert identifier.startswith("I44C3801D-GPU-")
    for key in ("national", "beijing", "guangdong"):
        answer = federated.clients[key].get(
            f"/v1/identifiers/{identifier}", headers=federated.auth(key, "ids:read")
        )
        assert answer.status_code == 200, (key, answer.text)
        body = answer.json()
        assert (body["authority"], body["source"]) == ("I44C3801D", "proxied"), key


def test_industry_reports_its_identifiers_to_its_region(federated: Federation) -> None:
    registered = (
        federated.clients["guangdong-manufacturing"]
        .post(
            "/v1/identifiers",
            json={"resType": "NPU", "owner": OWNER},
            headers=federated.auth("guangdong-manufacturing", "ids:write"),
        )
        .json()["identifier"]
    )
    headers = federated.auth("guangdong", "ids:read")

    def listed_at_region() -> bool:
        page = (
            federated.clients["guangdong"]
            .get("/v1/identifiers?issuer=I44C3801D", headers=headers)
            .json()
        )
        return registered in {item["identifier"] for item in page["items"]}

    assert _eventually(listed_at_region)


def test_restart_keeps_the_node_code(tmp_path: Path) -> None:
    first = Federation(tmp_path)
    codes = {key: first.code(key) for key in first.clients}
    first.close()
    second = Federation(tmp_path)
    try:
        assert {key: second.code(key) for key in second.clients} == codes
    finally:
        second.close()
