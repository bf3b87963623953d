"""node-registry (national node): applications judged against the unified rules, NodeCode
issuance, node records, list filters, guarded updates, suspension and reinstatement.

Every application here is an industry node application under an existing active regional
node, or a regional one for a province that is taken already: the suite never gets a regional
node approved. Approved test nodes are suspended when the module ends.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.identifiers import IdentifierRules, mod37_36
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from conformance.suite._node_registry import (
    APPLICATIONS,
    MIN_REGISTERED_CAPITAL_CNY,
    NODES,
    Registry,
    TestNode,
    applicant,
    rules_of,
    unused_industry,
    valid_uscc,
)
from spec import Spec

APPLICATION_SCHEMA = "schemas/node-application.json"
NODE_SCHEMA = "schemas/node.json"
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture(scope="module")
def registry(
    node: NodeClient, spec: Spec, certifier: Certifier, provision: Provisioner
) -> Iterator[Registry]:
    found = Registry(node, spec, provision.label("node-registry"), random.Random(certifier.seed))
    yield found
    for line in found.suspend_all():
        certifier.log(line)


@pytest.fixture(scope="module")
def parent(registry: Registry) -> dict[str, Any]:
    """The active regional node the suite's industry applications name as parent."""
    found = registry.regional_parent()
    precondition(found, "the registry holds no active regional node to apply under")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def industry(registry: Registry) -> str:
    return unused_industry(registry.spec, registry.nodes(), registry.rng)


@pytest.fixture(scope="module")
def approved_pair(
    registry: Registry, parent: dict[str, Any], industry: str
) -> list[tuple[TestNode, dict[str, Any], httpx.Response]]:
    """Two applications for the same NodeType, Province and Industry sent at once, each
    meeting every rule with the least it may: a public institution without a telecom licence
    and a registered capital of exactly RMB 50 000 000."""
    cases = []
    for _ in range(2):
        test_node = TestNode(registry.label)
        builder = applicant(
            registry.rng,
            registry.label,
            uscc=valid_uscc(registry.rng, "12"),
            registeredCapitalCny=MIN_REGISTERED_CAPITAL_CNY,
            publicInstitution=True,
            telecomLicence=None,
        )
        cases.append((test_node, registry.application(parent, industry, test_node, builder)))
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda case: registry.submit(case[1]), cases))
    pair = []
    for (test_node, application), response in zip(cases, answers, strict=True):
        record = _json(response)
        if response.status_code == 201 and record.get("status") == "approved":
            test_node.node_code = record.get("nodeCode")
        pair.append((test_node, application, response))
    return pair


@pytest.fixture(scope="module")
def subject(
    approved_pair: list[tuple[TestNode, dict[str, Any], httpx.Response]],
) -> tuple[TestNode, dict[str, Any], dict[str, Any]]:
    """The first approved test node: its key, its application and its application record."""
    test_node, application, response = approved_pair[0]
    precondition(
        test_node.node_code,
        f"the test node application was not approved "
        f"({response.status_code}: {response.text[:200]})",
    )
    return test_node, application, response.json()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _rejected_for(
    contract: Contract, response: httpx.Response, rule: str, what: str
) -> dict[str, Any]:
    """The answer to a schema-valid application that fails `rule`: 201, rejected, naming it."""
    expect_status(response, 201)
    record = contract.expect_json(response, APPLICATION_SCHEMA)
    assert record["status"] == "rejected", (
        f"{what}: the application was {record['status']!r}"
        f"{' as ' + record['nodeCode'] if 'nodeCode' in record else ''}, {rule} forbids approval"
    )
    assert rule in rules_of(record), (
        f"{what}: rejected, but its violations name {rules_of(record)}, not {rule}"
    )
    return dict(record)


