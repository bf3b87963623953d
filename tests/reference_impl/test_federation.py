"""A whole federation in one process: onboarding, hierarchical resolution, upward flows of
identifiers, catalogue and metrics, federation-wide selection and forwarded tasks.

Nodes talk to each other through `Loopback`, an httpx transport that hands each request to
the app whose base URL it names, so no socket is opened and every node runs its real code.
Taking an app out of `Loopback.apps` takes that node off the network. Every answer a node
gives, to a test or to another node, is checked against the spec (`validate_responses`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from reference_impl import federation as federation_module
from reference_impl.app import create_app
from reference_impl.demo import DEMO_CLIENT, federation
from reference_impl.federation import own_measurements
from reference_impl.ids import mint_resource_id, mod37_36
from reference_impl.node import timestamp
from spec import default

BASE_PORT = 18400
OWNER = {"uscc": "91350100M000100Y43", "name": "福建闽算智造有限公司"}
PROBLEMS = "https://cpin.example/spec/v1/problems/"
NPU: dict[str, Any] = {
    "resType": "NPU",
    "name": {"zh": "松山湖智能制造NPU推理资源池", "en": "Songshan Lake NPU inference pool"},
    "owner": OWNER,
    "location": {"province": "44", "city": "东莞市"},
    "latencyClass": "5ms",
    "accelerators": [
        {
            "kind": "NPU",
            "model": "Ascend 910B",
            "count": 8,
            "memoryGiB": 64,
            "peak": [
                {"precision": "FP16", "value": 320, "unit": "TFLOPS"},
                {"precision": "INT8", "value": 640, "unit": "TOPS"},
            ],
        },
        {
            "kind": "NPU",
            "model": "Ascend 310P",
            "count": 4,
            "memoryGiB": 48,
            "peak": [{"precision": "INT8", "value": 140, "unit": "TOPS"}],
        },
    ],
    "energy": {"pue": 1.3, "renewableShare": 0.2},
    "price": {"amount": 6.5, "currency": "CNY", "per": "h"},
    "servingState": "production",
    "healthState": "ok",
    "capacity": {"acceleratorsTotal": 12},
    "extensions": {"x-dg-park": "松山湖高新区"},
}
TASK: dict[str, Any] = {
    "name": "质检图像推理批处理",
    "resources": {"acceleratorCount": 4},
    "executors": [{"image": "registry.dg.example.cn/qc/infer:1.0", "command": ["/bin/infer"]}],
    "durationSeconds": 600,
}
STAMPS = {"createdAt": "2026-03-03T04:00:00.000Z", "updatedAt": "2026-03-03T04:00:00.000Z"}
DEMAND: dict[str, Any] = {
    "acceleratorType": "NPU",
    "precision": "FP16",
    "minPeak": {"value": 300, "unit": "TFLOPS"},
    "acceleratorCount": 4,
}


class Loopback(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.apps: dict[str, Starlette] = {}
        self.dropping: set[str] = set()
        self.requests: list[tuple[str, str]] = []

    def drop_next(self, base_url: str) -> None:
        """The next request to this node meets a connection the node closes without answering
        (a pooled keep-alive connection it was closing for idleness)."""
        self.dropping.add(base_url)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        self.requests.append((request.method, str(request.url)))
        if base not in self.apps:
            raise httpx.ConnectError(f"nothing listens at {base}", request=request)
        if base in self.dropping:
            self.dropping.discard(base)
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return await httpx.ASGITransport(app=self.apps[base]).handle_async_request(request)


class Federation:
    def __init__(self, tmp_path: Path) -> None:
        self.demo = federation(default(), BASE_PORT, tmp_path)
        self.loopback = Loopback()
        self.clients: dict[str, TestClient] = {}
        self.apps: dict[str, Starlette] = {}
        for key, config in self.demo.configs.items():  # parents first
            config.validate_responses = True
            app = create_app(config, transport=self.loopback)
            self.apps[key] = app
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

    def get(self, key: str, path: str, scope: str) -> httpx.Response:
        return self.clients[key].get(path, headers=self.auth(key, scope))

    def post(self, key: str, path: str, scope: str, body: Any) -> httpx.Response:
        return self.clients[key].post(path, json=body, headers=self.auth(key, scope))

    def register(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.post(key, "/v1/resources", "catalogue:write", body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def mint(self, key: str, res_type: str) -> str:
        """A new identifier registered at node `key`."""
        answer = self.post(
            key, "/v1/identifiers", "ids:write", {"resType": res_type, "owner": OWNER}
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["identifier"])

    def issued_by(self, key: str, issuer: str) -> dict[str, str]:
        """The identifiers of `issuer` that node `key` lists, with their states."""
        query = f"/v1/identifiers?issuer={issuer}&limit=100"
        page = self.get(key, query, "ids:read").json()
        return {item["identifier"]: item["state"] for item in page["items"]}

    def listed(self, key: str, resource_id: str, **query: str) -> bool:
        params = "&".join(f"{k}={v}" for k, v in {"limit": "100", **query}.items())
        page = self.get(key, f"/v1/resources?{params}", "catalogue:read").json()
        return resource_id in {item["resourceId"] for item in page["items"]}

    def offline(self, key: str) -> None:
        del self.loopback.apps[self.demo.configs[key].base_url]

    def online(self, key: str) -> None:
        self.loopback.apps[self.demo.configs[key].base_url] = self.apps[key]

    def assertion(self, caller: str, audience: str) -> dict[str, str]:
        """A node-to-node token that `caller` signs for `audience` (CPIN-FED-003)."""
        node = self.apps[caller].state.node
        return {"Authorization": f"Bearer {node.security.node_assertion(audience)}"}

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
    identifier = federated.mint("guangdong-manufacturing", "GPU")
    assert identifier.startswith("I44C3801D-GPU-")
    for key in ("national", "beijing", "guangdong"):
        answer = federated.clients[key].get(
            f"/v1/identifiers/{identifier}", headers=federated.auth(key, "ids:read")
        )
        assert answer.status_code == 200, (key, answer.text)
        body = answer.json()
        assert (body["authority"], body["source"]) == ("I44C3801D", "proxied"), key


def test_industry_reports_its_identifiers_to_its_region(federated: Federation) -> None:
    registered = federated.mint("guangdong-manufacturing", "NPU")
    assert _eventually(lambda: registered in federated.issued_by("guangdong", "I44C3801D"))


def test_restart_keeps_the_node_code(tmp_path: Path) -> None:
    first = Federation(tmp_path)
    codes = {key: first.code(key) for key in first.clients}
    first.close()
    second = Federation(tmp_path)
    try:
        assert {key: second.code(key) for key in second.clients} == codes
    finally:
        second.close()


def problem_of(answer: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEMS + slug, body
    return body


def test_catalogue_flows_up_unchanged_and_withdrawals_follow(federated: Federation) -> None:
    """CPIN-AGG-019/020/021/022: industry -> regional -> national, updates and withdrawal."""
    record = federated.register("guangdong-manufacturing", NPU)
    resource_id = record["resourceId"]
    assert _eventually(lambda: federated.listed("national", resource_id), 10)
    assert federated.listed("guangdong", resource_id, origin="I44C3801D")
    assert federated.listed("national", resource_id, origin="R4400001E")
    for key in ("guangdong", "national"):
        copy_ = federated.get(key, f"/v1/resources/{resource_id}", "catalogue:read").json()
        assert copy_ == {**record, "origin": "I44C3801D"}, key
    assert not federated.listed("beijing", resource_id)

    client = federated.clients["guangdong-manufacturing"]
    path = f"/v1/resources/{resource_id}"
    etag = client.get(path, headers=federated.auth("guangdong-manufacturing", "catalogue:read"))
    updated = client.patch(
        path,
        content='{"servingState": "draining"}',
        headers={
            **federated.auth("guangdong-manufacturing", "catalogue:write"),
            "If-Match": etag.headers["ETag"],
            "Content-Type": "application/merge-patch+json",
        },
    )
    assert updated.status_code == 200, updated.text

    def national_copy() -> dict[str, Any]:
        return dict(federated.get("national", path, "catalogue:read").json())

    assert _eventually(lambda: national_copy().get("servingState") == "draining")
    assert national_copy() == {**updated.json(), "origin": "I44C3801D"}

    gone = client.delete(path, headers=federated.auth("guangdong-manufacturing", "catalogue:write"))
    assert gone.status_code == 204, gone.text
    assert _eventually(lambda: not federated.listed("national", resource_id))
    for key in ("guangdong", "national"):
        problem_of(federated.get(key, path, "catalogue:read"), 404, "not-found")
        assert not federated.listed(key, resource_id)


def test_a_regional_resource_reaches_the_national_index(federated: Federation) -> None:
    resource_id = federated.register("beijing", {**NPU, "location": {"province": "11"}})[
        "resourceId"
    ]
    assert resource_id.startswith("R11000018-NPU-")
    assert _eventually(lambda: federated.listed("national", resource_id, origin="R11000018"))


def test_identifier_copies_travel_on_to_the_national_node(federated: Federation) -> None:
    """CPIN-ID-030/031: the regional node passes its industry node's reports on, revocations too."""
    minted = federated.mint("guangdong-manufacturing", "CPU")
    own = federated.mint("guangdong", "STO")

    def state_at_national(identifier: str) -> str | None:
        return federated.issued_by("national", identifier[:9]).get(identifier)

    assert _eventually(lambda: state_at_national(minted) == "active")
    assert _eventually(lambda: state_at_national(own) == "active")
    revoked = federated.clients["guangdong-manufacturing"].delete(
        f"/v1/identifiers/{minted}", headers=federated.auth("guangdong-manufacturing", "ids:write")
    )
    assert revoked.status_code == 200, revoked.text
    assert _eventually(lambda: state_at_national(minted) == "revoked")


