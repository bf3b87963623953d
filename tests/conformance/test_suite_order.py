"""The order conformance/suite/conftest.py gives a run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from conformance.suite.conftest import pytest_collection_modifyitems


def _item(name: str, fixtures: tuple[str, ...] = ("node",), *markers: str) -> Any:
    return SimpleNamespace(
        name=name,
        module=name,
        fixturenames=list(fixtures),
        get_closest_marker=lambda marker: marker if marker in markers else None,
    )


def test_fuzzing_follows_the_tests_that_register_nodes_and_the_wait_comes_last() -> None:
    items = [
        _item("fuzzing", ("node",), "made_up_codes"),
        _item("node tokens", ("node", "own_node")),
        _item("after the burst", ("rate_limited",), "runs_last"),
        _item("burst", ("rate_limited",)),
        _item("limited client", ("limited_node",)),
        _item("catalogue"),
    ]
    pytest_collection_modifyitems(items)
    assert [item.name for item in items] == [
        "limited client",
        "burst",
        "node tokens",
        "catalogue",
        "fuzzing",
        "after the burst",
    ]
