"""Identification class: identifier syntax, code lists, check characters and canonical form,
on every operation that takes a resource identifier (identification.md §3-§6, §12).

The invalid identifiers come from the spec's vectors; the problem type each must get is the
vector's own `problem`, or else the one the harness's rules derive in the order of §6.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.ics import Ics
from conformance.identifiers import CHECK_MISMATCH, MALFORMED, IdentifierRules
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from conformance.suite._identification import (
    IDENTIFIERS,
    IdentifierOperation,
    foreign_code,
    identifier_operations,
    node_code,
    path_of,
    random_serial,
    registration,
    resource_id,
    unique_uscc,
    with_wrong_check,
)
from spec import Spec


def _expected_problem(rules: IdentifierRules, vector: dict[str, Any]) -> str:
    if "problem" in vector:
        return str(vector["problem"])
    flaw = rules.resource_id_flaw(vector["id"])
    assert flaw is not None, f"harness: vector {vector['id']!r} is listed invalid but passes"
    return flaw.problem


def _invalid_vectors(spec: Spec, rules: IdentifierRules, problem: str) -> list[str]:
    vectors = spec.vectors["resource_ids"]["invalid"]
    return [v["id"] for v in vectors if _expected_problem(rules, v) == problem]


def _expect_each(
    node: NodeClient,
    contract: Contract,
    operations: list[IdentifierOperation],
    identifiers: list[str],
    problem: str,
) -> None:
    """Every identifier on every operation gets 400 with `problem`; all misses reported."""
    misses = []
    for operation in operations:
        for identifier in identifiers:
            response = operation.send(node, identifier)
            try:
                contract.expect_problem(response, 400, problem)
            except AssertionError as exc:
                misses.append(f"{operation} with {identifier!r}: {exc}")
    assert not misses, f"{len(misses)} answers differ from 400 {problem}: " + "; ".join(misses[:4])


@pytest.fixture(scope="module")
def rng(certifier: Certifier) -> random.Random:
    return random.Random(f"{certifier.seed}-identification-syntax")


def _malformed(spec: Spec, ics: Ics, rules: IdentifierRules) -> list[str]:
    own = ics.node_code
    return [*_invalid_vectors(spec, rules, MALFORMED), own + "-GPU-0000001",
            f"{own}-GPU-000000011-", own]  # fmt: skip


@pytest.mark.requirement("CPIN-ID-001")
def test_malformed_identifiers_answer_400_malformed_identifier(
    node: NodeClient, contract: Contract, spec: Spec, ics: Ics, identifier_rules: IdentifierRules
) -> None:
    """In the path and in request bodies (createTask's resourceId) alike."""
    operations = identifier_operations(spec, ics, "CPIN-ID-001")
    precondition(operations, "the role serves no operation that takes a resource identifier")
    _expect_each(node, contract, operations, _malformed(spec, ics, identifier_rules), MALFORMED)


@pytest.mark.requirement("CPIN-ID-002")
def test_wrong_check_characters_answer_400_check_character_mismatch(
    node: NodeClient,
    contract: Contract,
    spec: Spec,
    ics: Ics,
    identifier_rules: IdentifierRules,
    rng: random.Random,
) -> None:
    operations = identifier_operations(spec, ics, "CPIN-ID-002")
    precondition(operations, "the role serves no operation that takes a resource identifier")
    own = ics.node_code
    right = resource_id(own, "GPU", random_serial(rng))
    wrong_node_check = with_wrong_check(own)
    embedded = resource_id(wrong_node_check, "CPU", random_serial(rng))
    mismatched = _invalid_vectors(spec, identifier_rules, CHECK_MISMATCH)
    mismatched += [with_wrong_check(right), embedded]
    for identifier in mismatched:
        flaw = identifier_rules.resource_id_flaw(identifier)
        assert flaw is not None and flaw.problem == CHECK_MISMATCH, f"harness: {identifier}"
    _expect_each(node, contract, operations, mismatched, CHECK_MISMATCH)


@pytest.mark.requirement("CPIN-ID-003")
def test_lower_case_identifiers_are_malformed_and_never_folded(
    node: NodeClient,
    contract: Contract,
    spec: Spec,
    ics: Ics,
    role: str,
    provision: Provisioner,
    identifier_rules: IdentifierRules,
    rng: random.Random,
) -> None:
    operations = identifier_operations(spec, ics, "CPIN-ID-003")
    lower = [i for i in _invalid_vectors(spec, identifier_rules, MALFORMED) if i != i.upper()]
    valid = [v["id"] for v in spec.vectors["resource_ids"]["valid"]]
    lower += [v.lower() for v in valid[:3]]
    existing = None
    if role != "national":
        label = provision.label("lower-case probe")
        created = provision.create(IDENTIFIERS, registration("GPU", unique_uscc(rng), label),
                                   key="identifier")  # fmt: skip
        expect_status(created.response, 201)
        existing = str(created.body["identifier"])
        lower += [existing.lower(), existing[:-1] + existing[-1].lower(), existing[:10]
                  + existing[10:13].lower() + existing[13:]]  # fmt: skip
        lower = [i for i in dict.fromkeys(lower) if i != existing]
    _expect_each(node, contract, operations, lower, MALFORMED)
    for code in (ics.node_code.lower(), ics.node_code[:-1] + ics.node_code[-1].lower()):
        if code == ics.node_code:
            continue
        response = node.get(IDENTIFIERS, params={"issuer": code})
        contract.expect_problem(response, 400, MALFORMED)
    if existing is not None:
        still = node.get(path_of(existing))
        expect_status(still, 200)
        assert body_of(still)["state"] == "active", (
            f"{existing} is {body_of(still)['state']} after writes to its lower-case spelling: "
            "the node folded the case of an identifier it should have refused"
        )


@pytest.mark.requirement("CPIN-ID-004")
def test_unknown_resource_types_are_malformed(
    node: NodeClient,
    contract: Contract,
    spec: Spec,
    ics: Ics,
    identifier_rules: IdentifierRules,
    rng: random.Random,
) -> None:
    operations = identifier_operations(spec, ics, "CPIN-ID-004")
    known = set(spec.codes("resource-type"))
    candidates = ["DCU", "DAT", "XYZ", "GPX", "AAA"]
    unknown = [t for t in candidates if t not in known]
    precondition(unknown, "every probe type is in the resource-type code list")
    identifiers = [resource_id(ics.node_code, t, random_serial(rng)) for t in unknown]
    identifiers += [v["id"] for v in spec.vectors["resource_ids"]["invalid"]
                    if v["id"][10:13] not in known and v["id"][10:13].isupper()
                    and v["id"][10:13].isalpha() and len(v["id"]) == 23]  # fmt: skip
    for identifier in identifiers:
        flaw = identifier_rules.resource_id_flaw(identifier)
        assert flaw is not None and flaw.problem == MALFORMED, f"harness: {identifier}"
    _expect_each(node, contract, operations, identifiers, MALFORMED)


@pytest.mark.requirement("CPIN-ID-033")
def test_identifier_errors_follow_the_precedence_of_the_spec(
    node: NodeClient,
    contract: Contract,
    spec: Spec,
    ics: Ics,
    role: str,
    rng: random.Random,
) -> None:
    """Authentication first (401), then syntax and check characters (400), then prefix (403,
    writes), then state (404)."""
    nowhere = resource_id(node_code("I54T9799"), "GPU", random_serial(rng))
    expect_status(node.get(path_of(with_wrong_check(nowhere)), authenticated=False), 401)
    foreign = resource_id(foreign_code(spec, ics), "GPU", random_serial(rng))
    for operation in identifier_operations(spec, ics, "CPIN-ID-033"):
        answer = operation.send(node, with_wrong_check(nowhere))
        contract.expect_problem(answer, 400, CHECK_MISMATCH)
        if operation.method != "GET":
            contract.expect_problem(operation.send(node, foreign), 403, "foreign-prefix")
            answer = operation.send(node, with_wrong_check(foreign))
            contract.expect_problem(answer, 400, CHECK_MISMATCH)
    if role != "national":
        unknown_own = resource_id(ics.node_code, "GPU", random_serial(rng))
        contract.expect_problem(node.delete(path_of(unknown_own)), 404, "unknown-identifier")