def _refused_as_invalid(response: httpx.Response, what: str) -> None:
    """400 and no application record: no applicationId, no Location."""
    assert response.status_code == 400, (
        f"{what}: answered {response.status_code}, the spec requires 400: {response.text[:300]}"
    )
    assert "location" not in response.headers, f"{what}: a 400 answer points at a record"
    assert "applicationId" not in _json(response), f"{what}: a 400 answer carries an application"


# -- applications refused before anything is recorded (400) ------------------------------


@pytest.mark.requirement("CPIN-REG-001")
def test_schema_invalid_applications_answer_400_and_are_not_recorded(
    registry: Registry, parent: dict[str, Any], industry: str
) -> None:
    valid = registry.application(parent, industry)
    cases = {
        "an unknown member": {**valid, "priority": "high"},
        "no contact": {k: v for k, v in valid.items() if k != "contact"},
        "a negative registered capital": {
            **valid,
            "applicant": {**valid["applicant"], "registeredCapitalCny": -1},
        },
        "an endpoint that is not http(s)": {**valid, "endpoint": "ftp://node.example.com/"},
        "a name without text": {**valid, "name": {}},
    }
    for what, body in cases.items():
        _refused_as_invalid(registry.submit(body), f"an application with {what}")


@pytest.mark.requirement("CPIN-REG-008")
def test_invalid_unified_social_credit_codes_answer_400_invalid_request(
    registry: Registry, parent: dict[str, Any], industry: str, contract: Contract
) -> None:
    good = valid_uscc(registry.rng, "91")
    wrong_check = good[:17] + next(c for c in "0123456789ABCDEFGHJKLMNPQRTUWXY" if c != good[17])
    bad_codes = {
        "a wrong check character": wrong_check,
        "17 characters": good[:17],
        "the letter I, outside the GB 32100 set": good[:10] + "I" + good[11:],
        "lower case": good[:10] + "a" + good[11:],
    }
    for what, bad in bad_codes.items():
        for party in ("applicant", "operator"):
            application = registry.application(parent, industry)
            if party == "applicant":
                application["applicant"]["uscc"] = bad
            else:
                application["operator"] = {
                    "legalName": f"{registry.label} 运营主体",
                    "uscc": bad,
                    "publicInstitution": True,
                    "dishonestyRecordLast3Years": False,
                }
            response = registry.submit(application)
            where = f"the {party}'s USCC {bad!r} ({what})"
            _refused_as_invalid(response, where)
            contract.expect_problem(response, 400, "invalid-request")


@pytest.mark.requirement("CPIN-REG-009")
def test_unknown_province_or_industry_answers_400(
    registry: Registry, parent: dict[str, Any], industry: str, spec: Spec
) -> None:
    provinces = set(spec.codes("province"))
    unknown_province = next(f"{n:02d}" for n in range(99, 0, -1) if f"{n:02d}" not in provinces)
    divisions = {e["const"]: e["x-section"] for e in spec.codelist("industry-division")}
    unknown_division = next(f"{n:02d}" for n in range(99, 0, -1) if f"{n:02d}" not in divisions)
    division, section = next(iter(divisions.items()))
    wrong_section = next(s for s in spec.codes("industry-section") if s != section)
    cases = {
        f"province {unknown_province}": {"province": unknown_province},
        f"industry {section}{unknown_division}": {"industry": f"{section}{unknown_division}"},
        f"industry {wrong_section}{division}": {"industry": f"{wrong_section}{division}"},
    }
    for what, change in cases.items():
        response = registry.submit({**registry.application(parent, industry), **change})
        _refused_as_invalid(response, f"an application for {what}, not in the code lists")


