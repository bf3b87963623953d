"""The national node's application rules and NodeCode issuance (node-registry class).

Pure functions over an application (schemas/node-application.json#/$defs/NodeApplicationInput)
and a snapshot of the registry. The handler takes the snapshot and decides inside one write
transaction, so two concurrent applications can never both see a free province or Seq
(CPIN-REG-006, CPIN-REG-013). Code lists, node-type rules and statuses are read from the spec;
only the capital threshold, which the spec states in requirement text alone, is a constant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from reference_impl.ids import IdentifierRules, mod37_36
from reference_impl.problems import Problem
from spec import Spec

# CPIN-REG-002: the registered capital threshold, in yuan. The spec states it only in the
# requirement text (and the MIIT notice it cites), so it lives here once, named.
MIN_REGISTERED_CAPITAL_CNY = 50_000_000

# identification.md §3 and §4.4: Seq is "01".."99"; the Industry field of a node without one.
SEQ_VALUES = range(1, 100)
NO_INDUSTRY = "000"

_PARTIES = {
    "applicant": {"zh": "建设主体", "en": "applicant (builder)"},
    "operator": {"zh": "运营主体", "en": "operator"},
}

Violation = dict[str, Any]
"""problem.json#/$defs/Violation: {"rule": requirement id, "message": {"zh", "en"}}."""


@dataclass(frozen=True)
class NodeView:
    """What the rules need to know of a registered node."""

    node_code: str
    role: str
    status: str
    province: str | None


@dataclass(frozen=True)
class Snapshot:
    """The registry as the rules see it, for one application, read inside its transaction."""

    province_holders: tuple[NodeView, ...]
    """Regional nodes of the application's province in a status that holds it (REG-006)."""
    parent: NodeView | None
    """The registered node that `parentNodeCode` names; None if absent or unregistered."""
    free_seq: int | None
    """Lowest Seq never allocated for the NodeCode's type, province and industry; None if none."""


@cache
def identifier_rules(spec: Spec) -> IdentifierRules:
    return IdentifierRules.from_spec(spec)


@cache
def holding_statuses(spec: Spec) -> frozenset[str]:
    """Node statuses that keep a province occupied: the non-terminal ones (active, suspended)."""
    return frozenset(e["const"] for e in spec.codelist("node-status") if not e["x-terminal"])


def input_problem(application: dict[str, Any], spec: Spec) -> Problem | None:
    """The 400 a schema-valid application still earns, before anything is recorded.

    The schema checks syntax only. Still to check: the NodeCode it names (identification.md §6:
    its own problem types, wherever an identifier appears), the USCC check characters
    (CPIN-REG-008) and the industry's code-list membership (CPIN-REG-009). Keys that are not
    public (CPIN-REG-021), an unlisted province and the national role (CPIN-REG-023) already
    fail the schema.
    """
    rules = identifier_rules(spec)
    parent = application.get("parentNodeCode")
    if parent is not None and (flaw := rules.node_code_flaw(parent)):
        return Problem(
            flaw[0], flaw[1], errors=[{"pointer": "/parentNodeCode", "message": flaw[1]}]
        )
    errors = []
    for party in _PARTIES:
        uscc = application.get(party, {}).get("uscc")
        if uscc is not None and (flaw := rules.uscc_flaw(uscc)):
            pointer = f"/{party}/uscc"
            errors.append({"pointer": pointer, "message": flaw[1], "rule": "CPIN-REG-008"})
    industry = application.get("industry")
    if industry is not None and (reason := _industry_flaw(industry, rules)):
        errors.append({"pointer": "/industry", "message": reason, "rule": "CPIN-REG-009"})
    if not errors:
        return None
    return Problem("invalid-request", f"The application has {len(errors)} error(s).", errors=errors)


def _industry_flaw(industry: str, rules: IdentifierRules) -> str | None:
    section, division = industry[0], industry[1:]
    if section not in rules.sections:
        return f"{section} is not a GB/T 4754-2017 section"
    owner = rules.division_section.get(division)
    if owner is None:
        return f"{division} is not a GB/T 4754-2017 division"
    if owner != section:
        return f"division {division} belongs to section {owner}, not {section}"
    return None


def node_code_prefix(application: dict[str, Any], spec: Spec) -> str:
    """NodeType, Province and Industry of the NodeCode the application would receive."""
    role = next(e for e in spec.codelist("node-role") if e["const"] == application["role"])
    industry = NO_INDUSTRY if role["x-rules"]["industry"] == "none" else application["industry"]
    return f"{role['x-node-type']}{application['province']}{industry}"


def lowest_free_seq(allocated: Iterable[str]) -> int | None:
    """The lowest Seq not among `allocated` (two-digit strings); None when all 99 are taken."""
    taken = {int(seq) for seq in allocated}
    return next((seq for seq in SEQ_VALUES if seq not in taken), None)


def node_code(prefix: str, seq: int) -> str:
    """The NodeCode `prefix` + Seq + its MOD 37,36 check character (identification.md §5)."""
    data = f"{prefix}{seq:02d}"
    return data + mod37_36(data)


