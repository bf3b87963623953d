"""Identifier test vectors agree with the grammar, the code lists and the check algorithms.

Two independent judges must agree with every vector: the harness's identifier rules (check
characters, code lists) and the syntax patterns of spec/schemas/identifiers.json.
"""

from __future__ import annotations

from typing import Any

from referencing import Registry

from conformance.identifiers import CHECK_ALGORITHMS, IdentifierRules
from spec import Spec

from ._findings import Findings
from ._schemas import instance_errors

FILE = "vectors/identifiers.json"

# vector group -> (key holding the identifier, rule that judges it, identifiers.json $def)
_GROUPS = {
    "node_codes": ("code", "node_code_flaw", "NodeCode"),
    "resource_ids": ("id", "resource_id_flaw", "ResourceId"),
    "uscc": ("code", "uscc_flaw", "Uscc"),
}


def check_vectors(spec: Spec, found: Findings, registry: Registry[Any]) -> None:
    vectors = spec.vectors
    rules = IdentifierRules.from_spec(spec)
    for index, vector in enumerate(vectors.get("check_character", [])):
        algorithm = CHECK_ALGORITHMS.get(vector["alg"])
        if algorithm is None:
            found.add(FILE, ("check_character", index, "alg"), f"unknown algorithm {vector['alg']}")
        elif (expected := algorithm(vector["data"])) != vector["check"]:
            found.add(FILE, ("check_character", index), f"check of {vector['data']} is {expected}")
    total = len(vectors.get("check_character", []))
    for group, (key, rule_name, definition) in _GROUPS.items():
        judge = getattr(rules, rule_name)
        syntax = spec.uri(f"schemas/identifiers.json#/$defs/{definition}")
        for validity in ("valid", "invalid"):
            for index, vector in enumerate(vectors.get(group, {}).get(validity, [])):
                where = (group, validity, index, key)
                flaw = judge(vector[key])
                if validity == "valid" and flaw:
                    found.add(FILE, where, f"{vector[key]} is listed valid but {flaw}")
                if validity == "valid" and instance_errors(registry, syntax, vector[key]):
                    found.add(FILE, where, f"{vector[key]} does not match {definition}'s pattern")
                if validity == "invalid" and not flaw:
                    found.add(FILE, where, f"{vector[key]} is listed invalid but passes every rule")
                expected = vector.get("problem")
                if flaw and expected and flaw.problem != expected:
                    message = f"{vector[key]} is answered {flaw.problem} ({flaw}), not {expected}"
                    found.add(FILE, (group, validity, index, "problem"), message)
                total += 1
    found.facts["vectors"] = total