def test_own_measurements_never_add_precisions() -> None:
    """Rated peak per resource and precision; the L2 score counts resources in health ok."""
    resource = {**NPU, "resourceId": mint_resource_id("I44C3801D", "NPU", 1)}
    sick = {
        **resource,
        "resourceId": mint_resource_id("I44C3801D", "NPU", 2),
        "healthState": "critical",
    }
    records = own_measurements("I44C3801D", [resource, sick], "2026-03-05T03:00:00.000Z")
    peaks = {
        (r["subject"]["resourceId"], r["precision"]): (r["value"], r["unit"])
        for r in records
        if r["level"] == "L0"
    }
    assert peaks[(resource["resourceId"], "FP16")] == (2560.0, "TFLOPS")
    assert peaks[(resource["resourceId"], "INT8")] == (8 * 640 + 4 * 140, "TOPS")
    assert len(peaks) == 4
    (score,) = [r for r in records if r["level"] == "L2"]
    assert (score["subject"], score["value"], score["unit"]) == (
        {"nodeCode": "I44C3801D"},
        5.0,
        "score",
    )
    assert own_measurements("I44C3801D", [], "2026-03-05T03:00:00.000Z")[0]["value"] == 10.0


@pytest.fixture
def measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Federation]:
    """A federation whose nodes measure themselves every 0.5 s instead of every 30 s."""
    monkeypatch.setattr(federation_module, "MEASURE_INTERVAL", timedelta(seconds=0.5))
    running = Federation(tmp_path)
    yield running
    running.close()


