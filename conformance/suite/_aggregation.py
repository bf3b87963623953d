"""Helpers of the aggregation and selection tests: resource bodies built from the spec's code
lists, catalogue reads that page through every result, bounded waits for federation flows, and
the node the suite registers its resources at.

Only regional and industry nodes take registrations. At the national node the suite registers
through a peer below it that the ICS declares with credentials (`federation.peers`) and reads
what arrives in the national index; without such a peer, tests that need data skip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.ics import client_credentials
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from spec import Spec

PAGE_LIMIT = 100
MAX_PAGES = 20
PROPAGATION_S = 60.0
"""How long the suite waits for a federation flow: the bound CPIN-AGG-019/021 and SEL-015 set
(60 s). A conforming node is never failed for using the time the spec allows it."""
POLL_S = 0.25
MERGE_PATCH = "application/merge-patch+json"

T = TypeVar("T")
Peak = tuple[str, float]


def wait_for(
    check: Callable[[], T | None], seconds: float = PROPAGATION_S
) -> tuple[T | None, float]:
    """Call `check` until it gives something other than None or `seconds` have passed; the
    result and the seconds it took (bounded: never longer than `seconds` plus one call)."""
    started = time.monotonic()
    while True:
        result = check()
        elapsed = time.monotonic() - started
        if result is not None or elapsed >= seconds:
            return result, elapsed
        time.sleep(POLL_S)


class Bodies:
    """registerResource bodies whose codes and units come from the spec."""

    def __init__(self, spec: Spec, namespace: str) -> None:
        self.namespace = namespace
        self.units = {e["const"]: e["x-unit"] for e in spec.codelist("precision")}
        self.owner = dict(spec.load("schemas/resource.json")["examples"][0]["owner"])
        accelerators = spec.codelist("resource-type")
        self.accelerator_types = [e["const"] for e in accelerators if e["x-accelerator"]]
        self.provinces = [e["const"] for e in spec.codelist("province") if e["const"] != "00"]

    def peak(self, precision: str, value: float) -> dict[str, Any]:
        return {"precision": precision, "value": value, "unit": self.units[precision]}

    def resource(
        self,
        what: str,
        *,
        res_type: str = "GPU",
        province: str = "44",
        peaks: tuple[Peak, ...] = (("FP16", 200.0), ("FP32", 50.0)),
        memory: float = 96.0,
        count: int = 16,
        latency: str = "5ms",
        serving: str = "production",
        health: str = "ok",
        price: tuple[float, str] | None = (10.0, "h"),
        energy: tuple[float, float] | None = (1.2, 0.6),
    ) -> dict[str, Any]:
        """An accelerator pool; `what` tells the suite's records apart in the node's data."""
        label = f"{self.namespace} {what}"
        body: dict[str, Any] = {
            "resType": res_type,
            "name": {"zh": label, "en": label},
            "owner": dict(self.owner),
            "location": {"province": province},
            "latencyClass": latency,
            "accelerators": [
                {
                    "kind": res_type,
                    "model": "CPIN conformance test device",
                    "count": count,
                    "memoryGiB": memory,
                    "peak": [self.peak(p, v) for p, v in peaks],
                }
            ],
            "capacity": {"acceleratorsTotal": count},
            "servingState": serving,
            "healthState": health,
        }
        if price is not None:
            body["price"] = {"amount": price[0], "currency": "CNY", "per": price[1]}
        if energy is not None:
            body["energy"] = {"pue": energy[0], "renewableShare": energy[1]}
        return body


def list_all(
    client: NodeClient, contract: Contract, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every item listResources gives for `params`, over all pages (at most MAX_PAGES)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        query = {**(params or {}), "limit": PAGE_LIMIT, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/resources", params=query)
        expect_status(response, 200)
        page = contract.expect_json(response, "schemas/resource.json#/$defs/ResourcePage")
        items.extend(page["items"])
        cursor = page.get("nextCursor")
        if not cursor:
            return items
    precondition(False, f"listResources {dict(params or {})} has more than {MAX_PAGES} pages")
    return items


def listed_ids(client: NodeClient, contract: Contract, params: Mapping[str, Any]) -> set[str]:
    return {str(item["resourceId"]) for item in list_all(client, contract, params)}


def read(client: NodeClient, resource_id: str) -> httpx.Response:
    return client.get(f"/v1/resources/{resource_id}")


def patch(
    client: NodeClient, resource_id: str, body: Mapping[str, Any], etag: str | None
) -> httpx.Response:
    headers = {"Content-Type": MERGE_PATCH, **({"If-Match": etag} if etag is not None else {})}
    return client.request(
        "PATCH", f"/v1/resources/{resource_id}", content=json.dumps(body), headers=headers
    )


@dataclass
class Writer:
    """Where the suite registers resources (`client`) and the node under test that must then
    list them (`target`); `remote` when they differ, so reads wait for the federation flow."""

    client: NodeClient
    target: NodeClient
    contract: Contract
    provision: Provisioner
    remote: bool
    _mine: list[str] = field(default_factory=list)

    def register(self, body: dict[str, Any]) -> httpx.Response:
        """POST the body at the writing node; a 201 is withdrawn again at the end."""
        if not self.remote:
            return self.provision.create("/v1/resources", body, key="resourceId").response
        response = self.client.post("/v1/resources", json=body)
        if response.status_code == 201:
            self._mine.append(str(body_of(response)["resourceId"]))
        return response

    def seed(self, bodies: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Register every body (by key); skip unless each was taken and the target reads it.
        The records returned are as the target serves them."""
        records: dict[str, dict[str, Any]] = {}
        for key, body in bodies.items():
            response = self.register(body)
            precondition(
                response.status_code == 201,
                f"registering a test resource answered {response.status_code}",
            )
            records[key] = dict(body_of(response))
        if not self.remote:
            return records
        waiting = {key: str(r["resourceId"]) for key, r in records.items()}

        def arrived() -> dict[str, dict[str, Any]] | None:
            for key, resource_id in list(waiting.items()):
                answer = read(self.target, resource_id)
                if answer.status_code == 200:
                    records[key] = dict(body_of(answer))
                    del waiting[key]
            return records if not waiting else None

        done, _ = wait_for(arrived)
        precondition(
            done is not None,
            f"{len(waiting)} resource(s) registered below did not reach the node within "
            f"{PROPAGATION_S:.0f} s",
        )
        return records

    def withdraw(self, resource_id: str) -> httpx.Response:
        return self.client.delete(f"/v1/resources/{resource_id}")

    def clean_up(self) -> None:
        for resource_id in reversed(self._mine):
            try:
                self.client.delete(f"/v1/resources/{resource_id}")
            except httpx.HTTPError:
                continue
        self._mine.clear()
        if self.remote:
            self.client.close()


