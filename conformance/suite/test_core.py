"""Core class: service-info, health, problem details, request ids, pagination, formats."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.checks import Contract, expect_status
from conformance.http import NodeClient


@pytest.mark.requirement("CPIN-CORE-001")
def test_service_info_is_served_without_authentication(
    node: NodeClient, contract: Contract
) -> None:
    response = node.get("/v1/service-info", authenticated=False)
    expect_status(response, 200)
    contract.expect_json(response, "schemas/service-info.json")


@pytest.mark.requirement("CPIN-CORE-002")
def test_service_info_names_the_declared_role_and_node_code(
    service_info: dict[str, Any], role: str, identifier_rules: Any
) -> None:
    assert service_info["role"] == role, (
        f"service-info role {service_info['role']!r}, the ICS declares {role!r}"
    )
    flaw = identifier_rules.node_code_flaw(service_info["nodeCode"])
    assert flaw is None, f"service-info nodeCode {service_info['nodeCode']!r}: {flaw}"
