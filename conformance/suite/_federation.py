"""Helpers of the federation tests: the national registry as seen from any target, what a
node's peers should be according to it, and federation message bodies.

The ICS names only the target's upstream. For an industry node that is its regional node, so
the national node is found one level further up (the regional node's service-info `upstream`)
and read with the same upstream client: a federation that gives the harness one client on
every node (as the reference federation does) is checked in full; otherwise those checks skip.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from conformance.http import NodeClient
from conformance.session import Certifier
from conformance.suite._node_registry import NODES
from spec import Spec

REGISTRY_GRACE = timedelta(seconds=300)  # CPIN-FED-013: registry changes learnt within 300 s


def national_url(certifier: Certifier, upstream: NodeClient | None) -> str | None:
    """The national node's base URL: the target itself, its upstream, or its upstream's."""
    if certifier.ics.role == "national":
        return certifier.ics.base_url
    if upstream is None:
        return None
    info = upstream.get("/v1/service-info", authenticated=False)
    if info.status_code != 200:
        return None
    body = info.json()
    if body.get("role") == "national":
        return upstream.base_url
    parent = body.get("upstream")
    return str(parent).rstrip("/") if parent else None


def new_client(certifier: Certifier, base_url: str) -> NodeClient:
    """A client of another node of the federation, with the ICS's upstream credentials."""
    return NodeClient(
        base_url,
        certifier.ics.upstream_credentials(),
        certifier.recorder,
        timeout=float(certifier.budget["requestTimeoutS"]),
    )


def may(client: NodeClient, scopes: set[str]) -> bool:
    """Whether the client is granted these scopes (a refusal is no finding about the target)."""
    answer = client.token_response(scopes=scopes)
    if answer.status_code != 200:
        return False
    granted = set(str(answer.json().get("scope", " ".join(scopes))).split())
    return scopes <= granted


def registry_record(national: NodeClient, code: str) -> dict[str, Any] | None:
    answer = national.get(f"{NODES}/{code}")
    return dict(answer.json()) if answer.status_code == 200 else None


def recently_changed(record: dict[str, Any]) -> bool:
    """Changed in the registry less than 300 s ago: a peer may not have learnt it yet."""
    try:
        updated = datetime.fromisoformat(str(record["updatedAt"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return False
    return datetime.now(UTC) - updated < REGISTRY_GRACE


def expected_peers(
    role: str,
    own: str,
    parent: dict[str, Any] | None,
    national: dict[str, Any] | None,
    children: list[dict[str, Any]],
) -> dict[str, tuple[str, dict[str, Any]]]:
    """NodeCode -> (relation, registry record) of the peers CPIN-FED-006 requires."""
    wanted: dict[str, tuple[str, dict[str, Any]]] = {}
    if role != "national" and national is not None:
        wanted[national["nodeCode"]] = ("national", national)
    if parent is not None:
        wanted[parent["nodeCode"]] = ("parent", parent)  # the parent wins over "national"
    for child in children:
        if child["nodeCode"] != own:
            wanted[child["nodeCode"]] = ("child", child)
    return wanted


def resource_record(spec: Spec, resource_id: str, label: str) -> dict[str, Any]:
    """A full resource record (resource.json) for a catalogue push: the spec's own example
    of a CataloguePush upsert, with this id, issuer and name."""
    example = spec.load("schemas/federation.json")["$defs"]["CataloguePush"]["examples"][0]
    record: dict[str, Any] = copy.deepcopy(example["upserts"][0])
    record.update(
        resourceId=resource_id,
        issuer=resource_id[:9],
        resType=resource_id[10:13],
        name={"zh": f"{label} 测试资源", "en": f"{label} test resource"},
    )
    return record


def identifier_item(identifier: str, owner_uscc: str) -> dict[str, Any]:
    """One reportIdentifiers item (federation.json IdentifierReport)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "identifier": identifier,
        "state": "active",
        "resType": identifier[10:13],
        "owner": {"uscc": owner_uscc, "name": "CPIN conformance"},
        "createdAt": now,
        "updatedAt": now,
    }