def test_metrics_flow_up_to_the_national_node(measuring: Federation) -> None:
    """CPIN-MON-011/012: the industry node's own records reach its region and the national
    node; a record pushed to a regional node by its client travels on as well."""
    resource_id = measuring.register("guangdong-manufacturing", NPU)["resourceId"]
    now = timestamp(measuring.apps["guangdong"].state.node.now())
    pushed = {
        "subject": {"nodeCode": "R4400001E"},
        "level": "L1",
        "category": "energy",
        "value": 6.5,
        "unit": "score",
        "timestamp": now,
        "validitySeconds": 300,
    }
    answer = measuring.post("guangdong", "/v1/metrics", "metrics:write", {"records": [pushed]})
    assert answer.json() == {"accepted": 1, "rejected": []}

    def records(key: str, query: str) -> list[dict[str, Any]]:
        page = measuring.get(key, f"/v1/metrics?{query}&limit=100", "metrics:read").json()
        return list(page["items"])

    def peak_at(key: str) -> bool:
        return any(r.get("precision") == "FP16" for r in records(key, f"resourceId={resource_id}"))

    for key in ("guangdong", "national"):
        assert _eventually(lambda key=key: peak_at(key)), key
        levels = {r["level"] for r in records(key, "nodeCode=I44C3801D")}
        assert "L2" in levels, key
    assert _eventually(
        lambda: any(
            r["timestamp"] == now for r in records("national", "nodeCode=R4400001E&level=L1")
        )
    )
    rollup = measuring.get("national", "/v1/monitoring/rollup", "metrics:read").json()
    fp16 = {f["precision"]: f for f in rollup["byPrecision"]}["FP16"]
    assert fp16["peak"] == {"value": 2560.0, "unit": "TFLOPS"}
    status = measuring.get("guangdong", "/v1/monitoring/status", "metrics:read").json()
    children = {c["nodeCode"]: c for c in status["children"]}
    assert children["I44C3801D"]["fresh"] is True