@pytest.mark.requirement("CPIN-REG-021")
def test_application_keys_must_be_public_signing_keys(
    registry: Registry, parent: dict[str, Any], industry: str
) -> None:
    public = TestNode(registry.label).jwks["keys"][0]
    keys = {
        "an Ed25519 key with its private member d": {**public, "d": public["x"]},
        "a symmetric key": {"kty": "oct", "k": public["x"], "kid": "shared", "alg": "HS256"},
        "an RSA key": {
            "kty": "RSA",
            "n": public["x"] * 8,
            "e": "AQAB",
            "kid": "rsa",
            "alg": "RS256",
            "use": "sig",
        },
    }
    for what, key in keys.items():
        application = {**registry.application(parent, industry), "jwks": {"keys": [key]}}
        _refused_as_invalid(registry.submit(application), f"an application whose jwks holds {what}")


@pytest.mark.requirement("CPIN-REG-023")
def test_application_for_the_national_role_answers_400(
    registry: Registry, parent: dict[str, Any], industry: str
) -> None:
    application = registry.application(parent, industry)
    for member in ("industry", "parentNodeCode"):
        application.pop(member)
    application["role"] = "national"
    _refused_as_invalid(registry.submit(application), "an application for the national role")


# -- applications judged against the unified rules (201, rejected) -----------------------


@pytest.mark.requirement("CPIN-REG-002")
def test_capital_below_50_million_is_rejected(
    registry: Registry, parent: dict[str, Any], industry: str, contract: Contract
) -> None:
    builder = applicant(
        registry.rng, registry.label, registeredCapitalCny=MIN_REGISTERED_CAPITAL_CNY - 1
    )
    response = registry.submit(registry.application(parent, industry, builder=builder))
    _rejected_for(contract, response, "CPIN-REG-002", "a capital of RMB 49 999 999")


@pytest.mark.requirement("CPIN-REG-002")
def test_capital_of_exactly_50_million_meets_the_capital_rule(
    approved_pair: list[tuple[TestNode, dict[str, Any], httpx.Response]],
) -> None:
    for _, _, response in approved_pair:
        expect_status(response, 201)
        assert "CPIN-REG-002" not in rules_of(_json(response)), (
            "an applicant with a registered capital of exactly RMB 50 000 000 was refused "
            "under CPIN-REG-002, which that capital satisfies"
        )


@pytest.mark.requirement("CPIN-REG-003")
def test_operator_without_telecom_licence_is_rejected(
    registry: Registry, parent: dict[str, Any], industry: str, contract: Contract
) -> None:
    unlicensed = applicant(registry.rng, registry.label, telecomLicence=None)
    response = registry.submit(registry.application(parent, industry, builder=unlicensed))
    _rejected_for(contract, response, "CPIN-REG-003", "an applicant with no licence")
    application = registry.application(parent, industry)
    application["operator"] = {
        "legalName": f"{registry.label} 运营主体",
        "uscc": valid_uscc(registry.rng, "91"),
        "publicInstitution": False,
        "dishonestyRecordLast3Years": False,
    }
    response = registry.submit(application)
    _rejected_for(contract, response, "CPIN-REG-003", "a named operator with no licence")


@pytest.mark.requirement("CPIN-REG-003")
def test_public_institution_needs_no_telecom_licence(
    approved_pair: list[tuple[TestNode, dict[str, Any], httpx.Response]],
) -> None:
    for _, _, response in approved_pair:
        expect_status(response, 201)
        assert "CPIN-REG-003" not in rules_of(_json(response)), (
            "a public institution (事业单位) without a telecom licence was refused under "
            "CPIN-REG-003, which exempts public institutions"
        )


@pytest.mark.requirement("CPIN-REG-004")
def test_dishonesty_record_is_rejected(
    registry: Registry, parent: dict[str, Any], industry: str, contract: Contract
) -> None:
    dishonest = applicant(registry.rng, registry.label, dishonestyRecordLast3Years=True)
    response = registry.submit(registry.application(parent, industry, builder=dishonest))
    _rejected_for(contract, response, "CPIN-REG-004", "an applicant with a dishonesty record")
    application = registry.application(parent, industry)
    application["operator"] = {
        "legalName": f"{registry.label} 运营主体",
        "uscc": valid_uscc(registry.rng, "12"),
        "publicInstitution": True,
        "dishonestyRecordLast3Years": True,
    }
    response = registry.submit(application)
    _rejected_for(contract, response, "CPIN-REG-004", "an operator with a dishonesty record")


