"""Helpers of the scheduling tests: request bodies, where a test's resources live, and bounded
polling of task state.

Tasks need a resource. A regional or industry node schedules on its own catalogue, so the
suite registers the resource there. The national node holds no capacity: it forwards every
task to the node that owns the resource, so its tests place their resource at a regional node
of the federation (a `peer`): one the ICS names under `federation.peers` with credentials, or
else one the national registry lists, reached with the ICS's own client when that node grants
it a token. The same peer serves the forwarding test of every role.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from conformance.checks import body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.ics import client_credentials
from conformance.identifiers import mod37_36
from conformance.provisioning import Created, Provisioner
from conformance.session import Certifier
from spec import Spec

TASK_POLL_S = 0.1
TERMINAL_DEADLINE_S = 8.0  # a 1 s task passes QUEUED and INITIALIZING first
CANCEL_DEADLINE_S = 10.0  # CPIN-SCHED-004
MIRROR_DEADLINE_S = 10.0  # CPIN-SCHED-011
PAGE_LIMIT = 100
MAX_PAGES = 50
_OWNER = {"uscc": "9144030071526726XG", "name": "广东粤算科技有限公司"}


def terminal_states(spec: Spec) -> frozenset[str]:
    return frozenset(e["const"] for e in spec.codelist("task-state") if e["x-terminal"])


def transitions(spec: Spec) -> dict[str, frozenset[str]]:
    return {e["const"]: frozenset(e["x-transitions"]) for e in spec.codelist("task-state")}


def resource_body(
    label: str, accelerators: int, *, province: str, serving_state: str = "production"
) -> dict[str, Any]:
    """A GPU pool with `accelerators` devices for scheduling, peak figures at FP16 only."""
    return {
        "resType": "GPU",
        "name": {"zh": f"{label} 调度测试资源池", "en": f"{label} scheduling test pool"},
        "owner": dict(_OWNER),
        "location": {"province": province},
        "latencyClass": "5ms",
        "accelerators": [
            {
                "kind": "GPU",
                "model": "Conformance GPU",
                "count": accelerators,
                "memoryGiB": 80,
                "peak": [{"precision": "FP16", "value": 100, "unit": "TFLOPS"}],
            }
        ],
        "energy": {"pue": 1.2, "renewableShare": 0.5},
        "price": {"amount": 1.0, "currency": "CNY", "per": "h"},
        "servingState": serving_state,
        "healthState": "ok",
        "capacity": {"acceleratorsTotal": accelerators},
    }


def task_body(
    label: str, resource_id: str, accelerators: int = 1, duration_s: int = 1
) -> dict[str, Any]:
    """The shortest task the schema allows by default: it completes after `duration_s`."""
    return {
        "name": f"{label} task",
        "resourceId": resource_id,
        "resources": {"acceleratorCount": accelerators},
        "executors": [{"image": "registry.example.cn/conformance/noop:1", "command": ["true"]}],
        "durationSeconds": duration_s,
        "tags": {"suite": "cpin-conformance"},
    }


def unknown_resource_id(node_code: str) -> str:
    """A well-formed id under `node_code` that no node has minted (random serial)."""
    serial = "Z" + "".join(random.choices(string.digits + string.ascii_uppercase, k=7))
    return f"{node_code}-GPU-{serial}{mod37_36(node_code + 'GPU' + serial)}"


@dataclass
class Placement:
    """Where a test's resources are registered: `client` is the node holding the catalogue,
    `provision` creates and later withdraws there."""

    client: NodeClient
    provision: Provisioner
    node_code: str
    province: str

    def resource(self, accelerators: int, serving_state: str = "production") -> dict[str, Any]:
        body = resource_body(self.provision.namespace, accelerators, province=self.province,
                             serving_state=serving_state)  # fmt: skip
        created = self.provision.create("/v1/resources", body, key="resourceId")
        precondition(
            created.response.status_code == 201,
            f"registerResource at {self.node_code} answered {created.response.status_code}",
        )
        return created.body


def create_task(node: NodeClient, provision: Provisioner, body: dict[str, Any]) -> httpx.Response:
    """createTask; an accepted task is canceled at the end of the run (409 there is fine)."""
    response = node.post("/v1/tasks", json=body)
    if response.status_code == 201:
        record = body_of(response)
        path = f"/v1/tasks/{record.get('taskId')}/cancel"
        provision.created.append(Created(response, record, ("POST", path)))
    return response


def get_task(node: NodeClient, task_id: str) -> dict[str, Any]:
    response = node.get(f"/v1/tasks/{task_id}")
    expect_status(response, 200)
    return dict(body_of(response))


def poll_task(
    node: NodeClient, task_id: str, until: Callable[[dict[str, Any]], bool], deadline_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read the task until `until` holds or the deadline passes: the last and every reading."""
    readings = [get_task(node, task_id)]
    ends = time.monotonic() + deadline_s
    while not until(readings[-1]) and time.monotonic() < ends:
        time.sleep(TASK_POLL_S)
        readings.append(get_task(node, task_id))
    return readings[-1], readings


