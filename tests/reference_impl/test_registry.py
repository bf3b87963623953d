"""reference_impl/registry.py: the application rules and NodeCode issuance, without HTTP."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import spec
from reference_impl.registry import (
    MIN_REGISTERED_CAPITAL_CNY,
    NodeView,
    Snapshot,
    input_problem,
    lowest_free_seq,
    node_code,
    node_code_prefix,
    node_record,
    violations,
)

SPEC = spec.default()
REGIONAL_44 = NodeView("R4400001E", "regional", "active", "44")
FREE = Snapshot(province_holders=(), parent=None, free_seq=1)


def example(role: str) -> dict[str, Any]:
    """The spec's own example application for the role (NodeApplicationInput examples)."""
    inputs = SPEC.load("schemas/node-application.json")["$defs"]["NodeApplicationInput"]
    found: dict[str, Any] = next(e for e in inputs["examples"] if e["role"] == role)
    return copy.deepcopy(found)


def validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": SPEC.uri(ref)},
        registry=SPEC.registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def rules_of(application: dict[str, Any], snapshot: Snapshot = FREE) -> list[str]:
    found = violations(application, snapshot, SPEC)
    check = validator("schemas/problem.json#/$defs/Violation")
    for violation in found:
        check.validate(violation)
        assert violation["message"]["zh"] and violation["message"]["en"]
    return [v["rule"] for v in found]


def industry_snapshot(parent: NodeView | None = REGIONAL_44) -> Snapshot:
    return Snapshot(province_holders=(), parent=parent, free_seq=1)


# --- the unified rules, one at a time -----------------------------------------------------


def test_spec_examples_satisfy_every_rule() -> None:
    assert rules_of(example("regional")) == []
    assert rules_of(example("industry"), industry_snapshot()) == []


def test_capital_below_threshold_fails_reg_002() -> None:
    application = example("regional")
    application["applicant"]["registeredCapitalCny"] = MIN_REGISTERED_CAPITAL_CNY - 1
    assert rules_of(application) == ["CPIN-REG-002"]


def test_capital_of_exactly_the_threshold_passes() -> None:
    application = example("regional")
    application["applicant"]["registeredCapitalCny"] = 50_000_000
    assert rules_of(application) == []


def test_threshold_is_the_one_of_the_requirement_text() -> None:
    requirement = SPEC.requirement("CPIN-REG-002")
    assert requirement is not None
    assert "50 000 000" in requirement["text"]["en"]
    assert MIN_REGISTERED_CAPITAL_CNY == 50_000_000


def test_no_licence_and_no_public_institution_fails_reg_003() -> None:
    application = example("regional")
    del application["applicant"]["telecomLicence"]
    assert rules_of(application) == ["CPIN-REG-003"]


def test_public_institution_needs_no_licence() -> None:
    application = example("regional")
    del application["applicant"]["telecomLicence"]
    application["applicant"]["publicInstitution"] = True
    assert rules_of(application) == []


def test_named_operator_without_licence_fails_reg_003() -> None:
    application = example("industry")
    del application["operator"]["telecomLicence"]
    found = violations(application, industry_snapshot(), SPEC)
    assert [v["rule"] for v in found] == ["CPIN-REG-003"]
    assert "operator" in found[0]["message"]["en"]
    assert "运营主体" in found[0]["message"]["zh"]


@pytest.mark.parametrize("party", ["applicant", "operator"])
def test_dishonesty_record_fails_reg_004(party: str) -> None:
    application = example("industry")
    application[party]["dishonestyRecordLast3Years"] = True
    assert rules_of(application, industry_snapshot()) == ["CPIN-REG-004"]


@pytest.mark.parametrize("status", ["active", "suspended"])
def test_province_with_a_regional_node_fails_reg_006(status: str) -> None:
    holder = NodeView("R4400001E", "regional", status, "44")
    snapshot = Snapshot(province_holders=(holder,), parent=None, free_seq=2)
    found = violations(example("regional"), snapshot, SPEC)
    assert [v["rule"] for v in found] == ["CPIN-REG-006"]
    assert "R4400001E" in found[0]["message"]["en"]


def test_province_holders_do_not_concern_industry_nodes() -> None:
    snapshot = Snapshot(province_holders=(REGIONAL_44,), parent=REGIONAL_44, free_seq=1)
    assert rules_of(example("industry"), snapshot) == []


@pytest.mark.parametrize(
    "parent",
    [
        None,  # not registered
        NodeView("R4400001E", "regional", "suspended", "44"),
        NodeView("R4400001E", "regional", "revoked", "44"),
        NodeView("I44C3801D", "industry", "active", "44"),
        NodeView("R3500001Q", "regional", "active", "35"),  # another province
    ],
)
def test_parent_not_the_active_regional_node_of_the_province_fails_reg_007(
    parent: NodeView | None,
) -> None:
    assert rules_of(example("industry"), industry_snapshot(parent)) == ["CPIN-REG-007"]


def test_industry_application_without_parent_fails_reg_007() -> None:
    application = example("industry")
    del application["parentNodeCode"]
    assert rules_of(application, industry_snapshot(None)) == ["CPIN-REG-007"]


def test_no_seq_left_fails_reg_014() -> None:
    snapshot = Snapshot(province_holders=(), parent=None, free_seq=None)
    assert rules_of(example("regional"), snapshot) == ["CPIN-REG-014"]