def violations(application: dict[str, Any], snapshot: Snapshot, spec: Spec) -> list[Violation]:
    """Every unified rule the application fails, in requirement order (CPIN-REG-010)."""
    found: list[Violation] = []
    capital = application["applicant"]["registeredCapitalCny"]
    if capital < MIN_REGISTERED_CAPITAL_CNY:
        found.append(
            _violation(
                "CPIN-REG-002",
                f"建设主体申报的注册资本为人民币{capital}元，低于人民币"
                f"{MIN_REGISTERED_CAPITAL_CNY // 10_000}万元。",
                f"The applicant's declared registered capital, RMB {capital:,}, is below"
                f" RMB {MIN_REGISTERED_CAPITAL_CNY:,}.",
            )
        )
    parties = [p for p in _PARTIES if p in application]
    unlicensed = [
        p
        for p in parties
        if not application[p]["publicInstitution"] and "telecomLicence" not in application[p]
    ]
    if unlicensed:
        zh, en = _named(unlicensed)
        found.append(
            _violation(
                "CPIN-REG-003",
                f"{zh}既非事业单位，也未申报电信业务经营许可证。",
                f"The {en} is not a public institution and declares no telecom business licence.",
            )
        )
    dishonest = [p for p in parties if application[p]["dishonestyRecordLast3Years"]]
    if dishonest:
        zh, en = _named(dishonest)
        found.append(
            _violation(
                "CPIN-REG-004",
                f"{zh}申报申请前三年内有重大失信记录。",
                f"The {en} declares a major dishonesty record within the three years before"
                " the application.",
            )
        )
    if application["role"] == "regional" and snapshot.province_holders:
        holder = snapshot.province_holders[0]
        zh, en = status_label(spec, holder.status)
        found.append(
            _violation(
                "CPIN-REG-006",
                f"省级行政区{application['province']}已有状态为“{zh}”的区域节点"
                f"{holder.node_code}。",
                f"Province {application['province']} already has regional node"
                f" {holder.node_code}, status {en}.",
            )
        )
    if application["role"] == "industry" and (parent := _parent_flaw(application, snapshot, spec)):
        found.append(_violation("CPIN-REG-007", *parent))
    if snapshot.free_seq is None:
        prefix = node_code_prefix(application, spec)
        found.append(
            _violation(
                "CPIN-REG-014",
                f"节点类型、省级行政区和行业组合{prefix}的顺序号01至99均已签发。",
                f"Every Seq from 01 to 99 has been issued for NodeType, Province and Industry"
                f" {prefix}.",
            )
        )
    return found


def _parent_flaw(
    application: dict[str, Any], snapshot: Snapshot, spec: Spec
) -> tuple[str, str] | None:
    """Why the named parent is not the active regional node of the application's province.

    CPIN-REG-007 asks for an active regional parent; identification.md §4.3 adds that an
    industry node's province is its regional node's province, so a mismatch fails it too.
    """
    code = application.get("parentNodeCode")
    parent = snapshot.parent
    if code is None:
        return "行业节点申请未给出上级区域节点。", "An industry node application names no parent."
    if parent is None:
        return f"上级节点{code}未在国家节点登记。", f"Parent {code} is not a registered node."
    if parent.role != "regional":
        return f"上级节点{code}不是区域节点。", f"Parent {code} is not a regional node."
    if parent.status != "active":
        zh, en = status_label(spec, parent.status)
        return (
            f"上级区域节点{code}当前状态为“{zh}”，而非“正常”。",
            f"Parent regional node {code} is {en}, not active.",
        )
    if parent.province != application["province"]:
        return (
            f"上级区域节点{code}属于省级行政区{parent.province}，"
            f"与所申请的省级行政区{application['province']}不一致。",
            f"Parent regional node {code} serves province {parent.province}, not the"
            f" province applied for, {application['province']}.",
        )
    return None


def status_label(spec: Spec, status: str) -> tuple[str, str]:
    """Chinese and English name of a node status, from the node-status code list."""
    entry = next(e for e in spec.codelist("node-status") if e["const"] == status)
    return entry["x-title-zh"], entry["title"].lower()


def _named(parties: list[str]) -> tuple[str, str]:
    return (
        "和".join(_PARTIES[p]["zh"] for p in parties),
        " and the ".join(_PARTIES[p]["en"] for p in parties),
    )


def _violation(rule: str, zh: str, en: str) -> Violation:
    return {"rule": rule, "message": {"zh": zh, "en": en}}


def node_record(application: dict[str, Any], code: str, parent: str, now: str) -> dict[str, Any]:
    """The node record (schemas/node.json) an approved application creates, status active."""
    operator = application.get("operator", application["applicant"])
    record: dict[str, Any] = {
        "nodeCode": code,
        "role": application["role"],
        "status": "active",
        "name": application["name"],
        "province": application["province"],
    }
    if "industry" in application:
        record["industry"] = application["industry"]
    record |= {
        "parentNodeCode": parent,
        "endpoint": application["endpoint"],
        "jwks": application["jwks"],
        "operator": {"legalName": operator["legalName"], "uscc": operator["uscc"]},
        "createdAt": now,
        "updatedAt": now,
    }
    return record
