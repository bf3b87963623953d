"""Identification class: resolution, local and hierarchical by proxy, its caching and its
negative answers (identification.md §9, §10, §11; resolveIdentifier).

Identifiers of other nodes come from the nodes the ICS names (upstream, peers): registered
there when their client may, otherwise found in the lists of the target and of those nodes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.ics import Ics
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from conformance.suite._identification import (
    IDENTIFIERS,
    Elsewhere,
    Minted,
    expect_max_age,
    max_age,
    node_code,
    path_of,
    random_serial,
    registration,
    resource_id,
    unique_uscc,
)

POSITIVE_BOUND = 300  # identification.md §10: 200 and 410 answers
NEGATIVE_BOUND = 60  # 404 answers
SOURCES = {"local", "proxied", "cache"}
CACHE_PAUSE_S = 1.2


@pytest.fixture(scope="module")
def rng(certifier: Certifier) -> random.Random:
    return random.Random(f"{certifier.seed}-identification-resolution")


@pytest.fixture(scope="module")
def elsewhere(certifier: Certifier) -> Iterator[Elsewhere]:
    found = Elsewhere.from_ics(certifier)
    yield found
    found.close()


@pytest.fixture(scope="module")
def remote_active(elsewhere: Elsewhere, node: NodeClient, provision: Provisioner,
                  rng: random.Random) -> list[dict[str, Any]]:  # fmt: skip
    """Active identifiers another node issued, as held there: one the suite registered at
    another node, or else those listed active (a listed copy may lag a revocation)."""
    minted = elsewhere.mint("GPU", unique_uscc(rng), provision.label("remote identifier"))
    if minted is not None:
        return [minted.record]
    listed = elsewhere.listed("active")
    precondition(
        listed,
        "no other node of the ICS lets the suite register an identifier, and no active "
        "identifier of another node is listed (declare federation peers)",
    )
    return listed[:5]


def _registered_node(node: NodeClient, ics: Ics) -> str:
    """A NodeCode of another node that the national registry holds."""
    if ics.role != "national":
        upstream = ics.federation.get("upstreamNodeCode")
        precondition(upstream, "the ICS names no federation.upstreamNodeCode")
        return str(upstream)
    response = node.get("/v1/nodes", params={"limit": 100})
    expect_status(response, 200)
    codes = [n["nodeCode"] for n in body_of(response)["items"]
             if n["nodeCode"] != ics.node_code and n.get("status") == "active"]  # fmt: skip
    precondition(codes, "the national registry holds no other active node")
    return str(codes[0])


def _expect_record(contract: Contract, response: httpx.Response, identifier: str) -> dict[str, Any]:
    expect_status(response, 200)
    record = contract.expect_json(response, "schemas/identifier-record.json")
    assert record["identifier"] == identifier, (
        f"resolving {identifier} answered the record of {record['identifier']}"
    )
    assert record["authority"] == identifier[:9], (
        f"authority {record['authority']!r} for {identifier}: it is the issuing node, "
        f"{identifier[:9]}"
    )
    return dict(record)


@pytest.mark.requirement("CPIN-ID-011", "CPIN-ID-013", "CPIN-ID-027")
def test_issuing_node_resolves_its_own_identifiers_locally(
    node: NodeClient, contract: Contract, ics: Ics, role: str, provision: Provisioner,
    rng: random.Random,
) -> None:  # fmt: skip
    """§9 step 2. The national node mints nothing (§8.2): under its own NodeCode its registry
    answers 404 itself."""
    if role == "national":
        identifier = resource_id(ics.node_code, "CLU", random_serial(rng))
        contract.expect_problem(node.get(path_of(identifier)), 404, "unknown-identifier")
        return
    body = registration("GPU", unique_uscc(rng), provision.label("local resolution"))
    created = provision.create(IDENTIFIERS, body, key="identifier")
    expect_status(created.response, 201)
    identifier = str(created.body["identifier"])
    record = _expect_record(contract, node.get(path_of(identifier)), identifier)
    assert record["authority"] == ics.node_code, f"authority {record['authority']!r}"
    assert record["source"] == "local", (
        f"the issuing node answered source {record['source']!r} for its own {identifier}"
    )
    listed = node.get(IDENTIFIERS, params={"issuer": ics.node_code, "owner": body["owner"]["uscc"]})
    expect_status(listed, 200)
    for item in body_of(listed)["items"]:
        assert item["authority"] == item["identifier"][:9] and item["source"] in SOURCES, (
            f"listed {item['identifier']} with authority {item['authority']!r}, "
            f"source {item['source']!r}"
        )


@pytest.mark.requirement("CPIN-ID-012", "CPIN-ID-013")
def test_remote_identifier_resolves_by_proxy(
    node: NodeClient, contract: Contract, remote_active: list[dict[str, Any]], elsewhere: Elsewhere
) -> None:
    """A listed copy revoked since (410) is passed over; a 404 is never right for an
    identifier some registry holds."""
    resolved = 0
    for held in remote_active:
        identifier = str(held["identifier"])
        answer = node.get(path_of(identifier))
        minted_here = identifier in {m.identifier for m in elsewhere.created}
        if answer.status_code == 410 and not minted_here:
            continue
        record = _expect_record(contract, answer, identifier)
        assert record["source"] in {"proxied", "cache"}, (
            f"{identifier} was issued by {identifier[:9]}, the answer says source "
            f"{record['source']!r}: another node's record is proxied or cached"
        )
        for key in ("resType", "issuer", "owner", "createdAt"):
            assert record.get(key) == held.get(key), (
                f"{identifier}: {key} is {record.get(key)!r}, the issuing node holds "
                f"{held.get(key)!r}"
            )
        resolved += 1
    precondition(resolved, "every listed identifier of another node was revoked since")


@pytest.mark.requirement("CPIN-ID-017")
def test_never_registered_identifier_answers_404(
    node: NodeClient, contract: Contract, ics: Ics, rng: random.Random
) -> None:
    own = resource_id(ics.node_code, "GPU", random_serial(rng))
    contract.expect_problem(node.get(path_of(own)), 404, "unknown-identifier")
    remote = resource_id(_registered_node(node, ics), "NPU", random_serial(rng))
    contract.expect_problem(node.get(path_of(remote)), 404, "unknown-identifier")


@pytest.mark.requirement("CPIN-ID-018")
def test_identifier_of_an_unregistered_node_answers_404(
    node: NodeClient, contract: Contract, ics: Ics, rng: random.Random
) -> None:
    nowhere = node_code("I54T9799")
    if ics.role == "national":
        expect_status(node.get(f"/v1/nodes/{nowhere}"), 404)
    identifier = resource_id(nowhere, "GPU", random_serial(rng))
    contract.expect_problem(node.get(path_of(identifier)), 404, "unknown-identifier")


@pytest.mark.requirement("CPIN-ID-016")
def test_resolution_answers_bound_their_cache_lifetime(
    node: NodeClient, ics: Ics, role: str, provision: Provisioner, rng: random.Random
) -> None:
    """The issuing node's own 200, 404 and 410; a relayed 404 stays within the same bounds."""
    remote = resource_id(_registered_node(node, ics), "NPU", random_serial(rng))
    expect_max_age(node.get(path_of(remote)), NEGATIVE_BOUND, f"relayed 404 of {remote}")
    if role == "national":
        own = resource_id(ics.node_code, "CPU", random_serial(rng))
        expect_max_age(node.get(path_of(own)), NEGATIVE_BOUND, f"404 of {own}")
        return
    own = resource_id(ics.node_code, "CPU", random_serial(rng))
    answer = node.get(path_of(own))
    expect_status(answer, 404)
    expect_max_age(answer, NEGATIVE_BOUND, f"404 of {own}")
    body = registration("CPU", unique_uscc(rng), provision.label("cache bounds"))
    created = provision.create(IDENTIFIERS, body, key="identifier")
    expect_status(created.response, 201)
    identifier = str(created.body["identifier"])
    answer = node.get(path_of(identifier))
    expect_status(answer, 200)
    expect_max_age(answer, POSITIVE_BOUND, f"200 of {identifier}")
    expect_status(node.delete(path_of(identifier)), 200)
    answer = node.get(path_of(identifier))
    expect_status(answer, 410)
    expect_max_age(answer, POSITIVE_BOUND, f"410 of {identifier}")