def test_selection_sees_the_whole_federation(federated: Federation) -> None:
    """CPIN-SEL-015: a resource of the industry node is a candidate at Beijing, and the other
    way round, through the national index."""
    industrial = federated.register("guangdong-manufacturing", NPU)["resourceId"]
    capital = federated.register("beijing", {**NPU, "location": {"province": "11"}})["resourceId"]

    def candidates(key: str) -> set[str]:
        answer = federated.post(key, "/v1/selections", "selection", DEMAND)
        assert answer.status_code == 201, answer.text
        return {c["resourceId"] for c in answer.json()["candidates"]}

    assert _eventually(lambda: all(federated.listed("national", r) for r in (industrial, capital)))
    assert candidates("beijing") == {industrial, capital}  # the index is fetched now, not before
    assert candidates("guangdong-manufacturing") == {industrial, capital}
    assert candidates("national") == {industrial, capital}


def test_tasks_are_forwarded_to_the_owning_node(federated: Federation) -> None:
    """CPIN-SCHED-010/011: created at the owner, named there, mirrored here, canceled there."""
    resource_id = federated.register("guangdong-manufacturing", NPU)["resourceId"]
    created = federated.post(
        "beijing", "/v1/tasks", "tasks:write", {**TASK, "resourceId": resource_id}
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["nodeCode"], task["forwardedTo"]) == ("I44C3801D", "I44C3801D")
    assert task["state"] == "QUEUED" and len(task["stateHistory"]) == 1
    assert created.headers["Location"] == f"/v1/tasks/{task['taskId']}"

    capacity = f"/v1/resources/{resource_id}/capacity"

    def allocated() -> int:
        body = federated.get("guangdong-manufacturing", capacity, "tasks:read").json()
        return int(body["acceleratorsAllocated"])

    assert allocated() == 4
    path = f"/v1/tasks/{task['taskId']}"
    assert _eventually(
        lambda: federated.get("beijing", path, "tasks:read").json()["state"] == "RUNNING"
    )
    mirrored = federated.get("beijing", path, "tasks:read").json()
    assert [s["state"] for s in mirrored["stateHistory"]] == ["QUEUED", "INITIALIZING", "RUNNING"]
    assert mirrored["forwardedTaskId"] == task["forwardedTaskId"]

    canceled = federated.post("beijing", f"{path}/cancel", "tasks:write", None)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["state"] == "CANCELED"
    assert allocated() == 0
    problem_of(federated.post("beijing", f"{path}/cancel", "tasks:write", None), 409,
               "illegal-state-transition")  # fmt: skip
    events = federated.get("beijing", "/v1/audit-events?limit=100", "audit:read").json()["items"]
    actions = [e["action"] for e in events]
    assert actions.count("task.created") == 1 and actions.count("task.canceled") == 1


