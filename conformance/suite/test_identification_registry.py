"""Identification class: listing with filters, the regional registry of record, the national
list, and the upward reports that feed them (identification.md §8.2; listIdentifiers).

Each test registers identifiers under an owner USCC of its own, so the filters and the
upward copies can be judged exactly on a node that holds other data too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.ics import Ics
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from conformance.suite._identification import (
    IDENTIFIERS,
    REPORT_WAIT_S,
    Elsewhere,
    by_identifier,
    list_all,
    path_of,
    poll,
    registration,
    unique_uscc,
)


@pytest.fixture(scope="module")
def rng(certifier: Certifier) -> random.Random:
    return random.Random(f"{certifier.seed}-identification-registry")


@pytest.fixture(scope="module")
def elsewhere(certifier: Certifier) -> Iterator[Elsewhere]:
    found = Elsewhere.from_ics(certifier)
    yield found
    found.close()


def _register(provision: Provisioner, res_type: str, uscc: str) -> str:
    body = registration(res_type, uscc, provision.label("registry"))
    created = provision.create(IDENTIFIERS, body, key="identifier")
    expect_status(created.response, 201)
    return str(created.body["identifier"])


def _states(client: NodeClient, uscc: str) -> dict[str, str]:
    return {i: r["state"] for i, r in by_identifier(list_all(client, {"owner": uscc})).items()}


def _arrives(client: NodeClient, uscc: str, wanted: dict[str, str]) -> dict[str, str]:
    """Poll `client`'s list until it shows every identifier of `wanted` in its state; the
    states seen last."""
    seen: dict[str, str] = {}

    def probe() -> dict[str, str] | None:
        seen.clear()
        seen.update(_states(client, uscc))
        return seen if all(seen.get(i) == s for i, s in wanted.items()) else None

    poll(probe)
    return dict(seen)


def _missing(wanted: dict[str, str], seen: dict[str, str]) -> str:
    return ", ".join(f"{i} ({s}; listed {seen.get(i, 'not at all')})"
                     for i, s in wanted.items() if seen.get(i) != s)  # fmt: skip


@pytest.mark.requirement("CPIN-ID-026")
def test_list_filters_return_exactly_the_matching_identifiers(
    node: NodeClient, contract: Contract, role: str, elsewhere: Elsewhere,
    provision: Provisioner, rng: random.Random,
) -> None:  # fmt: skip
    owner, other_owner = unique_uscc(rng), unique_uscc(rng)
    if role == "national":
        minted = [elsewhere.mint(t, u, provision.label("list filters"))
                  for t, u in (("GPU", owner), ("CPU", owner), ("GPU", other_owner))]  # fmt: skip
        if not all(minted):
            _filters_find_listed_records(node, contract)
            return
        records = [m.record for m in minted if m is not None]
        expect_status(minted[1].at.delete(path_of(records[1]["identifier"])), 200)  # type: ignore[union-attr]
    else:
        records = []
        for res_type, uscc in (("GPU", owner), ("CPU", owner), ("GPU", other_owner)):
            identifier = _register(provision, res_type, uscc)
            records.append(body_of(node.get(path_of(identifier))))
        expect_status(node.delete(path_of(records[1]["identifier"])), 200)
    ours = {r["identifier"]: {**r, "state": "active"} for r in records}
    ours[records[1]["identifier"]]["state"] = "revoked"
    wanted = {i: r["state"] for i, r in ours.items() if r["owner"]["uscc"] == owner}
    seen = _arrives(node, owner, wanted)
    assert all(seen.get(i) == s for i, s in wanted.items()), (
        f"listIdentifiers?owner={owner} lacks {_missing(wanted, seen)}"
    )
    issuer = records[0]["identifier"][:9]
    filters: list[dict[str, str]] = [
        {"owner": owner},
        {"owner": owner, "resType": "GPU"},
        {"owner": owner, "state": "revoked"},
        {"owner": owner, "state": "active", "resType": "CPU"},
        {"owner": owner, "issuer": issuer},
        {"owner": other_owner, "state": "active"},
    ]
    for query in filters:
        items = list_all(node, query)
        _expect_matching(contract, query, items)
        expected = {i for i, r in ours.items() if all(_field(r, k) == v for k, v in query.items())}
        missing = expected - {item["identifier"] for item in items}
        assert not missing, f"listIdentifiers {query} does not return {sorted(missing)}"
    for query in ({"resType": "GPU", "state": "revoked"}, {"issuer": issuer, "resType": "CPU"}):
        response = node.get(IDENTIFIERS, params={**query, "limit": 100})
        expect_status(response, 200)
        _expect_matching(contract, query, body_of(response)["items"])


def _filters_find_listed_records(node: NodeClient, contract: Contract) -> None:
    """Without peers to register at: each listed record is found again by its own fields."""
    response = node.get(IDENTIFIERS, params={"limit": 100})
    expect_status(response, 200)
    items = body_of(response)["items"]
    precondition(items, "the node lists no identifier, and no peer of the ICS lets the suite "
                 "register one (declare federation peers)")  # fmt: skip
    for item in items[:: max(1, len(items) // 3)][:3]:
        query = {"owner": item["owner"]["uscc"], "issuer": item["identifier"][:9],
                 "resType": item["resType"], "state": item["state"]}  # fmt: skip
        found = list_all(node, query)
        _expect_matching(contract, query, found)
        assert item["identifier"] in {f["identifier"] for f in found}, (
            f"listIdentifiers {query} does not return {item['identifier']}, listed with them"
        )


def _expect_matching(contract: Contract, query: dict[str, str], items: list[Any]) -> None:
    for item in items:
        contract.expect_valid(item, "schemas/identifier-record.json", "a listed record")
        wrong = {k: _field(item, k) for k, v in query.items() if _field(item, k) != v}
        assert not wrong, f"listIdentifiers {query} returned {item['identifier']} with {wrong}"


def _field(record: dict[str, Any], name: str) -> Any:
    return record["owner"]["uscc"] if name == "owner" else record.get(name)


@pytest.mark.requirement("CPIN-ID-022")
def test_industry_node_reports_minted_identifiers_upward(
    node: NodeClient, upstream: NodeClient, provision: Provisioner, rng: random.Random
) -> None:
    owner = unique_uscc(rng)
    wanted = {_register(provision, t, owner): "active" for t in ("GPU", "NPU")}
    seen = _arrives(upstream, owner, wanted)
    assert not _missing(wanted, seen), (
        f"{REPORT_WAIT_S:.0f} s after registration the regional node lists {_missing(wanted, seen)}"
    )


@pytest.mark.requirement("CPIN-ID-023")
def test_industry_node_reports_revocations_upward(
    node: NodeClient, upstream: NodeClient, provision: Provisioner, rng: random.Random
) -> None:
    owner = unique_uscc(rng)
    identifier = _register(provision, "GPU", owner)
    expect_status(node.delete(path_of(identifier)), 200)
    seen = _arrives(upstream, owner, {identifier: "revoked"})
    assert seen.get(identifier) == "revoked", (
        f"{REPORT_WAIT_S:.0f} s after revoking {identifier} the regional node lists it as "
        f"{seen.get(identifier, 'nothing')}"
    )


@pytest.mark.requirement("CPIN-ID-024")
def test_regional_node_keeps_the_registry_of_record(
    node: NodeClient, elsewhere: Elsewhere, provision: Provisioner, rng: random.Random
) -> None:
    """Its own identifiers with their state, and those its industry nodes report, when the
    ICS names an industry peer whose client may register."""
    owner = unique_uscc(rng)
    kept, revoked = _register(provision, "GPU", owner), _register(provision, "CPU", owner)
    expect_status(node.delete(path_of(revoked)), 200)
    wanted = {kept: "active", revoked: "revoked"}
    for _code, child in elsewhere.minting_children():
        response = child.post(
            IDENTIFIERS, json=registration("NPU", owner, provision.label("reported"))
        )
        if response.status_code == 201:
            minted = str(body_of(response)["identifier"])
            expect_status(child.delete(path_of(minted)), 200)
            wanted[minted] = "revoked"
    seen = _arrives(node, owner, wanted)
    assert not _missing(wanted, seen), f"the regional list lacks {_missing(wanted, seen)}"


@pytest.mark.requirement("CPIN-ID-030")
def test_regional_node_reports_identifiers_to_the_national_node(
    node: NodeClient, upstream: NodeClient, provision: Provisioner, rng: random.Random
) -> None:
    owner = unique_uscc(rng)
    kept, revoked = _register(provision, "GPU", owner), _register(provision, "STO", owner)
    expect_status(node.delete(path_of(revoked)), 200)
    wanted = {kept: "active", revoked: "revoked"}
    seen = _arrives(upstream, owner, wanted)
    assert not _missing(wanted, seen), (
        f"{REPORT_WAIT_S:.0f} s on, the national node lists {_missing(wanted, seen)}"
    )


@pytest.mark.requirement("CPIN-ID-031")
def test_national_node_lists_reported_identifiers(
    node: NodeClient, ics: Ics, elsewhere: Elsewhere, provision: Provisioner, rng: random.Random
) -> None:
    owner = unique_uscc(rng)
    active = elsewhere.mint("GPU", owner, provision.label("national list"))
    revoked = elsewhere.mint("CPU", owner, provision.label("national list"))
    precondition(active and revoked, "no peer of the ICS lets the suite register identifiers "
                 "that a regional node reports (declare federation peers)")  # fmt: skip
    assert active is not None and revoked is not None
    expect_status(revoked.at.delete(path_of(revoked.identifier)), 200)
    wanted = {active.identifier: "active", revoked.identifier: "revoked"}
    seen = _arrives(node, owner, wanted)
    assert not _missing(wanted, seen), (
        f"{REPORT_WAIT_S:.0f} s on, the national node lists {_missing(wanted, seen)}"
    )
