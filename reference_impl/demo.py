"""The local reference federation: configurations from demo-federation.yaml.

Secrets are minted per run (`secrets.token_urlsafe`) and handed to each node in memory or
through its environment, never written into a file or a report.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reference_impl.node import NodeConfig
from spec import Spec

LAYOUT = Path(__file__).with_name("demo-federation.yaml")
DEMO_CLIENT = "demo"
ONBOARDING_CLIENT = "onboarding"
DEMO_LIMITED_CLIENT = "demo-limited"  # read scopes only: lets the suite prove grants are enforced


@dataclass(frozen=True)
class DemoFederation:
    """The configs in start order (parents first) and the secrets of this run."""

    configs: dict[str, NodeConfig]
    demo_secret: str
    onboarding_secret: str
    limited_secret: str


def layout() -> dict[str, Any]:
    """demo-federation.yaml: who the local federation's nodes are and where they listen."""
    document: dict[str, Any] = yaml.safe_load(LAYOUT.read_text(encoding="utf-8"))
    return document


def read_scopes(spec: Spec) -> set[str]:
    """The grant of the limited demo client: every `...:read` scope of the interface."""
    return {scope for scope in spec.scopes if scope.endswith(":read")}


def federation(spec: Spec, base_port: int, data_root: Path) -> DemoFederation:
    plan = layout()
    demo_secret = secrets.token_urlsafe(24)
    onboarding_secret = secrets.token_urlsafe(24)
    limited_secret = secrets.token_urlsafe(24)
    demo_client = (DEMO_CLIENT, demo_secret, set(spec.scopes))
    limited_client = (DEMO_LIMITED_CLIENT, limited_secret, read_scopes(spec))
    national = plan["national"]
    configs = {
        "national": NodeConfig(
            role="national",
            data_dir=data_root / "national",
            port=base_port + national["offset"],
            node_code=national["nodeCode"],
            name=national["name"],
            clients=[
                demo_client,
                limited_client,
                (ONBOARDING_CLIENT, onboarding_secret, {"registry:apply"}),
            ],
        )
    }
    for entry in plan["nodes"]:
        configs[entry["key"]] = NodeConfig(
            role=entry["role"],
            data_dir=data_root / entry["key"],
            port=base_port + entry["offset"],
            upstream=configs[entry["upstream"]].base_url,
            province=entry["province"],
            industry=entry.get("industry"),
            name=entry["name"],
            applicant=entry["applicant"],
            contact=entry["contact"],
            applicant_client=(ONBOARDING_CLIENT, onboarding_secret),
            clients=[demo_client, limited_client],
        )
    return DemoFederation(configs, demo_secret, onboarding_secret, limited_secret)