def test_the_owners_refusals_are_passed_on(federated: Federation) -> None:
    """CPIN-FED-007: the owning node's 404 and 409 reach the client unchanged; no task is left."""
    resource_id = federated.register("guangdong-manufacturing", NPU)["resourceId"]
    draining = federated.register("guangdong-manufacturing", {**NPU, "servingState": "draining"})

    def submit(key: str, resource: str, count: int = 4) -> httpx.Response:
        body = {
            **copy.deepcopy(TASK),
            "resourceId": resource,
            "resources": {"acceleratorCount": count},
        }
        return federated.post(key, "/v1/tasks", "tasks:write", body)

    problem_of(submit("beijing", resource_id, 13), 409, "capacity-exhausted")
    problem_of(submit("national", draining["resourceId"]), 409, "conflict")
    problem_of(submit("beijing", mint_resource_id("I44C3801D", "NPU", 99)), 404, "not-found")
    problem_of(submit("beijing", mint_resource_id("R4500001O", "GPU", 1)), 404, "not-found")
    for key in ("beijing", "national"):
        assert federated.get(key, "/v1/tasks", "tasks:read").json()["items"] == []
    assert _eventually(lambda: federated.listed("guangdong", resource_id))
    via_copy = submit("guangdong", resource_id)
    assert via_copy.status_code == 201, via_copy.text
    assert via_copy.json()["forwardedTo"] == "I44C3801D"


def test_an_unreachable_owner_is_502(federated: Federation) -> None:
    """CPIN-FED-008: the owner off the network; getTask keeps answering the last state known."""
    resource_id = federated.register("guangdong-manufacturing", NPU)["resourceId"]
    body = {**TASK, "resourceId": resource_id}
    created = federated.post("beijing", "/v1/tasks", "tasks:write", body).json()
    federated.offline("guangdong-manufacturing")
    problem_of(
        federated.post("beijing", "/v1/tasks", "tasks:write", body), 502, "upstream-unavailable"
    )
    path = f"/v1/tasks/{created['taskId']}"
    assert federated.get("beijing", path, "tasks:read").status_code == 200
    problem_of(federated.post("beijing", f"{path}/cancel", "tasks:write", None), 502,
               "upstream-unavailable")  # fmt: skip


def test_a_dropped_connection_is_retried_for_a_read_and_never_for_a_write(
    federated: Federation,
) -> None:
    """A resolution survives the owner dropping a pooled connection (one retry of the GET); a
    forwarded task is not sent twice (502, one attempt: the owner may have applied it)."""
    owner = federated.demo.configs["guangdong-manufacturing"].base_url
    resource_id = federated.register("guangdong-manufacturing", NPU)["resourceId"]
    federated.loopback.drop_next(owner)
    path = f"/v1/identifiers/{resource_id}"
    assert federated.get("beijing", path, "ids:read").status_code == 200
    federated.loopback.drop_next(owner)
    federated.loopback.requests.clear()
    body = {**TASK, "resourceId": resource_id}
    problem_of(
        federated.post("beijing", "/v1/tasks", "tasks:write", body), 502, "upstream-unavailable"
    )
    sent = [url for method, url in federated.loopback.requests if method == "POST"]
    assert sent == [f"{owner}/v1/tasks"]


