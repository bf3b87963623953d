from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conformance.identifiers import (
    CHECK_MISMATCH,
    GB_32100,
    MALFORMED,
    MOD37_36,
    MOD37_36_ALPHABET,
    Flaw,
    IdentifierRules,
    mod37_36,
    uscc_check,
)
from spec import Spec

SHARED_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "identifiers.json"


@pytest.fixture(scope="module")
def rules(shipped: Spec) -> IdentifierRules:
    return IdentifierRules.from_spec(shipped)


def _cases(vectors: dict[str, Any], group: str, key: str, validity: str) -> list[str]:
    return [v[key] for v in vectors[group][validity]]


@pytest.mark.parametrize(("alg", "check"), [(MOD37_36, mod37_36), (GB_32100, uscc_check)])
def test_check_character_vectors(shipped: Spec, alg: str, check: Callable[[str], str]) -> None:
    vectors = [v for v in shipped.vectors["check_character"] if v["alg"] == alg]
    assert vectors
    for vector in vectors:
        assert check(vector["data"]) == vector["check"], vector


@pytest.mark.parametrize(
    ("group", "key", "judge"),
    [
        ("node_codes", "code", "node_code_flaw"),
        ("resource_ids", "id", "resource_id_flaw"),
        ("uscc", "code", "uscc_flaw"),
    ],
)
def test_vectors_are_judged_as_listed(
    shipped: Spec, rules: IdentifierRules, group: str, key: str, judge: str
) -> None:
    check = getattr(rules, judge)
    for code in _cases(shipped.vectors, group, key, "valid"):
        assert check(code) is None, code
    for vector in shipped.vectors[group]["invalid"]:
        flaw = check(vector[key])
        assert flaw, vector
        assert flaw.problem == vector.get("problem", flaw.problem), (vector, flaw)


def test_spec_vectors_contain_every_shared_vector(shipped: Spec) -> None:
    if not SHARED_VECTORS.exists():
        pytest.skip(f"the shared vectors are not beside this checkout ({SHARED_VECTORS})")
    shared = json.loads(SHARED_VECTORS.read_text(encoding="utf-8"))
    ours = shipped.vectors
    for vector in shared["check_character"]:
        assert any(v["data"] == vector["data"] for v in ours["check_character"]), vector
    for group, key in (("node_codes", "code"), ("resource_ids", "id"), ("uscc", "code")):
        for validity in ("valid", "invalid"):
            assert set(_cases(shared, group, key, validity)) <= set(
                _cases(ours, group, key, validity)
            ), (group, validity)


def test_check_character_is_never_the_mod37_2_star() -> None:
    for first in MOD37_36_ALPHABET:
        assert mod37_36(f"R11{first}0001") in MOD37_36_ALPHABET


def test_every_single_substitution_is_detected(shipped: Spec) -> None:
    """ISO/IEC 7064 promises it; our implementation must keep the promise."""
    for vector in shipped.vectors["node_codes"]["valid"]:
        code = vector["code"]
        for position in range(len(code)):
            for char in MOD37_36_ALPHABET.replace(code[position], ""):
                changed = code[:position] + char + code[position + 1 :]
                assert mod37_36(changed[:8]) != changed[8], changed


def test_uscc_check_follows_gb_32100_weights() -> None:
    assert uscc_check("91350100M000100Y4") == "3"


@pytest.mark.parametrize(
    ("code", "complaint"),
    [
        ("R4400001F", "check character is 'E'"),
        ("r4400001e", "not canonical"),
        ("R440001E", "9 characters"),
        ("X4400001W", "node type 'X'"),
        ("R9900001G", "province '99'"),
        ("R4400000G", "sequence '00'"),
        ("I44Z9901Z", "division '99'"),
    ],
)
def test_node_code_flaws_name_the_part(rules: IdentifierRules, code: str, complaint: str) -> None:
    flaw = rules.node_code_flaw(code)
    assert flaw is not None
    assert complaint in flaw.reason


def test_resource_id_flaw_names_the_embedded_code(rules: IdentifierRules) -> None:
    flaw = rules.resource_id_flaw("R4400001F-GPU-00000123J")
    assert flaw == Flaw(CHECK_MISMATCH, "embedded NodeCode: check character is 'E', not 'F'")


def test_code_lists_outrank_check_characters(rules: IdentifierRules) -> None:
    """identification.md §6: a bad resource type is malformed even if the check is wrong too."""
    flaw = rules.resource_id_flaw("R4400001F-XYZ-00000123B")
    assert flaw is not None
    assert flaw.problem == MALFORMED


def test_problem_types_exist_in_the_code_list(shipped: Spec) -> None:
    assert {MALFORMED, CHECK_MISMATCH} <= set(shipped.codes("problem-type"))
