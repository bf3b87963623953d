"""reference_impl/ids.py: check characters, validation order and minting, against every vector."""

from __future__ import annotations

from typing import Any

import pytest

import spec
from reference_impl.ids import (
    IdentifierRules,
    encode_serial,
    mint_resource_id,
    mod37_36,
    uscc_check,
)

SPEC = spec.default()
VECTORS: dict[str, Any] = SPEC.vectors
RULES = IdentifierRules.from_spec(SPEC)
JUDGES = {"node_codes": RULES.node_code_flaw, "resource_ids": RULES.resource_id_flaw}
KEYS = {"node_codes": "code", "resource_ids": "id", "uscc": "code"}


def _vectors(group: str, validity: str) -> list[Any]:
    return [pytest.param(v, id=repr(v[KEYS[group]])) for v in VECTORS[group][validity]]


@pytest.mark.parametrize("vector", VECTORS["check_character"], ids=lambda v: v["data"])
def test_check_character_vectors(vector: dict[str, str]) -> None:
    compute = mod37_36 if vector["alg"] == "ISO/IEC 7064 MOD 37,36" else uscc_check
    assert compute(vector["data"]) == vector["check"]


def test_every_check_character_vector_has_a_known_algorithm() -> None:
    algorithms = {v["alg"] for v in VECTORS["check_character"]}
    assert algorithms == {"ISO/IEC 7064 MOD 37,36", "GB 32100-2015"}


@pytest.mark.parametrize("group", ["node_codes", "resource_ids"])
def test_valid_identifiers_pass(group: str) -> None:
    for vector in VECTORS[group]["valid"]:
        assert JUDGES[group](vector[KEYS[group]]) is None, vector


@pytest.mark.parametrize("vector", _vectors("node_codes", "invalid"))
def test_invalid_node_codes_fail_with_their_problem(vector: dict[str, str]) -> None:
    flaw = RULES.node_code_flaw(vector["code"])
    assert flaw is not None
    assert flaw[0] == vector.get("problem", flaw[0])
    assert flaw[1]


@pytest.mark.parametrize("vector", _vectors("resource_ids", "invalid"))
def test_invalid_resource_ids_fail_with_their_problem(vector: dict[str, str]) -> None:
    flaw = RULES.resource_id_flaw(vector["id"])
    assert flaw is not None
    assert flaw[0] == vector.get("problem", flaw[0])
    assert flaw[1]


def test_shared_vectors_without_problem_get_the_section_6_answer() -> None:
    """The shared vectors say only `why`; §6 decides which problem each one is."""
    expected = {
        "R4400001F": "check-character-mismatch",
        "X4400001W": "malformed-identifier",
        "R4400000G": "malformed-identifier",
        "R4400001E-XYZ-00000123B": "malformed-identifier",
        "R4400001F-GPU-00000123J": "check-character-mismatch",
        "R4400001E-GPU-00000123A": "check-character-mismatch",
        "R4400001E-GPU-00000123*": "malformed-identifier",
    }
    for text, problem in expected.items():
        judge = RULES.resource_id_flaw if "-" in text else RULES.node_code_flaw
        flaw = judge(text)
        assert flaw is not None and flaw[0] == problem, text


def test_valid_usccs_pass() -> None:
    for vector in VECTORS["uscc"]["valid"]:
        assert RULES.uscc_flaw(vector["code"]) is None, vector


@pytest.mark.parametrize("vector", _vectors("uscc", "invalid"))
def test_invalid_usccs_fail_as_invalid_request(vector: dict[str, str]) -> None:
    flaw = RULES.uscc_flaw(vector["code"])
    assert flaw is not None
    assert flaw[0] == "invalid-request"


def test_uscc_detail_names_expected_and_found_check_character() -> None:
    flaw = RULES.uscc_flaw("91350100M000100Y44")
    assert flaw == ("invalid-request", "check character mismatch: expected 3, found 4")


def test_worked_examples_of_identification_md() -> None:
    assert mod37_36("R4400001") == "E"  # §5.4
    assert mod37_36("R4400001EGPU00000123") == "K"  # §5.5
    assert mod37_36("00000123") == "C"  # §5.5: over the serial alone, wrong
    assert mod37_36("R4400001GPU00000123") == "I"  # §5.5: without the NodeCode check, wrong
    assert uscc_check("91350100M000100Y4") == "3"  # §7