def capacity(node: NodeClient, resource_id: str) -> dict[str, Any]:
    response = node.get(f"/v1/resources/{resource_id}/capacity")
    expect_status(response, 200)
    return dict(body_of(response))


def pages(node: NodeClient, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item of a paginated listing, at most MAX_PAGES pages."""
    query = {**params, "limit": PAGE_LIMIT}
    for _ in range(MAX_PAGES):
        response = node.get(path, params=query)
        expect_status(response, 200)
        listing = body_of(response)
        yield from listing.get("items", [])
        cursor = listing.get("nextCursor")
        if not cursor:
            return
        query["cursor"] = cursor


# -- peers: other nodes of the federation ----------------------------------------------------


def national_client(
    node: NodeClient, role: str, certifier: Certifier, upstream_url: str | None
) -> NodeClient | None:
    """A client of the national node (the target itself, or found through the upstream)."""
    if role == "national":
        return node
    if upstream_url is None:
        return None
    info = _service_info(node, upstream_url)
    url = upstream_url if info.get("role") == "national" else info.get("upstream")
    return _client_for(node, certifier, str(url)) if url else None


def regional_peer(
    node: NodeClient, role: str, own_code: str, certifier: Certifier
) -> tuple[NodeClient, str] | None:
    """A regional node other than the target that lets the harness register resources:
    (client, NodeCode), or None when the federation offers none."""
    federation = certifier.ics.federation
    for peer in federation.get("peers", []):
        if peer["role"] == "regional" and peer["nodeCode"] != own_code and "credentials" in peer:
            credentials = client_credentials(peer["credentials"], "federation.peers")
            client = NodeClient(peer["baseUrl"], credentials, certifier.recorder,
                                timeout=float(certifier.budget["requestTimeoutS"]))  # fmt: skip
            return client, peer["nodeCode"]
    national = national_client(node, role, certifier, federation.get("upstreamUrl"))
    if national is None or not _grants_token(national):
        return None
    listing = national.get("/v1/nodes", params={"role": "regional", "status": "active"})
    if listing.status_code != 200:
        return None
    for record in body_of(listing).get("items", []):
        if record["nodeCode"] == own_code:
            continue
        client = _client_for(node, certifier, record["endpoint"])
        if _grants_token(client):
            return client, record["nodeCode"]
    return None


def _client_for(node: NodeClient, certifier: Certifier, base_url: str) -> NodeClient:
    return NodeClient(base_url, node.credentials, certifier.recorder,
                      timeout=float(certifier.budget["requestTimeoutS"]))  # fmt: skip


def _grants_token(client: NodeClient) -> bool:
    """Whether this node gives the harness's client a token (never a finding: it is not the
    node under test)."""
    return client.token_response().status_code == 200


def _service_info(node: NodeClient, base_url: str) -> dict[str, Any]:
    response = node.get(f"{base_url.rstrip('/')}/v1/service-info", authenticated=False)
    return dict(body_of(response)) if response.status_code == 200 else {}


@contextmanager
def peer_placement(
    node: NodeClient, role: str, own_code: str, certifier: Certifier
) -> Iterator[Placement]:
    """A regional node other than the target, where resources of remote tasks are placed;
    what the suite registered there is withdrawn on exit."""
    found = regional_peer(node, role, own_code, certifier)
    precondition(found is not None, "no other regional node of the federation lets the "
                 "harness register a resource (declare one in federation.peers)")  # fmt: skip
    assert found is not None
    client, code = found
    provision = Provisioner(client, f"cpin-conformance-{certifier.run_id[:8]}")
    info = body_of(client.get("/v1/service-info", authenticated=False))
    try:
        yield Placement(client, provision, code, str(info.get("province", "44")))
    finally:
        provision.clean_up()
        if client is not node:
            client.close()


def own_placement(
    node: NodeClient, provision: Provisioner, service_info: dict[str, Any]
) -> Placement:
    """The target's own catalogue (regional and industry nodes)."""
    province = str(service_info.get("province", "44"))
    return Placement(node, provision, service_info["nodeCode"], province)
