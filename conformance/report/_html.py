"""report.html: placeholder until the HTML report lands (see issue 4 notes)."""

from __future__ import annotations

import html
import json
from typing import Any


def render(report: dict[str, Any]) -> str:
    return (
        "<!doctype html><meta charset=utf-8><pre>"
        + html.escape(json.dumps(report["summary"], ensure_ascii=False, indent=2))
        + "</pre>"
    )
