"""Core class: what every response body is made of — UTF-8 without a byte order mark, timestamps
in UTC with `Z`, units from the unit code list — judged over every GET the role serves, error
answers and a freshly created record."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conformance.http import NodeClient
from conformance.suite._core import (
    operations_of,
    selection_demand,
    timestamp_flaws,
    unit_flaws,
)
from spec import Spec

_JSON_MEDIA = {"application/json", "application/problem+json"}


@pytest.fixture(scope="module")
def json_answers(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec
) -> list[httpx.Response]:
    answers = [
        node.get(op.path)
        for op in operations_of(spec).served(role, service_info["classes"])
        if op.method == "GET" and not op.has_path_parameters
    ]
    answers += [
        node.get("/v1/cpin-conformance-unknown"),
        node.delete("/v1/health"),
        node.get("/v1/audit-events", authenticated=False),
    ]
    if "selection" in service_info["classes"]:
        answers.append(node.post("/v1/selections", json=selection_demand()))
    return [
        r for r in answers if r.headers.get("content-type", "").split(";")[0].strip() in _JSON_MEDIA
    ]


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path} -> {response.status_code}"


@pytest.mark.requirement("CPIN-CORE-029")
def test_json_bodies_are_utf8_without_bom(json_answers: list[httpx.Response]) -> None:
    flaws = []
    for response in json_answers:
        charset = response.headers.get("content-type", "").lower().partition("charset=")[2]
        if charset and charset.strip(' "') not in {"utf-8", "utf8"}:
            flaws.append(f"{_where(response)}: Content-Type names charset {charset}")
        if response.content.startswith(b"\xef\xbb\xbf"):
            flaws.append(f"{_where(response)}: the body starts with a byte order mark")
        try:
            response.content.decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            flaws.append(f"{_where(response)}: not UTF-8 at byte {exc.start}")
    assert not flaws, "; ".join(flaws[:5])


def _documents(answers: list[httpx.Response]) -> list[tuple[httpx.Response, Any]]:
    documents = []
    for response in answers:
        try:
            documents.append((response, response.json()))
        except ValueError:
            continue  # judged by CPIN-CORE-029 and CPIN-CORE-026
    return documents


@pytest.mark.requirement("CPIN-CORE-015")
def test_response_timestamps_are_utc_with_z(json_answers: list[httpx.Response]) -> None:
    flaws = [
        f"{_where(response)}: {flaw}"
        for response, document in _documents(json_answers)
        for flaw in timestamp_flaws(document)
    ]
    assert not flaws, "timestamps must be RFC 3339 date-times in UTC written with Z: " + "; ".join(
        flaws[:5]
    )


@pytest.mark.requirement("CPIN-CORE-017")
def test_response_units_are_codes_of_the_unit_list(
    json_answers: list[httpx.Response], spec: Spec
) -> None:
    units = set(spec.codes("unit"))
    flaws = [
        f"{_where(response)}: {flaw}"
        for response, document in _documents(json_answers)
        for flaw in unit_flaws(document, units)
    ]
    assert not flaws, "units must be codes of the unit code list: " + "; ".join(flaws[:5])