@pytest.mark.requirement("CPIN-REG-006")
def test_second_regional_node_for_a_province_is_rejected_also_concurrently(
    registry: Registry, parent: dict[str, Any], contract: Contract
) -> None:
    """Two applications for the province of an active regional node, sent at once."""
    application = registry.application(parent, "000")
    for member in ("industry", "parentNodeCode"):
        application.pop(member)
    application["role"] = "regional"
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(registry.submit, [application, application]))
    for response in answers:
        _rejected_for(
            contract,
            response,
            "CPIN-REG-006",
            f"a regional node for province {parent['province']}, which {parent['nodeCode']} holds",
        )


@pytest.mark.requirement("CPIN-REG-007")
def test_industry_node_must_name_an_active_regional_parent(
    registry: Registry,
    parent: dict[str, Any],
    industry: str,
    contract: Contract,
    service_info: dict[str, Any],
) -> None:
    nodes = registry.nodes()
    codes = {n["nodeCode"] for n in nodes}
    stem = f"R{parent['province']}000"
    unregistered = next(
        f"{stem}{seq:02d}{mod37_36(f'{stem}{seq:02d}')}"
        for seq in range(99, 0, -1)
        if f"{stem}{seq:02d}{mod37_36(f'{stem}{seq:02d}')}" not in codes
    )
    parents = {
        f"an unregistered NodeCode {unregistered}": unregistered,
        f"the national node {service_info['nodeCode']}": service_info["nodeCode"],
    }
    industry_nodes = [n for n in nodes if n["role"] == "industry"]
    if industry_nodes:
        parents[f"the industry node {industry_nodes[0]['nodeCode']}"] = industry_nodes[0][
            "nodeCode"
        ]
    for what, code in parents.items():
        application = {**registry.application(parent, industry), "parentNodeCode": code}
        _rejected_for(
            contract,
            registry.submit(application),
            "CPIN-REG-007",
            f"an industry node whose parent is {what}",
        )
    orphan = registry.application(parent, industry)
    orphan.pop("parentNodeCode")
    response = registry.submit(orphan)
    if response.status_code == 400:  # the schema makes parentNodeCode required: REG-001 applies
        return
    _rejected_for(contract, response, "CPIN-REG-007", "an industry node naming no parent")


@pytest.mark.requirement("CPIN-REG-010")
def test_every_violated_rule_is_listed_and_the_record_kept(
    registry: Registry,
    parent: dict[str, Any],
    industry: str,
    node: NodeClient,
    contract: Contract,
    service_info: dict[str, Any],
) -> None:
    builder = applicant(
        registry.rng,
        registry.label,
        registeredCapitalCny=1_000_000,
        telecomLicence=None,
        dishonestyRecordLast3Years=True,
    )
    application = registry.application(parent, industry, builder=builder)
    application["parentNodeCode"] = national = service_info["nodeCode"]
    wanted = {"CPIN-REG-002", "CPIN-REG-003", "CPIN-REG-004", "CPIN-REG-007"}
    response = registry.submit(application)
    record = _rejected_for(contract, response, "CPIN-REG-002", "an application failing four rules")
    missing = wanted - set(rules_of(record))
    assert not missing, (
        f"an application failing {sorted(wanted)} (capital RMB 1 000 000, no licence, a "
        f"dishonesty record, parent {national}) lists only {rules_of(record)}"
    )
    again = node.get(f"{APPLICATIONS}/{record['applicationId']}")
    expect_status(again, 200)
    kept = contract.expect_json(again, APPLICATION_SCHEMA)
    assert kept["status"] == "rejected" and set(rules_of(kept)) == set(rules_of(record)), (
        f"getNodeApplication shows status {kept['status']!r} with {rules_of(kept)}, the "
        f"submission answered rejected with {rules_of(record)}"
    )


