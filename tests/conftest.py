"""Fixtures shared by the project's own tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import spec


@pytest.fixture(scope="session")
def shipped() -> spec.Spec:
    return spec.default()


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped spec folder, for tests that plant errors in it."""
    target = tmp_path / "spec"
    shutil.copytree(spec.ROOT, target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return target


pytest_plugins = ["pytester"]  # the harness's plugin is tested by running pytest on planted suites
