"""The ICS files written for the local federation are what a careful vendor would write: valid,
with every peer, a declared capacity, and a statement for every attestation requirement."""

from __future__ import annotations

from pathlib import Path

from conformance.ics import validated
from cpin.ics_files import ics_documents
from reference_impl.demo import federation
from spec import Spec


def test_each_node_gets_a_valid_ics_with_its_attestations(shipped: Spec, tmp_path: Path) -> None:
    demo = federation(shipped, 8400, tmp_path)
    codes = {key: config.node_code or "R4400001E" for key, config in demo.configs.items()}
    codes.update({"beijing": "R11000018", "guangdong-manufacturing": "I44C3801D"})
    for key, document in ics_documents(demo, codes, shipped, "standard").items():
        ics = validated(document, shipped, key)
        role = ics.role
        wanted = {r["id"] for r in shipped.requirements
                  if r["test"]["method"] == "attestation" and role in r["roles"]}  # fmt: skip
        assert {a["requirement"] for a in document["attestations"]} == wanted, key
        assert len(document["federation"]["peers"]) == len(demo.configs) - 1
        assert document["capacity"]["users"] >= 1