# -- approval, NodeCodes and node records ------------------------------------------------


@pytest.mark.requirement("CPIN-REG-011")
def test_application_meeting_every_rule_is_approved_with_an_active_node(
    approved_pair: list[tuple[TestNode, dict[str, Any], httpx.Response]],
    node: NodeClient,
    contract: Contract,
) -> None:
    for _, _, response in approved_pair:
        expect_status(response, 201)
        record = contract.expect_json(response, APPLICATION_SCHEMA)
        assert record["status"] == "approved", (
            f"an application meeting every rule was {record['status']!r}: {rules_of(record)}"
        )
        found = node.get(f"{NODES}/{record['nodeCode']}")
        expect_status(found, 200)
        created = contract.expect_json(found, NODE_SCHEMA)
        assert created["nodeCode"] == record["nodeCode"] and created["status"] == "active", (
            f"getNode {record['nodeCode']} right after approval shows {created['nodeCode']} "
            f"with status {created['status']!r}, not active"
        )


@pytest.mark.requirement("CPIN-REG-012")
def test_issued_node_code_is_well_formed_for_the_application(
    approved_pair: list[tuple[TestNode, dict[str, Any], httpx.Response]],
    identifier_rules: IdentifierRules,
) -> None:
    codes = [(t.node_code, application) for t, application, _ in approved_pair if t.node_code]
    precondition(codes, "no test node application was approved")
    for code, application in codes:
        assert code is not None
        flaw = identifier_rules.node_code_flaw(code)
        assert flaw is None, f"issued NodeCode {code!r}: {flaw}"
        expected = f"I{application['province']}{application['industry']}"
        assert code[:6] == expected, (
            f"an industry node for province {application['province']} and industry "
            f"{application['industry']} was issued {code}; its first six characters must be "
            f"{expected}"
        )


@pytest.mark.requirement("CPIN-REG-013")
def test_concurrent_applications_get_distinct_node_codes(
    approved_pair: list[tuple[TestNode, dict[str, Any], httpx.Response]], registry: Registry
) -> None:
    codes = [t.node_code for t, _, _ in approved_pair if t.node_code]
    precondition(len(codes) == 2, "the two concurrent test applications were not both approved")
    assert codes[0] != codes[1], (
        f"two applications for the same type, province and industry sent at once were both "
        f"issued {codes[0]}"
    )
    listed = [n["nodeCode"] for n in registry.nodes()]
    twice = sorted({code for code in listed if listed.count(code) > 1})
    assert not twice, f"listNodes holds NodeCodes {twice} more than once"


@pytest.mark.requirement("CPIN-REG-015")
def test_node_records_carry_every_member(
    subject: tuple[TestNode, dict[str, Any], dict[str, Any]],
    registry: Registry,
    node: NodeClient,
    contract: Contract,
) -> None:
    test_node, application, _ = subject
    response = node.get(f"{NODES}/{test_node.node_code}")
    expect_status(response, 200)
    record = contract.expect_json(response, NODE_SCHEMA)
    expected = {
        "role": application["role"],
        "province": application["province"],
        "industry": application["industry"],
        "parentNodeCode": application["parentNodeCode"],
        "endpoint": application["endpoint"],
        "jwks": application["jwks"],
        "operator": {k: application["applicant"][k] for k in ("legalName", "uscc")},
    }
    wrong = {k: record.get(k) for k, v in expected.items() if record.get(k) != v}
    assert not wrong, f"node {test_node.node_code} differs from its application in {wrong}"
    for listed in registry.nodes()[:30]:
        answer = node.get(f"{NODES}/{listed['nodeCode']}")
        expect_status(answer, 200)
        contract.expect_json(answer, NODE_SCHEMA)