def test_nothing_is_lost_while_the_parent_is_down(federated: Federation) -> None:
    """CPIN-FED-011: what the industry node writes while its region is unreachable arrives
    once the region is back, in write order (the withdrawal after the registration)."""
    federated.offline("guangdong")
    kept = federated.register("guangdong-manufacturing", NPU)["resourceId"]
    dropped = federated.register("guangdong-manufacturing", NPU)["resourceId"]
    client = federated.clients["guangdong-manufacturing"]
    headers = federated.auth("guangdong-manufacturing", "catalogue:write")
    assert client.delete(f"/v1/resources/{dropped}", headers=headers).status_code == 204
    time.sleep(2.5)  # a few report rounds fail meanwhile
    federated.online("guangdong")
    assert _eventually(lambda: federated.listed("national", kept))
    assert not federated.listed("guangdong", dropped)
    assert {kept, dropped} <= federated.issued_by("guangdong", "I44C3801D").keys()


def test_a_parent_that_is_down_is_called_ever_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed round the wait doubles up to PARENT_RETRY_MAX (here 10 ms to 160 ms):
    about 8 attempts in a second, not 100; the parent gets the report once it is back."""
    monkeypatch.setattr(federation_module, "REPORT_INTERVAL", 0.01)
    monkeypatch.setattr(federation_module, "PARENT_RETRY_MAX", 0.16)
    running = Federation(tmp_path)
    try:
        running.offline("guangdong")
        minted = running.mint("guangdong-manufacturing", "GPU")
        time.sleep(1.0)
        region = running.demo.configs["guangdong"].base_url
        attempts = [url for _, url in running.loopback.requests
                    if url == f"{region}/v1/federation/identifiers"]  # fmt: skip
        assert 3 <= len(attempts) <= 15
        running.online("guangdong")
        assert _eventually(lambda: minted in running.issued_by("guangdong", "I44C3801D"))
    finally:
        running.close()


def test_reports_only_from_direct_children(federated: Federation) -> None:
    """CPIN-FED-004: Beijing does not report to Guangdong; 403 and nothing applied."""
    resource_id = mint_resource_id("R11000018", "NPU", 50)
    record = {**NPU, "resourceId": resource_id, "issuer": "R11000018", **STAMPS}
    answer = federated.clients["guangdong"].post(
        "/v1/federation/catalogue",
        json={"reporter": "R11000018", "upserts": [record]},
        headers=federated.assertion("beijing", "R4400001E"),
    )
    problem_of(answer, 403, "forbidden")
    assert not federated.listed("guangdong", record["resourceId"])


def test_items_outside_the_callers_subtree_are_refused(federated: Federation) -> None:
    """CPIN-FED-005: Guangdong may push its own and its industry node's entries, not Beijing's."""
    foreign = mint_resource_id("R11000018", "NPU", 51)
    own = mint_resource_id("R4400001E", "NPU", 52)
    stamps = {"createdAt": "2026-03-03T04:00:00.000Z", "updatedAt": "2026-03-03T04:00:00.000Z"}
    upserts = [{**NPU, "resourceId": rid, "issuer": rid[:9], **stamps} for rid in (foreign, own)]
    answer = federated.clients["national"].post(
        "/v1/federation/catalogue",
        json={"reporter": "R4400001E", "upserts": upserts},
        headers=federated.assertion("guangdong", "N0000001U"),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 1
    assert [r["item"] for r in body["rejected"]] == [foreign]
    assert body["rejected"][0]["problem"]["type"] == PROBLEMS + "foreign-prefix"
    assert federated.listed("national", own, origin="R4400001E")
    assert not federated.listed("national", foreign)


def test_peers_with_their_relation(federated: Federation) -> None:
    """CPIN-FED-006: parent, children, national, and the nodes called directly (`peer`)."""

    def peers(key: str) -> dict[str, tuple[str, str]]:
        answer = federated.get(key, "/v1/federation/peers", "federation")
        assert answer.status_code == 200, answer.text
        return {p["nodeCode"]: (p["relation"], p["role"]) for p in answer.json()["items"]}

    assert peers("guangdong-manufacturing") == {
        "N0000001U": ("national", "national"),
        "R4400001E": ("parent", "regional"),
    }
    assert peers("guangdong") == {
        "N0000001U": ("parent", "national"),
        "I44C3801D": ("child", "industry"),
    }
    assert peers("national") == {
        "R4400001E": ("child", "regional"),
        "R11000018": ("child", "regional"),
    }
    resource_id = federated.register("guangdong-manufacturing", NPU)["resourceId"]
    task = federated.post(
        "beijing", "/v1/tasks", "tasks:write", {**TASK, "resourceId": resource_id}
    )
    assert task.status_code == 201, task.text
    assert peers("beijing")["I44C3801D"] == ("peer", "industry")
    listed = federated.get("beijing", "/v1/federation/peers?limit=1", "federation").json()
    assert [p["nodeCode"] for p in listed["items"]] == ["I44C3801D"]
    assert "lastContactAt" in listed["items"][0]
    rest = federated.get(
        "beijing", f"/v1/federation/peers?cursor={listed['nextCursor']}", "federation"
    ).json()
    assert [p["nodeCode"] for p in rest["items"]] == ["N0000001U"]


def test_registry_answers_are_cached_and_unknown_codes_only_briefly(
    federated: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A code the registry did not know may be registered the next moment (the conformance
    suite registers test nodes whose codes its fuzzing may have named), so "unknown" is not
    kept for RECORD_TTL; and the cache is bounded, since callers choose the codes."""
    monkeypatch.setattr(federation_module, "UNKNOWN_TTL", 0.0)
    monkeypatch.setattr(federation_module, "RECORD_CACHE", 3)
    client = federated.clients["guangdong-manufacturing"]
    node = federated.apps["guangdong-manufacturing"].state.node
    requests = federated.loopback.requests

    def asked(code: str) -> bool:
        before = len(requests)
        client.portal.call(node.federation.lookup, code)  # type: ignore[union-attr]
        return len(requests) > before

    unknown = [f"I11A01{seq:02d}{mod37_36(f'I11A01{seq:02d}')}" for seq in (71, 72, 73)]
    assert asked("R11000018") and not asked("R11000018")
    assert asked(unknown[0]) and asked(unknown[0])
    assert asked(unknown[1]) and asked(unknown[2])
    assert asked("R11000018")  # pushed out by three newer codes


