"""The implementation conformance statement (ICS): what the vendor claims, and how to reach it.

An ICS comes from a file (YAML or JSON) or is built from command-line flags; either way it is
validated against spec/schemas/ics.json and against the role's profile before any test runs,
and every failure is an `IcsError` (a usage error: exit 2, one line). Secrets are read from the
environment variables the ICS names, only when a client is built, and kept in `Secret`, whose
repr never shows them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from spec import Spec

__all__ = ["ClientCredentials", "Ics", "IcsError", "Secret", "ics_from_flags", "load_ics"]


class IcsError(Exception):
    """The ICS or the flags are unusable: a usage error, reported before any test runs."""


class Secret(str):
    """A secret string that never prints itself (repr, f-strings in logs, tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('[REDACTED]')"


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: Secret
    token_url: str | None = None
    scopes: frozenset[str] | None = None  # the grant of a limited client; None: unrestricted


@dataclass(frozen=True)
class Ics:
    """A validated ICS document (`document` is exactly what the vendor wrote, secret-free)."""

    document: dict[str, Any]
    source: str

    @property
    def role(self) -> str:
        return str(self.document["node"]["role"])

    @property
    def base_url(self) -> str:
        return str(self.document["node"]["baseUrl"])

    @property
    def node_code(self) -> str:
        return str(self.document["node"]["nodeCode"])

    @property
    def options(self) -> list[str]:
        return list(self.document.get("options", []))

    @property
    def budget(self) -> str:
        return str(self.document.get("budget", "standard"))

    @property
    def federation(self) -> dict[str, Any]:
        return dict(self.document.get("federation", {}))

    def attestation(self, requirement_id: str) -> dict[str, Any] | None:
        entries = self.document.get("attestations", [])
        return next((a for a in entries if a["requirement"] == requirement_id), None)

    def credentials(self) -> ClientCredentials:
        return client_credentials(self.document["credentials"], "credentials")

    def limited_credentials(self) -> ClientCredentials | None:
        limited = self.document.get("limitedClient")
        return client_credentials(limited, "limitedClient") if limited else None

    def upstream_credentials(self) -> ClientCredentials | None:
        client = self.federation.get("upstreamCredentials")
        return client_credentials(client, "federation.upstreamCredentials") if client else None

    def secrets(self) -> list[str]:
        """Every secret value this ICS points at that is set now: what redaction must remove."""
        values = []
        for reference in _env_references(self.document):
            value = os.environ.get(reference)
            if value:
                values.append(value)
        return values


def client_credentials(client: dict[str, Any], where: str) -> ClientCredentials:
    client_id = _value(client["clientId"], f"{where}.clientId")
    secret = Secret(_value(client["clientSecret"], f"{where}.clientSecret"))
    scopes = frozenset(client["scopes"]) if "scopes" in client else None
    return ClientCredentials(client_id, secret, client.get("tokenUrl"), scopes)


def _value(given: str | dict[str, str], where: str) -> str:
    if isinstance(given, str):
        return given
    name = given["env"]
    value = os.environ.get(name)
    if not value:
        raise IcsError(f"{where}: environment variable {name} is not set")
    return value


def _env_references(value: Any) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return [value["env"]]
        return [name for item in value.values() for name in _env_references(item)]
    if isinstance(value, list):
        return [name for item in value for name in _env_references(item)]
    return []


def load_ics(path: Path, spec: Spec) -> Ics:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IcsError(f"cannot read ICS {path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise IcsError(f"ICS {path} does not parse: {str(exc).splitlines()[0]}") from None
    return validated(document, spec, str(path))


def ics_from_flags(
    spec: Spec,
    *,
    target: str,
    role: str,
    node_code: str,
    client_id: str,
    secret_env: str,
    options: list[str] | None = None,
    budget: str | None = None,
) -> Ics:
    """The ICS the flags describe (`cpin certify --target ... --role ...`)."""
    document: dict[str, Any] = {
        "ics": "1.0",
        "node": {"role": role, "baseUrl": target, "nodeCode": node_code},
        "vendor": {"name": "(not stated)", "product": "(not stated)", "version": "(not stated)"},
        "credentials": {"clientId": client_id, "clientSecret": {"env": secret_env}},
        "options": options or [],
    }
    if budget:
        document["budget"] = budget
    return validated(document, spec, "command-line flags")


def validated(document: Any, spec: Spec, source: str) -> Ics:
    """Schema first, then what the schema cannot say: options offered to the role,
    attestations naming catalogue requirements."""
    validator = Draft202012Validator(
        spec.load("schemas/ics.json"),
        registry=spec.registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    error = best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise IcsError(f"{source}: {where}: {error.message}")
    ics = Ics(document, source)
    offered = {entry["option"] for entry in spec.profiles["roles"][ics.role].get("options", [])}
    for option in ics.options:
        if option not in offered:
            raise IcsError(f"{source}: option {option!r} is not offered to the {ics.role} role")
    known = {requirement["id"] for requirement in spec.requirements}
    for attestation in document.get("attestations", []):
        if attestation["requirement"] not in known:
            raise IcsError(f"{source}: attestation names unknown {attestation['requirement']}")
    return ics
