"""report.html from a report: both languages, every requirement, nothing a node said executed."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from conformance.report._html import render
from spec import Spec


@pytest.fixture
def example(shipped: Spec) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((shipped.root / "examples" / "report-minimal.json")
                                          .read_text(encoding="utf-8"))  # fmt: skip
    return document


def test_the_page_is_bilingual_and_lists_every_requirement(example: dict[str, Any]) -> None:
    page = render(example)
    assert "国家算力互联互通节点认证报告" in page and "CPIN certification report" in page
    for entry in example["requirements"]:
        assert entry["id"] in page
    assert "<svg" in page, "the class chart is drawn inline"
    assert "http://" not in page.split("<body>")[0].replace("http://www.w3.org", "")


def test_what_a_node_said_is_escaped(example: dict[str, Any]) -> None:
    hostile = copy.deepcopy(example)
    entry = hostile["requirements"][0]
    entry["verdict"], entry["reason"] = "fail", {"en": "<script>alert(1)</script>"}
    page = render(hostile)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
