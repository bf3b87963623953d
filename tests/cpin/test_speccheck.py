"""The validator passes the shipped spec and reports every planted error where it is."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cpin.cli import main
from cpin.speccheck import SpecError, validate
from spec import Spec


def _edit(path: Path, change: Callable[[Any], None]) -> None:
    text = path.read_text(encoding="utf-8")
    is_json = path.suffix == ".json"
    document = json.loads(text) if is_json else yaml.safe_load(text)
    change(document)
    dumped = json.dumps(document, ensure_ascii=False) if is_json else yaml.safe_dump(document)
    path.write_text(dumped, encoding="utf-8")


def _errors(folder: Path) -> list[SpecError]:
    return validate(Spec(folder)).errors


def _first_operation(document: dict[str, Any], operation_id: str) -> dict[str, Any]:
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return operation
    raise LookupError(operation_id)


def test_shipped_spec_is_valid(shipped: Spec) -> None:
    assert validate(shipped).errors == []


def test_cli_prints_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "validate"]) == 0
    out = capsys.readouterr().out
    assert "is valid" in out
    assert "identification" in out


def test_bad_ref_in_a_schema_is_located(spec_copy: Path) -> None:
    _edit(spec_copy / "schemas/resource.json", lambda d: d["$defs"].update(X={"$ref": "gone.json"}))
    errors = _errors(spec_copy)
    assert any(
        e.file == "schemas/resource.json" and e.pointer == "/$defs/X/$ref" for e in errors
    ), errors


def test_bad_ref_in_openapi_is_reported_not_raised(spec_copy: Path) -> None:
    def break_ref(document: dict[str, Any]) -> None:
        body = _first_operation(document, "registerIdentifier")["requestBody"]
        body["content"]["application/json"]["schema"] = {"$ref": "schemas/gone.json"}

    _edit(spec_copy / "openapi.yaml", break_ref)
    errors = _errors(spec_copy)
    assert any(e.file == "openapi.yaml" and "gone.json" in e.message for e in errors), errors


def test_example_violating_its_schema_is_located(spec_copy: Path) -> None:
    def corrupt(document: dict[str, Any]) -> None:
        media = _first_operation(document, "getServiceInfo")["responses"]["200"]["content"]
        examples = media["application/json"]["examples"]
        next(iter(examples.values()))["value"] = {"unexpected": True}

    _edit(spec_copy / "openapi.yaml", corrupt)
    errors = _errors(spec_copy)
    assert any(
        e.file == "openapi.yaml" and "/paths/~1v1~1service-info/get/responses/200" in e.pointer
        for e in errors
    ), errors


def test_schema_example_violating_its_schema_is_located(spec_copy: Path) -> None:
    _edit(spec_copy / "schemas/demand.json", lambda d: d["examples"].append({"nonsense": 1}))
    errors = _errors(spec_copy)
    assert any(e.file == "schemas/demand.json" and "/examples/" in e.pointer for e in errors)


def test_unknown_requirement_id_is_located(spec_copy: Path) -> None:
    _edit(
        spec_copy / "openapi.yaml",
        lambda d: _first_operation(d, "resolveIdentifier")["x-requirements"].insert(
            0, "CPIN-ID-999"
        ),
    )
    errors = _errors(spec_copy)
    assert (
        SpecError(
            "openapi.yaml",
            "/paths/~1v1~1identifiers~1{identifier}/get/x-requirements/0",
            "unknown requirement CPIN-ID-999",
        )
        in errors
    )


def test_wrong_check_character_in_a_vector_is_located(spec_copy: Path) -> None:
    def plant(document: dict[str, Any]) -> None:
        document["node_codes"]["valid"][0]["code"] = "R4400001F"

    _edit(spec_copy / "vectors/identifiers.json", plant)
    errors = _errors(spec_copy)
    assert any(
        e.file == "vectors/identifiers.json"
        and e.pointer == "/node_codes/valid/0/code"
        and "check character is 'E'" in e.message
        for e in errors
    ), errors


def test_invalid_vector_that_passes_is_reported(spec_copy: Path) -> None:
    _edit(
        spec_copy / "vectors/identifiers.json",
        lambda d: d["node_codes"]["invalid"].append({"code": "R4400001E", "why": "planted"}),
    )
    assert any("listed invalid but passes" in e.message for e in _errors(spec_copy))


def test_duplicate_requirement_id(spec_copy: Path) -> None:
    _edit(spec_copy / "requirements.yaml", lambda d: d["requirements"].append(d["requirements"][0]))
    assert any("is not unique" in e.message for e in _errors(spec_copy))


def test_missing_language_is_located(spec_copy: Path) -> None:
    def plant(document: dict[str, Any]) -> None:
        del document["requirements"][1]["title"]["zh"]

    _edit(spec_copy / "requirements.yaml", plant)
    errors = _errors(spec_copy)
    assert any(e.pointer == "/requirements/1/title" and "'zh'" in e.message for e in errors)


def test_blank_translation_is_reported(spec_copy: Path) -> None:
    def plant(document: dict[str, Any]) -> None:
        document["requirements"][2]["text"]["en"] = "   "

    _edit(spec_copy / "requirements.yaml", plant)
    errors = _errors(spec_copy)
    assert SpecError("requirements.yaml", "/requirements/2/text/en", "must not be empty") in errors


def test_code_list_gaps_and_duplicates(spec_copy: Path) -> None:
    def plant(document: dict[str, Any]) -> None:
        entries = document["oneOf"]
        del entries[40]
        entries.append(dict(entries[0]))

    _edit(spec_copy / "codelists/industry-division.json", plant)
    messages = [e.message for e in _errors(spec_copy)]
    assert any(m.startswith("divisions missing") for m in messages), messages
    assert any("appears twice" in m for m in messages), messages


def test_broken_yaml_and_missing_file_are_errors_not_tracebacks(
    spec_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (spec_copy / "openapi.yaml").write_text("openapi: 3.1.0\npaths: [\n", encoding="utf-8")
    (spec_copy / "certification.yaml").unlink()
    assert main(["spec", "validate", "--spec", str(spec_copy)]) == 1
    out = capsys.readouterr().out
    assert "openapi.yaml#: invalid YAML at line" in out
    assert "certification.yaml#: cannot read" in out
    assert "Traceback" not in out


def test_missing_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["spec", "validate", "--spec", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "does not exist" in err
