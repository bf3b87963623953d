"""Code lists: unique codes, both languages, and the cross-references between lists."""

from __future__ import annotations

from collections import Counter

from spec import Spec

from ._findings import Findings


def check_codelists(spec: Spec, found: Findings) -> None:
    for file in spec.files("codelists"):
        _check_entries(spec, file, found)
    _check_divisions(spec, found)
    _check_transitions(spec, "task-state", found)
    _check_transitions(spec, "node-status", found)


def _check_entries(spec: Spec, file: str, found: Findings) -> None:
    document = spec.load(file)
    entries = document.get("oneOf") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        found.add(file, "/oneOf", "a code list is a non-empty oneOf of const entries")
        return
    if not document.get("x-source"):
        found.add(file, "/x-source", "a code list names its source")
    counts = Counter(e.get("const") for e in entries if isinstance(e, dict))
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "const" not in entry:
            found.add(file, ("oneOf", index), "entry has no const")
            continue
        if counts[entry["const"]] > 1:
            found.add(file, ("oneOf", index), f"code {entry['const']!r} appears twice")
        for label in ("title", "x-title-zh"):
            if not str(entry.get(label, "")).strip():
                found.add(file, ("oneOf", index, label), "label missing")


def _check_divisions(spec: Spec, found: Findings) -> None:
    """Every GB/T 4754-2017 division sits in a known section; no section is empty; no gaps."""
    file = "codelists/industry-division.json"
    sections = set(spec.codes("industry-section"))
    divisions = spec.codelist("industry-division")
    for index, entry in enumerate(divisions):
        if entry.get("x-section") not in sections:
            found.add(file, ("oneOf", index, "x-section"), "not a section of industry-section")
    for section in sorted(sections - {d.get("x-section") for d in divisions}):
        found.add(file, "/oneOf", f"section {section} has no division")
    numbers = sorted(int(d["const"]) for d in divisions if str(d["const"]).isdigit())
    missing = sorted(set(range(1, (numbers or [0])[-1] + 1)) - set(numbers))
    if missing:
        found.add(file, "/oneOf", f"divisions missing: {', '.join(f'{n:02d}' for n in missing)}")


def _check_transitions(spec: Spec, name: str, found: Findings) -> None:
    file = f"codelists/{name}.json"
    states = set(spec.codes(name))
    for index, entry in enumerate(spec.codelist(name)):
        for target in entry.get("x-transitions", []):
            if target not in states:
                found.add(file, ("oneOf", index, "x-transitions"), f"unknown state {target!r}")