def test_mod37_36_never_yields_star_where_mod37_2_would() -> None:
    assert mod37_36("R1100001") == "8"  # §5.6: MOD 37-2 gives '*'


def test_check_character_refuses_characters_without_a_value() -> None:
    for data in ("r4400001", "R44-0001", "R4400001*"):
        with pytest.raises(ValueError, match="MOD 37,36"):
            mod37_36(data)
    with pytest.raises(ValueError, match="17 characters"):
        uscc_check("91350100M000100Y")


def test_every_single_substitution_is_detected() -> None:
    code = "R4400001E"
    for position in range(8):
        for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            if char != code[position]:
                changed = code[:position] + char + code[position + 1 : 8]
                assert mod37_36(changed) != "E", changed


def test_validation_order_grammar_before_code_lists_before_check() -> None:
    # 99 is no province AND the check character is wrong: step 2 answers first.
    assert RULES.node_code_flaw("R99000010") == (
        "malformed-identifier",
        "R99000010: 99 is not a code of the province code list.",
    )
    # a valid embedded NodeCode with a bad check and an unknown ResType: step 2 first.
    flaw = RULES.resource_id_flaw("R4400001F-XYZ-00000123B")
    assert flaw is not None and flaw[0] == "malformed-identifier"
    # both check characters wrong: the embedded NodeCode's (step 4) is named.
    flaw = RULES.resource_id_flaw("R4400001F-GPU-00000123A")
    assert flaw is not None and flaw[0] == "check-character-mismatch"
    assert "embedded NodeCode" in flaw[1]


def test_details_are_one_printable_sentence_even_for_hostile_input() -> None:
    flaw = RULES.resource_id_flaw("R4400001E-GPU-00000123K\n")
    assert flaw is not None and "\n" not in flaw[1] and "white space" in flaw[1]
    flaw = RULES.node_code_flaw("")
    assert flaw is not None and flaw[1].startswith("''")


def test_rules_come_from_the_spec() -> None:
    assert RULES.resource_types == frozenset(SPEC.codes("resource-type"))
    assert RULES.type_rules["R"] == {"province": "mainland", "industry": "none"}
    assert RULES.division_section["38"] == "C"
    assert (
        RULES.node_code_pattern.pattern
        == (SPEC.load("schemas/identifiers.json")["$defs"]["NodeCode"]["pattern"])
    )


def test_serial_is_base_36_zero_padded() -> None:
    assert encode_serial(0) == "00000000"
    assert encode_serial(1) == "00000001"
    assert encode_serial(35) == "0000000Z"
    assert encode_serial(36) == "00000010"
    assert encode_serial(36**8 - 1) == "ZZZZZZZZ"
    for bad in (-1, 36**8):
        with pytest.raises(ValueError, match="does not fit"):
            encode_serial(bad)


def test_serials_are_distinct_and_ordered() -> None:
    serials = [encode_serial(n) for n in range(1, 5000)]
    assert len(set(serials)) == len(serials)
    assert serials == sorted(serials)


@pytest.mark.parametrize("node_code", ["R4400001E", "I44C3801D", "R11000018", "I65A0101U"])
@pytest.mark.parametrize("res_type", SPEC.codes("resource-type"))
def test_minted_identifiers_are_valid(node_code: str, res_type: str) -> None:
    for number in (1, 123, 36**4, 36**8 - 1):
        identifier = mint_resource_id(node_code, res_type, number)
        assert RULES.resource_id_flaw(identifier) is None, identifier
        assert identifier[:9] == node_code and identifier[10:13] == res_type


def test_mint_reproduces_the_vectors() -> None:
    assert mint_resource_id("R4400001E", "GPU", int("123", 36)) == "R4400001E-GPU-00000123K"
    assert mint_resource_id("I44C3801D", "NPU", 1) == "I44C3801D-NPU-00000001H"
    assert mint_resource_id("R11000018", "GPU", 36**8 - 1) == "R11000018-GPU-ZZZZZZZZY"