def test_peers_wait_for_the_national_registry(node_factory: Callable[..., Any]) -> None:
    """A regional node that has never reached the national node: 503, not a guess."""
    regional = node_factory("regional")
    answer = regional.client.get("/v1/federation/peers", headers=regional.auth("federation"))
    problem_of(answer, 503, "service-unavailable")
    bad = regional.client.get(
        "/v1/federation/peers?cursor=eHl6", headers=regional.auth("federation")
    )
    problem_of(bad, 400, "invalid-request")


def test_rounds_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A round sends at most REPORT_BATCH items per flow: a backlog drains in several pushes."""
    monkeypatch.setattr(federation_module, "REPORT_BATCH", 2)
    running = Federation(tmp_path)
    try:
        running.offline("guangdong")
        minted = [running.mint("guangdong-manufacturing", "GPU") for _ in range(7)]
        running.online("guangdong")
        assert _eventually(
            lambda: set(minted) <= running.issued_by("guangdong", "I44C3801D").keys()
        )
        pushes = [
            e
            for e in running.get("guangdong", "/v1/audit-events?limit=100", "audit:read").json()[
                "items"
            ]
            if e["action"] == "federation.identifiers.reported"
        ]
        assert len(pushes) == 4  # 2 + 2 + 2 + 1
    finally:
        running.close()
