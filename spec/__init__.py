"""The CPIN specification's files, located and loaded; nothing here judges them.

The harness and the reference node share nothing but this package, so it holds data access
only: checking logic lives with whoever does the checking (the validator in `cpin`, the
harness in `conformance`, the node in `reference_impl`).

The same files are found from a checkout and from an installed wheel, because they ship inside
this package. A different spec folder (a draft, or one with a planted error in a test) is read
by making a `Spec` over that folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from referencing import Registry, Resource

__all__ = ["ID_BASE", "ROOT", "Spec", "SpecFileError", "default"]

ROOT = Path(__file__).resolve().parent
ID_BASE = "https://cpin.example/spec/v1/"
_DATA_SUFFIXES = (".json", ".yaml", ".yml", ".md")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


class SpecFileError(Exception):
    """A spec file is missing or does not parse; carries the file so callers can say where."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file
        self.message = message


class Spec:
    """One spec folder. Loading is lazy and cached: a broken file fails only what reads it."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root.resolve()
        self._cache: dict[str, Any] = {}

    def load(self, relative: str) -> Any:
        """Parse a JSON or YAML file of the spec; raise SpecFileError if absent or malformed."""
        if relative not in self._cache:
            self._cache[relative] = self._parse(relative)
        return self._cache[relative]

    def _parse(self, relative: str) -> Any:
        path = self.root / relative
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecFileError(relative, f"cannot read ({exc.strerror or exc})") from None
        try:
            if path.suffix == ".json":
                return json.loads(text)
            return yaml.load(text, Loader=_YAML_LOADER)
        except json.JSONDecodeError as exc:
            raise SpecFileError(relative, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise SpecFileError(relative, f"invalid YAML{where}: {exc}") from None

    def uri(self, relative: str) -> str:
        """The `$id` a file of this folder must carry (the folder mirrors the id space)."""
        return ID_BASE + relative

    def relative(self, uri: str) -> str | None:
        """The file a spec `$id` names, or None for a URI outside the spec."""
        return uri.removeprefix(ID_BASE) if uri.startswith(ID_BASE) else None

    def files(self, folder: str, suffix: str = ".json") -> list[str]:
        """Relative paths of a folder's files, sorted, so every run reads them in one order."""
        return sorted(
            p.relative_to(self.root).as_posix() for p in (self.root / folder).glob(f"*{suffix}")
        )

    def schema_files(self) -> list[str]:
        return self.files("schemas") + self.files("codelists")

    @cached_property
    def openapi(self) -> dict[str, Any]:
        document: dict[str, Any] = self.load("openapi.yaml")
        return document

    @property
    def version(self) -> str:
        return str(self.openapi["info"]["version"])

    @property
    def scopes(self) -> frozenset[str]:
        """Every OAuth2 scope the interface defines (its client-credentials flow)."""
        flows = self.openapi["components"]["securitySchemes"]["oauth2"]["flows"]
        return frozenset(flows["clientCredentials"]["scopes"])

    @property
    def requirements(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.load("requirements.yaml")["requirements"]
        return entries

    def requirement(self, requirement_id: str) -> dict[str, Any] | None:
        return next((r for r in self.requirements if r["id"] == requirement_id), None)

    def codelist(self, name: str) -> list[dict[str, Any]]:
        """The entries of a code list: each a dict with `const`, `title`, `x-title-zh`, x-keys."""
        entries: list[dict[str, Any]] = self.load(f"codelists/{name}.json")["oneOf"]
        return entries

    def codes(self, name: str) -> list[str]:
        return [entry["const"] for entry in self.codelist(name)]

    @property
    def profiles(self) -> dict[str, Any]:
        document: dict[str, Any] = self.load("profiles.yaml")
        return document

    @property
    def certification(self) -> dict[str, Any]:
        document: dict[str, Any] = self.load("certification.yaml")
        return document

    @property
    def vectors(self) -> dict[str, Any]:
        document: dict[str, Any] = self.load("vectors/identifiers.json")
        return document

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every (path, METHOD, operation object) of the OpenAPI document."""
        for path, item in self.openapi.get("paths", {}).items():
            for method, operation in item.items():
                if method in {"get", "put", "post", "delete", "patch", "head", "options"}:
                    yield path, method.upper(), operation

    def registry(self) -> Registry[Any]:
        """Every schema and code list, keyed by its `$id`, for `$ref` resolution offline."""
        resources = [
            (self.uri(name), Resource.from_contents(self.load(name)))
            for name in self.schema_files()
        ]
        return Registry().with_resources(resources)

    def digest(self) -> str:
        """sha256 over every data file's path and bytes: names the exact spec a report used."""
        sha = hashlib.sha256()
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and path.suffix in _DATA_SUFFIXES:
                sha.update(path.relative_to(self.root).as_posix().encode() + b"\0")
                sha.update(path.read_bytes() + b"\0")
        return f"sha256:{sha.hexdigest()}"


def default() -> Spec:
    """The spec this installation ships."""
    return _DEFAULT


_DEFAULT = Spec()
