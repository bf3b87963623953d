"""Identifier syntax and check characters, as the harness judges them.

Follows spec/identification.md. This module is deliberately *not* shared with the reference
node: if both used one routine, a bug in it would certify itself. Both are held to the spec's
test vectors instead. Field positions and check algorithms are code; every set of allowed
values (node types and their rules, provinces, industries, resource types) is read from the
spec's code lists.

Checks run in the order of identification.md §6 and stop at the first flaw, because that
order decides which problem type a node must answer: grammar and code lists first
(`malformed-identifier`), check characters last (`check-character-mismatch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from spec import Spec

__all__ = [
    "CHECK_ALGORITHMS",
    "CHECK_MISMATCH",
    "GB_32100",
    "MALFORMED",
    "MOD37_36",
    "Flaw",
    "IdentifierRules",
    "mod37_36",
    "uscc_check",
]

MOD37_36_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
NODE_CODE_LENGTH = 9
RESOURCE_ID_LENGTH = 23
USCC_LENGTH = 18
NO_INDUSTRY = "000"
NATIONAL_PROVINCE = "00"
MOD37_36 = "ISO/IEC 7064 MOD 37,36"
GB_32100 = "GB 32100-2015"
MALFORMED = "malformed-identifier"
CHECK_MISMATCH = "check-character-mismatch"


@dataclass(frozen=True)
class Flaw:
    """Why an identifier is invalid: the problem type a node must answer, and one sentence."""

    problem: str
    reason: str

    def __str__(self) -> str:
        return self.reason


def mod37_36(data: str) -> str:
    """ISO/IEC 7064 MOD 37,36 (hybrid system) check character over [0-9A-Z] data."""
    product = 36
    for char in data:
        total = (product + MOD37_36_ALPHABET.index(char)) % 36 or 36
        product = (2 * total) % 37
    return MOD37_36_ALPHABET[(37 - product) % 36]


def uscc_check(first17: str) -> str:
    """GB 32100-2015 check character of a Unified Social Credit Code's first 17 characters."""
    weighted = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - weighted % 31) % 31]


CHECK_ALGORITHMS = {MOD37_36: mod37_36, GB_32100: uscc_check}
"""Check-character functions by the `alg` names the spec's vectors use."""


def _malformed(reason: str) -> Flaw:
    return Flaw(MALFORMED, reason)


def _canonical_flaw(text: str, length: int, name: str) -> Flaw | None:
    if len(text) != length:
        return _malformed(f"a {name} has {length} characters, not {len(text)}")
    if text != text.upper():
        return _malformed("not canonical: identifiers are upper case")
    return None


def _check_flaw(data: str, given: str) -> Flaw | None:
    expected = mod37_36(data)
    if given == expected:
        return None
    return Flaw(CHECK_MISMATCH, f"check character is {expected!r}, not {given!r}")


@dataclass(frozen=True)
class IdentifierRules:
    """The code lists an identifier is checked against, read once from a spec."""

    node_type_rules: dict[str, dict[str, str]]
    provinces: frozenset[str]
    division_sections: dict[str, str]
    resource_types: frozenset[str]

    @classmethod
    def from_spec(cls, spec: Spec) -> IdentifierRules:
        return cls(
            node_type_rules={e["x-node-type"]: e["x-rules"] for e in spec.codelist("node-role")},
            provinces=frozenset(spec.codes("province")),
            division_sections={
                e["const"]: e["x-section"] for e in spec.codelist("industry-division")
            },
            resource_types=frozenset(spec.codes("resource-type")),
        )

    def node_code_flaw(self, code: str) -> Flaw | None:
        flaw = _canonical_flaw(code, NODE_CODE_LENGTH, "NodeCode") or self._node_fields_flaw(code)
        return flaw or _check_flaw(code[:8], code[8])

    def resource_id_flaw(self, identifier: str) -> Flaw | None:
        if flaw := _canonical_flaw(identifier, RESOURCE_ID_LENGTH, "ResourceId"):
            return flaw
        if identifier[9] != "-" or identifier[13] != "-":
            return _malformed("a ResourceId is NodeCode-ResType-SerialCheck, separated by '-'")
        node_code, res_type, serial = identifier[:9], identifier[10:13], identifier[14:22]
        if flaw := self._node_fields_flaw(node_code):
            return Flaw(flaw.problem, f"embedded NodeCode: {flaw}")
        if res_type not in self.resource_types:
            return _malformed(f"resource type {res_type!r} is not in the resource-type code list")
        if bad := _outside(serial + identifier[22], MOD37_36_ALPHABET):
            return _malformed(f"character {bad!r} is not in [0-9A-Z]")
        if flaw := _check_flaw(node_code[:8], node_code[8]):
            return Flaw(flaw.problem, f"embedded NodeCode: {flaw}")
        return _check_flaw(node_code + res_type + serial, identifier[22])

    def uscc_flaw(self, code: str) -> Flaw | None:
        if len(code) != USCC_LENGTH:
            return _malformed(f"a USCC has {USCC_LENGTH} characters, not {len(code)}")
        if bad := _outside(code, USCC_ALPHABET):
            return _malformed(f"character {bad!r} is not in the USCC character set")
        expected = uscc_check(code[:17])
        if code[17] == expected:
            return None
        return Flaw(CHECK_MISMATCH, f"check character is {expected!r}, not {code[17]!r}")

    def _node_fields_flaw(self, code: str) -> Flaw | None:
        """Steps 1-3 of identification.md §6 for the nine characters of a NodeCode."""
        if bad := _outside(code, MOD37_36_ALPHABET):
            return _malformed(f"character {bad!r} is not in [0-9A-Z]")
        node_type, province, industry, seq = code[0], code[1:3], code[3:6], code[6:8]
        if node_type not in self.node_type_rules:
            return _malformed(f"node type {node_type!r} is not in the node-role code list")
        if province not in self.provinces:
            return _malformed(f"province {province!r} is not in the province code list")
        if not seq.isdigit() or seq == "00":
            return _malformed(f"sequence {seq!r} is not 01..99")
        reason = self._industry_problem(industry) or _type_rule_problem(
            node_type, self.node_type_rules[node_type], province, industry
        )
        return _malformed(reason) if reason else None

    def _industry_problem(self, industry: str) -> str | None:
        if industry == NO_INDUSTRY:
            return None
        section, division = industry[0], industry[1:]
        if division not in self.division_sections:
            return f"industry {industry!r}: division {division!r} is not in GB/T 4754-2017"
        if self.division_sections[division] != section:
            return f"industry {industry!r}: division {division} is not in section {section}"
        return None


def _outside(text: str, alphabet: str) -> str | None:
    return next((c for c in text if c not in alphabet), None)


def _type_rule_problem(
    node_type: str, rules: dict[str, str], province: str, industry: str
) -> str | None:
    """node-role.json x-rules: which province and industry a node type may carry."""
    if (province == NATIONAL_PROVINCE) != (rules["province"] == "national"):
        wanted = "00" if rules["province"] == "national" else "a mainland province"
        return f"node type {node_type} carries {wanted}, not province {province!r}"
    if (industry == NO_INDUSTRY) != (rules["industry"] == "none"):
        wanted = "000" if rules["industry"] == "none" else "a section and division"
        return f"node type {node_type} carries {wanted}, not industry {industry!r}"
    return None
