"""The fault seam: faults are named, described, planted in one node only, and never active
unless asked for. (Whether the suite kills each fault is tests/cpin/test_selftest.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reference_impl.faults import FaultSite, UnknownFault, catalogue, install
from spec import Spec

from .conftest import RunningNode


def test_every_fault_names_requirements_of_the_catalogue(shipped: Spec) -> None:
    known = {r["id"] for r in shipped.requirements}
    roles = set(shipped.codes("node-role"))
    for fault in catalogue().values():
        assert fault.breaks and set(fault.breaks) <= known, fault.name
        assert fault.roles and set(fault.roles) <= roles, fault.name
        assert fault.summary, fault.name


def test_an_unknown_fault_is_refused(node_factory: Callable[..., RunningNode]) -> None:
    node = node_factory("regional")
    with pytest.raises(UnknownFault):
        install(["no-such-fault"], FaultSite(node.node, {}))


def test_a_fault_changes_only_the_node_it_is_planted_in(
    node_factory: Callable[..., Any],
) -> None:
    faulty = node_factory("regional", faults=("problem-json-missing",), validate_responses=False)
    clean = node_factory("regional")
    assert faulty.client.get("/v1/nowhere").headers["content-type"] == "application/json"
    assert clean.client.get("/v1/nowhere").headers["content-type"] == "application/problem+json"


def test_a_node_without_faults_has_none(node_factory: Callable[..., RunningNode]) -> None:
    assert node_factory("regional").node.config.faults == ()
