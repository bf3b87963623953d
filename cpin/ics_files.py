"""ICS files for the nodes of the local reference federation (`cpin federation up --ics-dir`,
`cpin demo`): what a vendor would write for each node, secrets by environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import reference_impl
from cpin.node_command import DEMO_SECRET_ENV, LIMITED_SECRET_ENV
from reference_impl.demo import DEMO_CLIENT, DEMO_LIMITED_CLIENT, DemoFederation, read_scopes
from spec import Spec

ATTESTATIONS = Path(reference_impl.__file__).with_name("attestations.yaml")


def _client(env: str, client_id: str = DEMO_CLIENT) -> dict[str, Any]:
    return {"clientId": client_id, "clientSecret": {"env": env}}


def ics_documents(
    demo: DemoFederation, codes: dict[str, str], spec: Spec, budget: str
) -> dict[str, dict[str, Any]]:
    """One ICS per node key; `codes` are the NodeCodes the nodes reported when they started."""
    offered = {role: [o["option"] for o in profile.get("options", [])]
               for role, profile in spec.profiles["roles"].items()}  # fmt: skip
    documents = {}
    for key, config in demo.configs.items():
        limited = _client(LIMITED_SECRET_ENV, DEMO_LIMITED_CLIENT)
        limited["scopes"] = sorted(read_scopes(spec))
        document: dict[str, Any] = {
            "ics": "1.0",
            "node": {
                "role": config.role,
                "baseUrl": config.base_url,
                "nodeCode": codes[key],
                "name": config.name["zh"],
            },
            "options": offered[config.role],
            "vendor": {
                "name": "CPIN conformance kit",
                "product": "reference_impl",
                "version": _version(),
            },
            "credentials": _client(DEMO_SECRET_ENV),
            "limitedClient": limited,
            "budget": budget,
            # What the reference node sustains on this machine with room to spare (measured
            # capacity: scripts/bench_load.py); the load mix paces each client at 1 request/s.
            "capacity": {"rps": 8, "users": 10},
        }
        upstream = next((k for k, c in demo.configs.items()
                         if config.upstream and c.base_url == config.upstream), None)  # fmt: skip
        federation: dict[str, Any] = {}
        if upstream is not None:
            federation = {
                "upstreamUrl": config.upstream,
                "upstreamNodeCode": codes[upstream],
                "upstreamCredentials": _client(DEMO_SECRET_ENV),
            }
        federation["peers"] = [
            {"role": other.role, "nodeCode": codes[name], "baseUrl": other.base_url,
             "credentials": _client(DEMO_SECRET_ENV)}
            for name, other in demo.configs.items() if name != key
        ]  # fmt: skip
        document["federation"] = federation
        document["attestations"] = _attestations(spec, config.role)
        documents[key] = document
    return documents


def _attestations(spec: Spec, role: str) -> list[dict[str, Any]]:
    """The reference implementation's statements (reference_impl/attestations.yaml) for the
    attestation requirements that bind the role."""
    statements = yaml.safe_load(ATTESTATIONS.read_text(encoding="utf-8"))
    return [
        {"requirement": entry["id"], "statement": statements[entry["id"]]}
        for entry in spec.requirements
        if entry["test"]["method"] == "attestation"
        and role in entry["roles"]
        and entry["id"] in statements
    ]


def write_ics_files(documents: dict[str, dict[str, Any]], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, document in documents.items():
        path = folder / f"{key}.yaml"
        header = "# yaml-language-server: $schema=https://cpin.example/spec/v1/schemas/ics.json\n"
        text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
        path.write_text(header + text, encoding="utf-8")
        paths[key] = path
    return paths


def _version() -> str:
    from cpin import __version__

    return __version__