@pytest.mark.requirement("CPIN-ID-032")
def test_cached_answers_state_their_age_and_remaining_lifetime(
    node: NodeClient, ics: Ics, elsewhere: Elsewhere, provision: Provisioner, rng: random.Random
) -> None:
    """Each foreign identifier is resolved twice: a second answer that comes from the cache
    says so (source cache for a record), with Age and max-age = lifetime - Age."""
    probes = [resource_id(_registered_node(node, ics), "NPU", random_serial(rng))]
    minted = elsewhere.mint("GPU", unique_uscc(rng), provision.label("cached resolution"))
    if minted is not None:
        probes.append(minted.identifier)
    cached = 0
    for identifier in probes:
        first = node.get(path_of(identifier))
        time.sleep(CACHE_PAUSE_S)  # so that a cached answer is at least a second old
        second = node.get(path_of(identifier))
        expect_status(second, first.status_code)
        lifetime = max_age(first)
        source = body_of(second).get("source") if second.status_code == 200 else None
        if "age" not in second.headers and source != "cache":
            continue
        cached += 1
        assert source in {None, "cache"}, f"an answer with Age says source {source!r}"
        age = second.headers.get("age", "")
        assert age.isdigit(), f"a cached answer for {identifier} has Age {age!r}"
        remaining = max_age(second)
        assert lifetime is not None and remaining is not None, (
            f"cached answer for {identifier}: Cache-Control {second.headers.get('cache-control')!r}"
            f" after {first.headers.get('cache-control')!r}"
        )
        assert 0 <= lifetime - int(age) - remaining <= 1, (
            f"cached answer for {identifier}: max-age={remaining} with Age {age}, received with "
            f"max-age={lifetime}; the remaining lifetime is {lifetime - int(age)}"
        )
    precondition(cached, "the node served no resolution from its cache (caching is a MAY)")