@pytest.mark.requirement("CPIN-REG-016")
def test_list_filters_return_exactly_the_matching_nodes(
    registry: Registry, subject: tuple[TestNode, dict[str, Any], dict[str, Any]], spec: Spec
) -> None:
    everyone = registry.nodes()
    _, application, _ = subject
    filters: list[dict[str, str]] = [{"role": role} for role in spec.codes("node-role")]
    filters += [{"status": status} for status in spec.codes("node-status")]
    filters += [
        {"province": application["province"]},
        {"parent": application["parentNodeCode"]},
        {"role": "industry", "province": application["province"], "status": "active"},
        {
            "role": "regional",
            "parent": next(n["nodeCode"] for n in everyone if n["role"] == "national"),
        },
    ]
    key = {"parent": "parentNodeCode"}
    for given in filters:
        wanted = sorted(
            n["nodeCode"]
            for n in everyone
            if all(n.get(key.get(name, name)) == value for name, value in given.items())
        )
        listed = sorted(n["nodeCode"] for n in registry.nodes(**given))
        assert listed == wanted, (
            f"listNodes {given} returned {_diff(listed, wanted)} against the full registry"
        )


def _diff(listed: list[str], wanted: list[str]) -> str:
    extra, missing = sorted(set(listed) - set(wanted)), sorted(set(wanted) - set(listed))
    return f"{len(listed)} nodes; not matching: {extra[:5]}; missing: {missing[:5]}"


@pytest.mark.requirement("CPIN-REG-017")
def test_node_update_needs_if_match_and_keeps_identity_fields(
    subject: tuple[TestNode, dict[str, Any], dict[str, Any]], node: NodeClient, contract: Contract
) -> None:
    test_node = subject[0]
    path = f"{NODES}/{test_node.node_code}"
    before = node.get(path)
    expect_status(before, 200)
    etag = before.headers.get("etag")
    precondition(etag, "getNode sent no ETag")
    rename = {"name": {"en": "renamed test node"}}
    contract.expect_problem(_patch(node, path, rename), 428, "precondition-required")
    contract.expect_problem(
        _patch(node, path, rename, '"not-the-etag"'), 412, "precondition-failed"
    )
    identity = {
        "nodeCode": "I11C3901X",
        "role": "regional",
        "province": "11" if test_node.node_code and test_node.node_code[1:3] != "11" else "31",
        "industry": "A01",
    }
    for member, value in identity.items():
        answer = _patch(node, path, {member: value}, str(etag))
        assert answer.status_code == 400, (
            f"updateNode changing {member} to {value!r} answered {answer.status_code}, the spec "
            f"requires 400"
        )
    after = node.get(path)
    expect_status(after, 200)
    assert body_of(after) == body_of(before) and after.headers.get("etag") == etag, (
        f"node {test_node.node_code} changed although every update was refused"
    )


def _patch(node: NodeClient, path: str, patch: dict[str, Any], if_match: str | None = None) -> Any:
    headers = {"Content-Type": MERGE_PATCH, **({"If-Match": if_match} if if_match else {})}
    return node.request("PATCH", path, content=json.dumps(patch).encode(), headers=headers)


# -- suspension and reinstatement --------------------------------------------------------


def _status_everywhere(registry: Registry, code: str, parent_code: str) -> tuple[Any, Any]:
    """The node as getNode shows it, and as listNodes (filtered by parent) shows it."""
    found = registry.national.get(f"{NODES}/{code}")
    expect_status(found, 200)
    listed = next((n for n in registry.nodes(parent=parent_code) if n["nodeCode"] == code), None)
    assert listed is not None, f"listNodes parent={parent_code} does not show node {code}"
    return body_of(found), listed


