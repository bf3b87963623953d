"""The rules as data: requirement catalogue, role profiles, certification rule, examples."""

from __future__ import annotations

from collections import Counter
from typing import Any

from referencing import Registry

from spec import Spec

from ._findings import Findings
from ._schemas import instance_errors

CATALOGUE = "requirements.yaml"

# Each YAML/JSON document of the spec and the schema it must satisfy.
_DOCUMENTS = {
    CATALOGUE: "schemas/requirement-catalogue.json",
    "profiles.yaml": "schemas/profiles.json",
    "certification.yaml": "schemas/certification.json",
}
_EXAMPLE_SCHEMAS = {"ics-": "schemas/ics.json", "report-": "schemas/report.json"}


def _conforms(spec: Spec, file: str, schema: str, registry: Registry[Any], found: Findings) -> bool:
    errors = instance_errors(registry, spec.uri(schema), spec.load(file))
    for pointer, message in errors:
        found.add(file, pointer, f"does not match {schema}: {message}")
    return not errors


def check_documents(spec: Spec, found: Findings, registry: Registry[Any]) -> None:
    for file, schema in _DOCUMENTS.items():
        if _conforms(spec, file, schema, registry, found) and file == CATALOGUE:
            _check_catalogue(spec, found)
    examples = spec.files("examples", "")
    for file in examples:
        name = file.removeprefix("examples/")
        schemas = [s for prefix, s in _EXAMPLE_SCHEMAS.items() if name.startswith(prefix)]
        if not schemas:
            found.add(file, "", f"examples are named {'*, '.join(_EXAMPLE_SCHEMAS)}*")
        for schema in schemas:
            _conforms(spec, file, schema, registry, found)
    found.facts["examples"] = len(examples)


def _check_catalogue(spec: Spec, found: Findings) -> None:
    tokens = {e["const"]: e["x-token"] for e in spec.codelist("conformance-class")}
    requirements = spec.requirements
    counts = Counter(r["id"] for r in requirements)
    for index, requirement in enumerate(requirements):
        where = ("requirements", index)
        if counts[requirement["id"]] > 1:
            found.add(CATALOGUE, (*where, "id"), f"{requirement['id']} is not unique")
        token = tokens.get(requirement["class"])
        if token and not requirement["id"].startswith(f"CPIN-{token}-"):
            found.add(CATALOGUE, (*where, "id"), f"class {requirement['class']} uses CPIN-{token}-")
        for field in ("title", "text"):
            for language in ("zh", "en"):
                if not str(requirement[field].get(language, "")).strip():
                    found.add(CATALOGUE, (*where, field, language), "must not be empty")
    per_class = Counter((r["class"], r["level"]) for r in requirements)
    found.facts["requirements"] = {
        cls: {lvl: per_class[(cls, lvl)] for lvl in spec.codes("requirement-level")}
        for cls in spec.codes("conformance-class")
    }
    found.facts["requirements_by_method"] = dict(Counter(r["test"]["method"] for r in requirements))