def test_every_violated_rule_is_listed_in_requirement_order() -> None:
    application = example("industry")
    application["applicant"]["registeredCapitalCny"] = 0
    application["applicant"]["publicInstitution"] = False
    application["operator"]["dishonestyRecordLast3Years"] = True
    del application["operator"]["telecomLicence"]
    snapshot = Snapshot(province_holders=(), parent=None, free_seq=None)
    found = violations(application, snapshot, SPEC)
    assert [v["rule"] for v in found] == [
        "CPIN-REG-002",
        "CPIN-REG-003",
        "CPIN-REG-004",
        "CPIN-REG-007",
        "CPIN-REG-014",
    ]
    licence = found[1]["message"]
    assert "applicant" in licence["en"] and "operator" in licence["en"]
    assert "建设主体和运营主体" in licence["zh"]


def test_spec_example_of_a_rejected_application_is_reproduced() -> None:
    """The failsRules example of submitNodeApplication is rejected for REG-002 and REG-003."""
    operation = SPEC.openapi["paths"]["/v1/node-applications"]["post"]
    content = operation["requestBody"]["content"]["application/json"]
    application = content["examples"]["failsRules"]["value"]
    assert rules_of(application) == ["CPIN-REG-002", "CPIN-REG-003"]


# --- defects answered with 400 before anything is recorded ----------------------------------


def test_valid_input_has_no_problem() -> None:
    assert input_problem(example("regional"), SPEC) is None
    assert input_problem(example("industry"), SPEC) is None


@pytest.mark.parametrize("party", ["applicant", "operator"])
def test_uscc_with_a_wrong_check_character_is_invalid_request(party: str) -> None:
    application = example("industry")
    uscc = application[party]["uscc"]
    application[party]["uscc"] = uscc[:17] + ("0" if uscc[17] != "0" else "1")
    problem = input_problem(application, SPEC)
    assert problem is not None
    assert problem.slug == "invalid-request"
    assert problem.members["errors"] == [
        {
            "pointer": f"/{party}/uscc",
            "message": problem.members["errors"][0]["message"],
            "rule": "CPIN-REG-008",
        }
    ]


def test_every_input_defect_is_listed() -> None:
    application = example("industry")
    application["applicant"]["uscc"] = "9144030071526726X0"
    application["operator"]["uscc"] = "91440101MA59TQ6R01"
    application["industry"] = "I38"
    problem = input_problem(application, SPEC)
    assert problem is not None
    pointers = [e["pointer"] for e in problem.members["errors"]]
    assert pointers == ["/applicant/uscc", "/operator/uscc", "/industry"]
    assert [e["rule"] for e in problem.members["errors"]][-1] == "CPIN-REG-009"


@pytest.mark.parametrize("industry", ["I38", "C99", "U01", "C00"])
def test_industry_outside_gbt_4754_2017_is_invalid_request(industry: str) -> None:
    application = example("industry")
    application["industry"] = industry
    problem = input_problem(application, SPEC)
    assert problem is not None
    assert problem.slug == "invalid-request"
    assert problem.members["errors"][0]["pointer"] == "/industry"


@pytest.mark.parametrize(
    ("parent", "slug"),
    [("R4400001F", "check-character-mismatch"), ("R6600001Z", "malformed-identifier")],
)
def test_parent_node_code_is_judged_as_an_identifier(parent: str, slug: str) -> None:
    application = example("industry")
    application["parentNodeCode"] = parent
    problem = input_problem(application, SPEC)
    assert problem is not None
    assert problem.slug == slug
    assert problem.members["errors"][0]["pointer"] == "/parentNodeCode"


# --- NodeCode issuance ------------------------------------------------------------------------


def test_prefix_follows_the_role_rules() -> None:
    assert node_code_prefix(example("regional"), SPEC) == "R44000"
    assert node_code_prefix(example("industry"), SPEC) == "I44C38"


@pytest.mark.parametrize(
    ("prefix", "seq", "code"),
    [("R44000", 1, "R4400001E"), ("I44C38", 1, "I44C3801D"), ("R65000", 2, "R6500002P")],
)
def test_node_code_carries_its_mod_37_36_check_character(prefix: str, seq: int, code: str) -> None:
    assert node_code(prefix, seq) == code


@pytest.mark.parametrize(
    ("allocated", "expected"),
    [
        ([], 1),
        (["01", "02"], 3),
        (["02"], 1),
        (["01", "03"], 2),
        ([f"{n:02d}" for n in range(1, 100)], None),
    ],
)
def test_lowest_never_allocated_seq(allocated: list[str], expected: int | None) -> None:
    assert lowest_free_seq(allocated) == expected


@pytest.mark.parametrize("role", ["regional", "industry"])
def test_node_record_is_valid_against_the_node_schema(role: str) -> None:
    application = example(role)
    parent = application.get("parentNodeCode", "N0000001U")
    code = node_code(node_code_prefix(application, SPEC), 1)
    record = node_record(application, code, parent, "2026-03-01T00:00:00.000Z")
    validator("schemas/node.json").validate(record)
    assert record["status"] == "active"
    operator = application.get("operator", application["applicant"])
    assert record["operator"] == {"legalName": operator["legalName"], "uscc": operator["uscc"]}
