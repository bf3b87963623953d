"""Reading and judging report bundles in the project's tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from spec import ID_BASE, Spec, default


def only_bundle(report_dir: Path) -> Path:
    bundles = [p for p in report_dir.iterdir() if (p / "report.json").is_file()]
    assert len(bundles) == 1, f"expected one bundle in {report_dir}, found {bundles}"
    return bundles[0]


def load(bundle: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((bundle / "report.json").read_text(encoding="utf-8"))
    return report


def schema_errors(report: dict[str, Any], spec: Spec | None = None) -> list[str]:
    """report.json against its published schema, as pytest checks its JUnit XML against the XSD."""
    spec = spec or default()
    validator = Draft202012Validator(
        {"$ref": ID_BASE + "schemas/report.json"},
        registry=spec.registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    return [f"{list(e.absolute_path)}: {e.message[:300]}" for e in validator.iter_errors(report)]


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {entry["id"]: entry["verdict"] for entry in report["requirements"]}
