"""The node's own judge and mint of CPIN identifiers (spec/identification.md).

Written apart from the harness on purpose: the harness keeps its own copy of these routines,
so that one bug cannot certify itself; both are tested against spec/vectors/identifiers.json.
The algorithms (MOD 37,36, GB 32100-2015) live here; the data they run on (grammar patterns,
code lists, node-type rules) is read from the spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spec import Spec

Flaw = tuple[str, str]
"""(problem-type slug, one-sentence detail) of an identifier that fails validation."""

_MALFORMED = "malformed-identifier"
_MISMATCH = "check-character-mismatch"

# ISO/IEC 7064 MOD 37,36 (identification.md §5.1): the 36 characters, each worth its index.
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALNUM_VALUE = {char: value for value, char in enumerate(_ALNUM)}
# Its step from each running value p to the next, per character, worked out once: the node
# checks every identifier it is asked about.
_MOD37_STEP = {
    char: tuple((2 * ((p + value) % 36 or 36)) % 37 for p in range(37))
    for char, value in _ALNUM_VALUE.items()
}

# GB 32100-2015 (identification.md §7): 31 characters (no I, O, S, V, Z) and 17 weights.
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {char: value for value, char in enumerate(_USCC_CHARS)}
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]

SERIAL_LENGTH = 8
_EMBEDDED_REMEMBERED = 4096  # NodeCodes; a federation has far fewer nodes


def mod37_36(data: str) -> str:
    """The MOD 37,36 check character over `data` (upper-case [0-9A-Z] only; else ValueError)."""
    p = 36
    try:
        for char in data:
            p = _MOD37_STEP[char][p]
    except KeyError as missing:
        raise ValueError(f"{missing.args[0]!r} has no MOD 37,36 value") from None
    return _ALNUM[(37 - p) % 36]


def uscc_check(body: str) -> str:
    """The GB 32100-2015 check character over the 17 characters before it (else ValueError)."""
    if len(body) != 17 or any(char not in _USCC_VALUE for char in body):
        raise ValueError(f"{body!r} is not 17 characters of the USCC set")
    total = sum(
        _USCC_VALUE[char] * weight for char, weight in zip(body, _USCC_WEIGHTS, strict=True)
    )
    return _USCC_CHARS[(31 - total % 31) % 31]


def encode_serial(number: int) -> str:
    """Serial `number` written in base 36 over 0-9A-Z, zero-padded to 8 characters.

    identification.md §4.6 leaves the Serial's meaning to the issuing node; a counter in base
    36 uses all 36 characters (I and O included), so 36**8 - 1 serials fit under one type.
    """
    if not 0 <= number < 36**SERIAL_LENGTH:
        raise ValueError(f"serial number {number} does not fit in {SERIAL_LENGTH} characters")
    digits = ""
    while number:
        number, digit = divmod(number, 36)
        digits = _ALNUM[digit] + digits
    return digits.rjust(SERIAL_LENGTH, "0")


def mint_resource_id(node_code: str, res_type: str, serial_number: int) -> str:
    """The ResourceId NodeCode-ResType-Serial+check for the `serial_number`-th serial."""
    serial = encode_serial(serial_number)
    return f"{node_code}-{res_type}-{serial}{mod37_36(node_code + res_type + serial)}"


@dataclass(frozen=True)
class IdentifierRules:
    """Validation of NodeCodes, ResourceIds and USCCs, in the order of identification.md §6.

    Each `*_flaw` method answers None for a valid string, otherwise the problem type the node
    answers and a detail sentence; it never normalises its input.
    """

    node_code_pattern: re.Pattern[str]
    resource_id_pattern: re.Pattern[str]
    uscc_pattern: re.Pattern[str]
    provinces: frozenset[str]
    sections: frozenset[str]
    division_section: dict[str, str]
    resource_types: frozenset[str]
    type_rules: dict[str, dict[str, str]]
    _embedded: dict[str, tuple[str | None, str | None, str | None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_spec(cls, spec: Spec) -> IdentifierRules:
        defs = spec.load("schemas/identifiers.json")["$defs"]
        return cls(
            node_code_pattern=re.compile(defs["NodeCode"]["pattern"]),
            resource_id_pattern=re.compile(defs["ResourceId"]["pattern"]),
            uscc_pattern=re.compile(defs["Uscc"]["pattern"]),
            provinces=frozenset(spec.codes("province")),
            sections=frozenset(spec.codes("industry-section")),
            division_section={
                e["const"]: e["x-section"] for e in spec.codelist("industry-division")
            },
            resource_types=frozenset(spec.codes("resource-type")),
            type_rules={e["x-node-type"]: e["x-rules"] for e in spec.codelist("node-role")},
        )

    def node_code_flaw(self, code: str) -> Flaw | None:
        if not self.node_code_pattern.fullmatch(code):
            return _MALFORMED, f"{_shown(code)} is not a NodeCode: {_grammar_reason(code, 9)}."
        return self._node_code_fields_flaw(code) or self._check_flaw(code, "NodeCode")

    def resource_id_flaw(self, identifier: str) -> Flaw | None:
        if not self.resource_id_pattern.fullmatch(identifier):
            reason = _grammar_reason(identifier, 23)
            return _MALFORMED, f"{_shown(identifier)} is not a ResourceId: {reason}."
        node_code, res_type = identifier[:9], identifier[10:13]
        codes, node_type, check = self._embedded_verdict(node_code)
        fields = codes
        if fields is None and res_type not in self.resource_types:
            fields = f"{res_type} is not a code of the resource-type code list"
        fields = fields or node_type
        if fields:
            return _MALFORMED, f"{identifier}: {fields}."
        if check is not None:
            return _MISMATCH, f"{identifier}: embedded NodeCode {check}"
        data = node_code + res_type + identifier[14:22]
        return self._check_flaw(data + identifier[22], "ResourceId", shown=identifier)

    def _embedded_verdict(self, code: str) -> tuple[str | None, str | None, str | None]:
        """Steps 2, 3 and 4 on the NodeCode inside a ResourceId, remembered: the identifiers
        a node is asked about carry the NodeCodes of a federation's few nodes."""
        verdict = self._embedded.get(code)
        if verdict is None:
            if len(self._embedded) >= _EMBEDDED_REMEMBERED:
                self._embedded.clear()
            expected = mod37_36(code[:8])
            check = None if code[8] == expected else _mismatch(expected, code[8])
            verdict = (self._node_code_codes_flaw(code), self._node_type_flaw(code), check)
            self._embedded[code] = verdict
        return verdict

    def uscc_flaw(self, code: str) -> Flaw | None:
        """§7: length, character set, digits in positions 3-8, then the check character."""
        if len(code) != 18:
            return "invalid-request", f"a USCC has 18 characters, not {len(code)}"
        if not self.uscc_pattern.fullmatch(code):
            return "invalid-request", (
                "a USCC uses 0-9 and the upper-case letters other than I, O, S, V and Z,"
                " with digits in positions 3 to 8"
            )
        expected = uscc_check(code[:17])
        if code[17] != expected:
            return "invalid-request", (
                f"check character mismatch: expected {expected}, found {code[17]}"
            )
        return None

    def _node_code_fields_flaw(self, code: str) -> Flaw | None:
        reason = self._node_code_codes_flaw(code) or self._node_type_flaw(code)
        return (_MALFORMED, f"{code}: {reason}.") if reason else None

    def _node_code_codes_flaw(self, code: str) -> str | None:
        """Step 2: Province, Section and Division in their code lists, Division in Section."""
        province, industry = code[1:3], code[3:6]
        if province not in self.provinces:
            return f"{province} is not a code of the province code list"
        if industry == "000":
            return None
        section, division = industry[0], industry[1:]
        if section not in self.sections:
            return f"{section} is not a GB/T 4754-2017 section"
        if division not in self.division_section:
            return f"{division} is not a GB/T 4754-2017 division"
        if self.division_section[division] != section:
            return (
                f"division {division} belongs to section {self.division_section[division]},"
                f" not {section}"
            )
        return None

    def _node_type_flaw(self, code: str) -> str | None:
        """Step 3: the node-type rules (node-role.json x-rules)."""
        rules = self.type_rules[code[0]]
        province, industry = code[1:3], code[3:6]
        national = province == "00"
        if national != (rules["province"] == "national"):
            where = "province 00" if national else f"province {province}"
            return f"a NodeCode of type {code[0]} cannot carry {where}"
        if (industry == "000") != (rules["industry"] == "none"):
            needs = "industry 000" if rules["industry"] == "none" else "a section and division"
            return f"a NodeCode of type {code[0]} carries {needs}, not {industry}"
        return None

    @staticmethod
    def _check_flaw(text: str, what: str, *, shown: str | None = None) -> Flaw | None:
        """Steps 4 and 5: the last character of `text` is MOD 37,36 over the ones before it."""
        expected = mod37_36(text[:-1])
        if text[-1] == expected:
            return None
        return _MISMATCH, f"{shown or text}: {what} {_mismatch(expected, text[-1])}"


def _mismatch(expected: str, found: str) -> str:
    return f"check character mismatch: expected {expected}, found {found}."


def _grammar_reason(text: str, length: int) -> str:
    """Why a string fails step 1, in words a person who mistyped it can act on."""
    if text != text.strip():
        return "white space is not allowed"
    if any(char.islower() for char in text):
        return "lower-case letters are not allowed (canonical form is upper case)"
    if not text.isascii():
        return "only ASCII characters are allowed"
    if len(text) != length:
        return f"it has {len(text)} characters, not {length}"
    return "it does not match the grammar of identification.md §3"


def _shown(text: str) -> str:
    """A received string quoted safely for a detail message (control characters escaped)."""
    return repr(text) if not text.isprintable() or text != text.strip() or not text else text
