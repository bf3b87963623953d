"""Identification class: registering, updating and revoking identifiers at the issuing node
(identification.md §7, §8.2, §11; registerIdentifier, updateIdentifier, revokeIdentifier)."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conformance.checks import Contract, body_of, expect_status
from conformance.http import NodeClient
from conformance.ics import Ics
from conformance.identifiers import IdentifierRules
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from conformance.suite._identification import (
    IDENTIFIERS,
    MERGE_PATCH,
    SERIAL_ALPHABET,
    by_identifier,
    foreign_code,
    list_all,
    path_of,
    random_serial,
    registration,
    resource_id,
    unique_uscc,
)
from spec import Spec

CONCURRENT_REGISTRATIONS = 12

Register = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def rng(certifier: Certifier) -> random.Random:
    return random.Random(f"{certifier.seed}-identification-lifecycle")


@pytest.fixture(scope="module")
def owner_uscc(rng: random.Random) -> str:
    return unique_uscc(rng)


@pytest.fixture
def register(provision: Provisioner, owner_uscc: str) -> Register:
    """Register an identifier (revoked at the end of the run) and return its 201 record."""

    def create(res_type: str = "GPU", **extra: Any) -> dict[str, Any]:
        body = {**registration(res_type, owner_uscc, provision.label("identifier")), **extra}
        created = provision.create(IDENTIFIERS, body, key="identifier")
        expect_status(created.response, 201)
        return created.body

    return create


def _current(node: NodeClient, identifier: str) -> tuple[dict[str, Any], str]:
    response = node.get(path_of(identifier))
    expect_status(response, 200)
    etag = response.headers.get("etag")
    assert etag, f"GET {identifier} answered 200 without an ETag"
    return body_of(response), etag


def _patch(node: NodeClient, identifier: str, patch: Any, etag: str | None) -> Any:
    headers = {**MERGE_PATCH, **({"If-Match": etag} if etag is not None else {})}
    return node.request("PATCH", path_of(identifier), json=patch, headers=headers)


@pytest.mark.requirement("CPIN-ID-009")
def test_registration_answers_201_with_an_active_record(
    node: NodeClient, contract: Contract, provision: Provisioner, owner_uscc: str, ics: Ics
) -> None:
    body = registration("NPU", owner_uscc, provision.label("registration record"))
    created = provision.create(IDENTIFIERS, body, key="identifier")
    expect_status(created.response, 201)
    record = contract.expect_json(created.response, "schemas/identifier-record.json")
    assert record["state"] == "active", f"a new identifier is {record['state']!r}, not active"
    assert record["resType"] == "NPU", f"registered NPU, the record says {record['resType']!r}"
    assert record["owner"] == body["owner"], f"owner {record['owner']} differs from the request"
    assert record["issuer"] == record["identifier"][:9] == ics.node_code, (
        f"issuer {record['issuer']!r} of {record['identifier']}: the issuer is the node that "
        f"minted it ({ics.node_code}), the first 9 characters of the identifier"
    )


@pytest.mark.requirement("CPIN-ID-006")
def test_minted_identifiers_are_well_formed_under_the_own_node_code(
    register: Register, spec: Spec, ics: Ics, identifier_rules: IdentifierRules
) -> None:
    for res_type in spec.codes("resource-type"):
        identifier = str(register(res_type)["identifier"])
        prefix = f"{ics.node_code}-{res_type}-"
        assert identifier.startswith(prefix), f"minted {identifier!r}, expected {prefix}..."
        serial = identifier[len(prefix) : -1]
        assert len(serial) == 8 and all(c in SERIAL_ALPHABET for c in serial), (
            f"minted {identifier!r}: the Serial is 8 characters of [0-9A-Z]"
        )
        flaw = identifier_rules.resource_id_flaw(identifier)
        assert flaw is None, f"minted {identifier!r}: {flaw}"


@pytest.mark.requirement("CPIN-ID-007")
def test_concurrent_registrations_mint_distinct_identifiers(register: Register) -> None:
    with ThreadPoolExecutor(max_workers=CONCURRENT_REGISTRATIONS) as pool:
        futures = [pool.submit(register, "CPU") for _ in range(CONCURRENT_REGISTRATIONS)]
        minted = [str(f.result()["identifier"]) for f in futures]
    duplicates = sorted({i for i in minted if minted.count(i) > 1})
    assert not duplicates, (
        f"{CONCURRENT_REGISTRATIONS} concurrent registrations minted {duplicates} more than once"
    )


@pytest.mark.requirement("CPIN-ID-008")
def test_identifiers_are_never_reused_after_revocation(
    node: NodeClient, register: Register, contract: Contract
) -> None:
    first = str(register("STO")["identifier"])
    second = str(register("STO")["identifier"])
    expect_status(node.delete(path_of(second)), 200)
    third = str(register("STO")["identifier"])
    assert third not in {first, second}, (
        f"registration after revoking {second} minted {third} again: identifiers are never "
        "reused, revoked ones included"
    )
    contract.expect_problem(node.get(path_of(second)), 410, "identifier-revoked")


@pytest.mark.requirement("CPIN-ID-010")
def test_invalid_owner_uscc_answers_400_invalid_request(
    node: NodeClient, contract: Contract, spec: Spec, register: Register, provision: Provisioner
) -> None:
    invalid = [v["code"] for v in spec.vectors["uscc"]["invalid"]]
    label = provision.label("invalid owner")
    misses = []
    for code in invalid:
        response = node.post(IDENTIFIERS, json=registration("GPU", code, label))
        if response.status_code == 201:  # not kept: revoke what should never have been minted
            node.delete(path_of(str(body_of(response)["identifier"])))
        try:
            contract.expect_problem(response, 400, "invalid-request")
        except AssertionError as exc:
            misses.append(f"register with owner {code!r}: {exc}")
    record = register("GPU")
    identifier = str(record["identifier"])
    before, etag = _current(node, identifier)
    for code in invalid:
        response = _patch(node, identifier, {"owner": {"uscc": code}}, etag)
        try:
            contract.expect_problem(response, 400, "invalid-request")
        except AssertionError as exc:
            misses.append(f"update owner to {code!r}: {exc}")
    after, _ = _current(node, identifier)
    assert not misses, f"{len(misses)} invalid USCCs not refused: " + "; ".join(misses[:4])
    assert after["owner"] == before["owner"], "a refused owner update changed the record"


@pytest.mark.requirement("CPIN-ID-019")
def test_identifier_updates_require_a_matching_if_match(
    node: NodeClient, contract: Contract, register: Register
) -> None:
    identifier = str(register("GPU")["identifier"])
    before, etag = _current(node, identifier)
    patch = {"description": "cpin-conformance changed"}
    contract.expect_problem(_patch(node, identifier, patch, None), 428)
    contract.expect_problem(_patch(node, identifier, patch, '"cpin-not-the-etag"'), 412)
    unchanged, same_etag = _current(node, identifier)
    assert unchanged == before, "an update refused for its If-Match changed the record"
    assert same_etag == etag, "an update refused for its If-Match changed the ETag"
    updated = _patch(node, identifier, patch, etag)
    expect_status(updated, 200)
    contract.expect_problem(_patch(node, identifier, {"description": "again"}, etag), 412)


@pytest.mark.requirement("CPIN-ID-020")
def test_immutable_identifier_fields_cannot_be_patched(
    node: NodeClient, contract: Contract, register: Register
) -> None:
    record = register("GPU")
    identifier = str(record["identifier"])
    before, etag = _current(node, identifier)
    other = resource_id(identifier[:9], "CPU", identifier[14:22])
    patches = [
        {"identifier": other},
        {"resType": "CPU"},
        {"issuer": "N0000001U"},
        {"state": "revoked"},
        {"createdAt": "2020-01-01T00:00:00Z"},
    ]
    misses = []
    for patch in patches:
        response = _patch(node, identifier, patch, etag)
        if response.status_code != 400:
            misses.append(f"{patch} answered {response.status_code}")
    after, _ = _current(node, identifier)
    assert not misses, "patches of immutable fields must answer 400: " + "; ".join(misses)
    assert after == before, "a refused patch of an immutable field changed the record"


@pytest.mark.requirement("CPIN-ID-014")
def test_revoked_identifier_answers_410_at_once(
    node: NodeClient, contract: Contract, register: Register
) -> None:
    identifier = str(register("CLU")["identifier"])
    expect_status(node.get(path_of(identifier)), 200)
    revoked = node.delete(path_of(identifier))
    expect_status(revoked, 200)
    record = contract.expect_json(revoked, "schemas/identifier-record.json")
    assert record["state"] == "revoked", f"revokeIdentifier answered state {record['state']!r}"
    contract.expect_problem(node.get(path_of(identifier)), 410, "identifier-revoked")


@pytest.mark.requirement("CPIN-ID-021")
def test_revocation_is_final(
    node: NodeClient, contract: Contract, register: Register, owner_uscc: str
) -> None:
    identifier = str(register("SVC")["identifier"])
    _, etag = _current(node, identifier)
    expect_status(node.delete(path_of(identifier)), 200)
    patch = _patch(node, identifier, {"description": "revived?"}, etag)
    contract.expect_problem(patch, 410, "identifier-revoked")
    contract.expect_problem(node.delete(path_of(identifier)), 410, "identifier-revoked")
    contract.expect_problem(node.get(path_of(identifier)), 410, "identifier-revoked")
    listed = by_identifier(list_all(node, {"issuer": identifier[:9], "owner": owner_uscc}))
    assert identifier in listed, f"{identifier} is no longer listed after its revocation"
    assert listed[identifier]["state"] == "revoked", (
        f"{identifier} is listed {listed[identifier]['state']!r} after revocation"
    )


@pytest.mark.requirement("CPIN-ID-005")
def test_writes_to_foreign_identifiers_answer_403_foreign_prefix(
    node: NodeClient, contract: Contract, spec: Spec, ics: Ics, rng: random.Random
) -> None:
    codes = {foreign_code(spec, ics)}
    codes |= {v["code"] for v in spec.vectors["node_codes"]["valid"][:6]}
    codes.discard(ics.node_code)
    for code in sorted(codes):
        identifier = resource_id(code, "GPU", random_serial(rng))
        patch = _patch(node, identifier, {"description": "not yours"}, '"cpin-conformance"')
        contract.expect_problem(patch, 403, "foreign-prefix")
        contract.expect_problem(node.delete(path_of(identifier)), 403, "foreign-prefix")


@pytest.mark.requirement("CPIN-ID-025")
def test_national_node_refuses_identifier_writes_with_405(
    node: NodeClient, spec: Spec, rng: random.Random
) -> None:
    identifier = resource_id("R4400001E", "GPU", random_serial(rng))
    attempts = [
        node.post(IDENTIFIERS, json=registration("GPU", "91350100M000100Y43", "cpin")),
        node.request("PATCH", path_of(identifier), json={"description": "x"},
                     headers={**MERGE_PATCH, "If-Match": '"cpin"'}),
        node.delete(path_of(identifier)),
    ]  # fmt: skip
    for response in attempts:
        expect_status(response, 405)
        allow = {m.strip().upper() for m in response.headers.get("allow", "").split(",")}
        assert allow - {"HEAD"} == {"GET"}, (
            f"{response.request.method} {response.request.url.path} answered 405 with Allow "
            f"{response.headers.get('allow')!r}; the spec requires GET only"
        )