def peer_clients(certifier: Certifier, roles: tuple[str, ...]) -> Iterator[NodeClient]:
    """Clients of the ICS's `federation.peers` that come with credentials, other than the
    target itself, in the order of `roles`."""
    peers = certifier.ics.federation.get("peers", [])
    for role in roles:
        for peer in peers:
            if peer["role"] != role or "credentials" not in peer:
                continue
            if peer["nodeCode"] == certifier.ics.node_code:
                continue
            credentials = client_credentials(peer["credentials"], "federation.peers")
            yield NodeClient(peer["baseUrl"], credentials, certifier.recorder,
                             timeout=float(certifier.budget["requestTimeoutS"]))  # fmt: skip


def writer_for(
    role: str,
    node: NodeClient,
    certifier: Certifier,
    contract: Contract,
    provision: Provisioner,
) -> Writer:
    """The node itself, except at the national node, which takes no registrations: there a
    peer below it (ICS `federation.peers` with credentials), or a skip."""
    if role != "national":
        return Writer(node, node, contract, provision, remote=False)
    peer = next(peer_clients(certifier, ("regional", "industry")), None)
    precondition(
        peer is not None,
        "the national index can only be fed from below: the ICS declares no regional or "
        "industry peer with credentials (federation.peers)",
    )
    assert peer is not None
    return Writer(peer, node, contract, provision, remote=True)
