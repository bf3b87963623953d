from __future__ import annotations

import json
from pathlib import Path

import pytest

from spec import ID_BASE, Spec, SpecFileError


def test_uri_mirrors_the_folder(shipped: Spec) -> None:
    assert shipped.uri("schemas/resource.json") == f"{ID_BASE}schemas/resource.json"
    assert shipped.relative(f"{ID_BASE}codelists/unit.json") == "codelists/unit.json"
    assert shipped.relative("https://elsewhere.example/x.json") is None


def test_missing_file_names_the_file(spec_copy: Path) -> None:
    (spec_copy / "profiles.yaml").unlink()
    with pytest.raises(SpecFileError) as raised:
        Spec(spec_copy).load("profiles.yaml")
    assert raised.value.file == "profiles.yaml"


def test_malformed_yaml_names_the_line(spec_copy: Path) -> None:
    (spec_copy / "profiles.yaml").write_text("roles:\n  - [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecFileError, match=r"profiles.yaml: invalid YAML at line \d"):
        Spec(spec_copy).load("profiles.yaml")


def test_malformed_json_names_the_line(spec_copy: Path) -> None:
    (spec_copy / "codelists" / "unit.json").write_text('{\n  "oneOf": [,]\n}', encoding="utf-8")
    with pytest.raises(SpecFileError, match=r"invalid JSON at line 2"):
        Spec(spec_copy).load("codelists/unit.json")


def test_digest_names_the_exact_content(spec_copy: Path) -> None:
    before = Spec(spec_copy).digest()
    assert before == Spec(spec_copy).digest()
    path = spec_copy / "codelists" / "precision.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["description"] += " "
    path.write_text(json.dumps(document), encoding="utf-8")
    assert Spec(spec_copy).digest() != before


def test_registry_resolves_every_schema_by_id(shipped: Spec) -> None:
    registry = shipped.registry()
    for name in shipped.schema_files():
        assert registry.contents(shipped.uri(name)) == shipped.load(name)


def test_operations_yield_every_method(shipped: Spec) -> None:
    operations = {op["operationId"] for _, _, op in shipped.operations()}
    assert {"resolveIdentifier", "registerIdentifier", "getServiceInfo"} <= operations