@pytest.mark.requirement("CPIN-ID-015")
def test_revoked_identifier_answers_410_at_every_node(
    node: NodeClient, contract: Contract, role: str, elsewhere: Elsewhere,
    provision: Provisioner, rng: random.Random,
) -> None:  # fmt: skip
    """Own revocations at once; another node's, never resolved here before, at once too (no
    cached answer may hide it); a listed one revoked more than 300 s ago, at once."""
    checked = 0
    if role != "national":
        body = registration("GPU", unique_uscc(rng), provision.label("revocation"))
        created = provision.create(IDENTIFIERS, body, key="identifier")
        expect_status(created.response, 201)
        own = str(created.body["identifier"])
        expect_status(node.delete(path_of(own)), 200)
        contract.expect_problem(node.get(path_of(own)), 410, "identifier-revoked")
        checked += 1
    minted = elsewhere.mint("GPU", unique_uscc(rng), provision.label("remote revocation"))
    if minted is not None:
        _revoke_remote(minted)
        contract.expect_problem(node.get(path_of(minted.identifier)), 410, "identifier-revoked")
        checked += 1
    horizon = datetime.now(UTC) - timedelta(seconds=POSITIVE_BOUND + 5)
    for item in elsewhere.listed("revoked")[:3]:
        revoked_at = datetime.fromisoformat(str(item.get("revokedAt", "")).replace("Z", "+00:00"))
        answer = node.get(path_of(item["identifier"]))
        if answer.status_code == 404 and _younger_than_a_cached_404(item):
            continue  # asked here before it existed: a cached 404 may live 60 s (§10)
        if revoked_at > horizon:
            if answer.status_code == 200:  # a cached 200 may live until 300 s after revocation
                assert body_of(answer).get("source") == "cache", (
                    f"{item['identifier']} (revoked {item['revokedAt']}) answered 200 with "
                    f"source {body_of(answer).get('source')!r}, not from a cache"
                )
                continue
            contract.expect_problem(answer, 410, "identifier-revoked")
        else:
            contract.expect_problem(answer, 410, "identifier-revoked")
        checked += 1
    precondition(checked, "no revoked identifier to resolve: declare federation peers")


def _younger_than_a_cached_404(item: dict[str, Any]) -> bool:
    """Registered so recently that a 404 the node cached before it existed may still live."""
    created = datetime.fromisoformat(str(item.get("createdAt", "")).replace("Z", "+00:00"))
    return datetime.now(UTC) - created < timedelta(seconds=NEGATIVE_BOUND + 5)


def _revoke_remote(minted: Minted) -> None:
    expect_status(minted.at.delete(path_of(minted.identifier)), 200)