@pytest.mark.requirement("CPIN-REG-018")
def test_suspended_node_shows_suspended_with_reason(
    subject: tuple[TestNode, dict[str, Any], dict[str, Any]],
    registry: Registry,
    contract: Contract,
) -> None:
    test_node, application, _ = subject
    code = str(test_node.node_code)
    for attempt in ("first", "second"):
        answer = registry.suspend(code, f"{attempt} suspension")
        expect_status(answer, 200)
        record, listed = _status_everywhere(registry, code, application["parentNodeCode"])
        contract.expect_valid(record, NODE_SCHEMA, "the suspended node record")
        assert record["nodeCode"] == code and record["status"] == "suspended", (
            f"after the {attempt} suspendNode, getNode shows {record['nodeCode']} "
            f"{record['status']!r}"
        )
        assert listed["status"] == "suspended", (
            f"after the {attempt} suspendNode, listNodes shows {code} {listed['status']!r}"
        )
        reason = record.get("suspension", {}).get("reason", {})
        assert f"{attempt} suspension" in str(reason.get("en", "")), (
            f"after the {attempt} suspendNode, the suspension reason is {reason}"
        )


@pytest.mark.requirement("CPIN-REG-019")
def test_reinstated_node_shows_active(
    subject: tuple[TestNode, dict[str, Any], dict[str, Any]],
    registry: Registry,
    contract: Contract,
) -> None:
    test_node, application, _ = subject
    code = str(test_node.node_code)
    precondition(
        registry.suspend(code, "suspended to be reinstated").status_code == 200,
        "the test node could not be suspended first",
    )
    for attempt in ("first", "second"):
        answer = registry.national.delete(f"{NODES}/{code}/suspension")
        expect_status(answer, 200)
        record, listed = _status_everywhere(registry, code, application["parentNodeCode"])
        contract.expect_valid(record, NODE_SCHEMA, "the reinstated node record")
        assert (record["nodeCode"], record["status"], listed["status"]) == (
            code,
            "active",
            "active",
        ), (
            f"after the {attempt} reinstateNode, getNode shows {record['nodeCode']} "
            f"{record['status']!r} and listNodes {listed['status']!r}"
        )


@pytest.mark.requirement("CPIN-REG-020")
def test_national_node_refuses_a_suspended_node_at_once(
    subject: tuple[TestNode, dict[str, Any], dict[str, Any]],
    registry: Registry,
    service_info: dict[str, Any],
    contract: Contract,
) -> None:
    test_node = subject[0]
    code, national = str(test_node.node_code), service_info["nodeCode"]
    reinstated = registry.national.delete(f"{NODES}/{code}/suspension")
    precondition(reinstated.status_code == 200, "the test node could not be made active")
    calls = (f"{NODES}/{code}", "/v1/federation/peers")
    for path in calls:
        token = test_node.assertion(national, {"registry:read"})
        answer = registry.national.get(path, token=token)
        precondition(
            answer.status_code == 200,
            f"the national node refuses the active test node's assertion at {path}: "
            f"{answer.status_code}",
        )
    expect_status(registry.suspend(code, "suspended to test refusal"), 200)
    for path in calls:
        token = test_node.assertion(national, {"registry:read"})
        contract.expect_problem(registry.national.get(path, token=token), 403, "node-suspended")


@pytest.mark.requirement("CPIN-REG-022")
def test_application_records_are_retrievable_and_unknown_ids_answer_404(
    subject: tuple[TestNode, dict[str, Any], dict[str, Any]],
    node: NodeClient,
    contract: Contract,
) -> None:
    test_node, _, submitted = subject
    response = node.get(f"{APPLICATIONS}/{submitted['applicationId']}")
    expect_status(response, 200)
    record = contract.expect_json(response, APPLICATION_SCHEMA)
    assert (record["status"], record.get("nodeCode")) == ("approved", test_node.node_code), (
        f"getNodeApplication shows {record['status']!r} / {record.get('nodeCode')}, the "
        f"application was approved as {test_node.node_code}"
    )
    unknown = node.get(f"{APPLICATIONS}/{uuid.uuid4()}")
    contract.expect_problem(unknown, 404, "not-found")
