"""Core class: how a node treats what it is sent — request ids, strict validation of bodies
(closed members, no coercion, well-formed JSON, timestamps, units), media types, unknown query
parameters, Accept, compression — and the Location of what it creates."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.provisioning import Provisioner
from conformance.suite._core import (
    basic_credentials,
    operations_of,
    problem_flaws,
    selection_demand,
    stale_metric_batch,
)
from spec import Spec

Mutation = Callable[[dict[str, Any]], None]

_VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))
_BAD_TIMESTAMPS = [
    "2026-03-05",
    "2026-03-05T03:00:00",
    "2026-03-05 03:00:00Z",
    "2026-02-30T03:00:00Z",
    "05/03/2026 03:00",
    "1772679600",
]
_MALFORMED_JSON = [
    b'{"acceleratorType": "GPU",',
    b"{'acceleratorType': 'GPU'}",
    b'{"acceleratorCount": NaN}',
    b'{"a": 1} trailing',
    b"",
]


def _request_ids() -> list[str]:
    return ["a", f"cpin-{uuid.uuid4()}", _VISIBLE_ASCII, ("cpin-" + uuid.uuid4().hex * 4)[:128]]


def _echo_probes(node: NodeClient) -> list[Callable[[dict[str, str]], httpx.Response]]:
    """Requests that answer 200, 404, 401, 400 and 405."""
    return [
        lambda headers: node.get("/v1/service-info", headers=headers),
        lambda headers: node.get("/v1/cpin-conformance-unknown", headers=headers),
        lambda headers: node.get("/v1/audit-events", authenticated=False, headers=headers),
        lambda headers: node.get("/v1/audit-events", params={"limit": 0}, headers=headers),
        lambda headers: node.delete("/v1/health", headers=headers),
    ]


@pytest.mark.requirement("CPIN-CORE-009")
def test_request_id_is_echoed_whatever_the_status(node: NodeClient) -> None:
    flaws = []
    for request_id in _request_ids():
        for probe in _echo_probes(node):
            response = probe({"X-Request-Id": request_id})
            echoed = response.headers.get("x-request-id")
            if echoed != request_id:
                flaws.append(
                    f"{response.request.method} {response.request.url.path} -> "
                    f"{response.status_code}: sent X-Request-Id {request_id!r}, "
                    f"got {echoed!r}"
                )
    assert not flaws, "; ".join(flaws[:4])


@pytest.mark.requirement("CPIN-CORE-010")
def test_request_id_is_minted_and_unique(node: NodeClient) -> None:
    minted: dict[str, str] = {}
    for _ in range(3):
        for probe in _echo_probes(node):
            response = probe({})
            where = f"{response.request.method} {response.request.url.path} -> " + str(
                response.status_code
            )
            value = response.headers.get("x-request-id")
            assert value, f"{where}: no X-Request-Id although the request carried none"
            assert 1 <= len(value) <= 128 and all(c in _VISIBLE_ASCII for c in value), (
                f"{where}: minted X-Request-Id {value!r} is not 1-128 visible ASCII characters"
            )
            assert value not in minted, (
                f"{where}: minted X-Request-Id {value!r} again (first for {minted[value]})"
            )
            minted[value] = where


@pytest.fixture(scope="module")
def now_at_node(service_info: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(service_info["time"].replace("Z", "+00:00"))


@pytest.mark.requirement("CPIN-CORE-016")
def test_timestamps_that_are_not_rfc3339_answer_400(
    node: NodeClient,
    service_info: dict[str, Any],
    now_at_node: datetime,
    contract: Contract,
    spec: Spec,
    role: str,
) -> None:
    """In the query of listAuditEvents (every role) and, where the role takes metric records,
    in a request body."""
    control = node.get("/v1/audit-events", params={"since": "2026-03-05T03:00:00Z", "limit": 1})
    expect_status(control, 200)
    sent = [
        node.get("/v1/audit-events", params={"since": value, "limit": 1})
        for value in _BAD_TIMESTAMPS
    ]
    if _takes_metrics(spec, role):
        valid = (now_at_node - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        batch = stale_metric_batch(service_info["nodeCode"], valid)
        control = node.post("/v1/metrics", json=batch)
        assert control.status_code == 200, (
            f"a valid metric batch was refused ({control.status_code}): {control.text[:200]}"
        )
        sent += [
            node.post("/v1/metrics", json=stale_metric_batch(service_info["nodeCode"], value))
            for value in _BAD_TIMESTAMPS
        ]
    flaws = []
    for response in sent:
        if response.status_code != 400:
            flaws.append(
                f"{response.request.method} {response.request.url} -> {response.status_code}"
            )
        else:
            flaws += problem_flaws(response, contract)
    assert not flaws, f"timestamps that are not RFC 3339 must answer 400: {'; '.join(flaws[:5])}"


def _takes_metrics(spec: Spec, role: str) -> bool:
    return "POST" in operations_of(spec).methods_at("/v1/metrics", role)


class _BodyProbe:
    """A JSON body the node must accept, sent again with one defect at a time."""

    def __init__(self, node: NodeClient, path: str, body: dict[str, Any], accepted: int) -> None:
        self.node = node
        self.path = path
        self.body = body
        self.accepted = accepted

    def check_control(self) -> None:
        response = self.node.post(self.path, json=self.body)
        precondition(
            response.status_code == self.accepted,
            f"POST {self.path} refused a valid body: {response.status_code} {response.text[:200]}",
        )

    def refusals(self, mutations: dict[str, Mutation], contract: Contract) -> list[str]:
        """The mutations the node did not answer 400 problem+json."""
        flaws = []
        for name, mutate in mutations.items():
            body = copy.deepcopy(self.body)
            mutate(body)
            response = self.node.post(self.path, json=body)
            if response.status_code != 400:
                flaws.append(f"{name}: POST {self.path} -> {response.status_code}")
            else:
                flaws += problem_flaws(response, contract)
        return flaws


@pytest.fixture(scope="module")
def body_probe(
    node: NodeClient, service_info: dict[str, Any], now_at_node: datetime, spec: Spec, role: str
) -> tuple[str, _BodyProbe]:
    """createSelection where the node serves it, else pushMetrics (a stale record: nothing
    is stored)."""
    if "selection" in service_info["classes"]:
        return "selection", _BodyProbe(node, "/v1/selections", selection_demand(), 201)
    if _takes_metrics(spec, role):
        stale = (now_at_node - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        batch = stale_metric_batch(service_info["nodeCode"], stale)
        return "metrics", _BodyProbe(node, "/v1/metrics", batch, 200)
    pytest.skip("precondition failed: the node serves neither createSelection nor pushMetrics")


def _set(*path: str | int, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


_UNITS = {"selection": ("minPeak", "unit"), "metrics": ("records", 0, "unit")}
_WRONG_UNITS = ["tflops", "TFLOP/s", "petaflops", "Score", ""]


@pytest.mark.requirement("CPIN-CORE-017")
def test_units_outside_the_code_list_answer_400(
    body_probe: tuple[str, _BodyProbe], contract: Contract, spec: Spec
) -> None:
    kind, probe = body_probe
    probe.check_control()
    units = set(spec.codes("unit"))
    wrong = [u for u in _WRONG_UNITS if u not in units]
    mutations = {f"unit {u!r}": _set(*_UNITS[kind], value=u) for u in wrong}
    flaws = probe.refusals(mutations, contract)
    assert not flaws, f"units outside the unit code list must answer 400: {'; '.join(flaws)}"


_UNKNOWN_MEMBERS = {
    "selection": {
        "top-level member gpuCount": _set("gpuCount", value=8),
        "member minPeak/scale": _set("minPeak", "scale", value=1),
        "member weights/speed": _set("weights", "speed", value=0.5),
    },
    "metrics": {
        "top-level member source": _set("source", value="cpin"),
        "member records/0/comment": _set("records", 0, "comment", value="cpin"),
        "member records/0/subject/site": _set("records", 0, "subject", "site", value="cpin"),
    },
}


@pytest.mark.requirement("CPIN-CORE-018")
def test_unknown_body_members_answer_400(
    body_probe: tuple[str, _BodyProbe], contract: Contract
) -> None:
    kind, probe = body_probe
    probe.check_control()
    flaws = probe.refusals(_UNKNOWN_MEMBERS[kind], contract)
    assert not flaws, f"unknown members must answer 400, not be ignored: {'; '.join(flaws)}"


_COERCIONS = {
    "selection": {
        'acceleratorCount "1"': _set("acceleratorCount", value="1"),
        "weights/availability false": _set("weights", "availability", value=False),
        "minPeak/value true": _set("minPeak", "value", value=True),
        "regions [44]": _set("regions", value=[44]),
        'limit "1"': _set("limit", value="1"),
    },
    "metrics": {
        'value "5"': _set("records", 0, "value", value="5"),
        "value false": _set("records", 0, "value", value=False),
        'validitySeconds "60"': _set("records", 0, "validitySeconds", value="60"),
        "level 2": _set("records", 0, "level", value=2),
    },
}


@pytest.mark.requirement("CPIN-CORE-019")
def test_members_of_the_wrong_json_type_are_not_coerced(
    body_probe: tuple[str, _BodyProbe], contract: Contract
) -> None:
    kind, probe = body_probe
    probe.check_control()
    flaws = probe.refusals(_COERCIONS[kind], contract)
    assert not flaws, f"members of the wrong JSON type must answer 400: {'; '.join(flaws)}"


@pytest.mark.requirement("CPIN-CORE-020")
def test_malformed_json_answers_400_problem(
    body_probe: tuple[str, _BodyProbe], contract: Contract
) -> None:
    _, probe = body_probe
    flaws = []
    for raw in _MALFORMED_JSON:
        response = probe.node.post(
            probe.path, content=raw, headers={"Content-Type": "application/json"}
        )
        if response.status_code != 400:
            flaws.append(f"{raw!r} -> {response.status_code}")
        else:
            flaws += problem_flaws(response, contract)
    assert not flaws, f"malformed JSON must answer 400 problem+json: {'; '.join(flaws)}"


@pytest.mark.requirement("CPIN-CORE-021")
def test_other_media_types_answer_415(
    node: NodeClient, body_probe: tuple[str, _BodyProbe], contract: Contract
) -> None:
    _, probe = body_probe
    raw = json.dumps(probe.body).encode()
    sent = [
        node.post(probe.path, content=raw, headers={"Content-Type": media})
        for media in (
            "text/plain",
            "application/xml",
            "application/merge-patch+json",
            "application/x-www-form-urlencoded",
        )
    ]
    sent.append(
        node.post(
            "/v1/oauth/token",
            json={"grant_type": "client_credentials"},
            headers={"Authorization": basic_credentials(node)},
        )
    )
    flaws = []
    for response in sent:
        media = response.request.headers.get("content-type")
        if response.status_code != 415:
            flaws.append(f"POST {response.request.url.path} as {media} -> {response.status_code}")
        else:
            flaws += problem_flaws(response, contract)
    assert not flaws, f"bodies of another media type must answer 415: {'; '.join(flaws)}"


@pytest.mark.requirement("CPIN-CORE-021")
def test_patch_with_plain_json_answers_415(
    node: NodeClient,
    service_info: dict[str, Any],
    provision: Provisioner,
    contract: Contract,
    spec: Spec,
) -> None:
    path = _patchable_record(node, service_info, provision, spec)
    current = node.get(path)
    expect_status(current, 200)
    etag = current.headers.get("etag")
    precondition(etag, f"GET {path} carries no ETag to send in If-Match")
    response = node.request(
        "PATCH",
        path,
        content=b"{}",
        headers={"Content-Type": "application/json", "If-Match": str(etag)},
    )
    assert response.status_code == 415, (
        f"PATCH {path} as application/json -> {response.status_code}; PATCH bodies are "
        "application/merge-patch+json, another media type is 415"
    )
    flaws = problem_flaws(response, contract)
    assert not flaws, "; ".join(flaws)


def _patchable_record(
    node: NodeClient, service_info: dict[str, Any], provision: Provisioner, spec: Spec
) -> str:
    """A record the role may PATCH: the national node's own registry entry, or an identifier
    registered for the test."""
    if service_info["role"] == "national":
        return f"/v1/nodes/{service_info['nodeCode']}"
    created = provision.create(
        "/v1/identifiers", _identifier_registration(provision, spec), key="identifier"
    )
    precondition(
        created.response.status_code == 201,
        f"registering an identifier failed: {created.response.status_code}",
    )
    return f"/v1/identifiers/{created.body['identifier']}"


def _identifier_registration(provision: Provisioner, spec: Spec) -> dict[str, Any]:
    uscc = spec.vectors["uscc"]["valid"][1]["code"]
    return {
        "resType": "GPU",
        "owner": {"uscc": uscc, "name": provision.label("owner")},
        "description": provision.label("core: media types and Location"),
    }


@pytest.mark.requirement("CPIN-CORE-030")
def test_created_records_carry_their_location(
    node: NodeClient, service_info: dict[str, Any], provision: Provisioner, spec: Spec
) -> None:
    created = []
    if "selection" in service_info["classes"]:
        created.append(node.post("/v1/selections", json=selection_demand()))
    if service_info["role"] != "national":
        created.append(
            provision.create(
                "/v1/identifiers", _identifier_registration(provision, spec), key="identifier"
            ).response
        )
    precondition(created, "the role serves no creation the suite can make harmlessly")
    for response in created:
        expect_status(response, 201)
        location = response.headers.get("location")
        assert location, f"POST {response.request.url.path} -> 201 without a Location header"
        fetched = node.get(node.url(location) if location.startswith("/") else location)
        assert fetched.status_code == 200, (
            f"Location {location} of the created record answers {fetched.status_code}"
        )


@pytest.mark.requirement("CPIN-CORE-031")
def test_unknown_query_parameters_answer_400(node: NodeClient, contract: Contract) -> None:
    flaws = []
    for path in ("/v1/service-info", "/v1/health", "/v1/audit-events"):
        response = node.get(path, params={"cpinUnknown": "1"})
        if response.status_code != 400:
            flaws.append(f"GET {path}?cpinUnknown=1 -> {response.status_code}")
        else:
            flaws += problem_flaws(response, contract)
    assert not flaws, f"query parameters the operation does not define: {'; '.join(flaws)}"


@pytest.mark.requirement("CPIN-CORE-032")
def test_unacceptable_accept_answers_406(node: NodeClient, contract: Contract) -> None:
    flaws = []
    for path in ("/v1/service-info", "/v1/health", "/v1/audit-events"):
        for accept in ("application/xml", "text/html, text/plain;q=0.5"):
            response = node.get(path, headers={"Accept": accept})
            if response.status_code != 406:
                flaws.append(f"GET {path} Accept {accept!r} -> {response.status_code}")
            else:
                flaws += problem_flaws(response, contract)
    assert not flaws, f"an Accept without JSON should answer 406: {'; '.join(flaws)}"


@pytest.mark.requirement("CPIN-CORE-033")
def test_compressed_answers_say_so(node: NodeClient) -> None:
    """Passes when the node never compresses: the MAY is then not taken up, and nothing it
    sends is mislabelled."""
    for path in ("/v1/openapi.json", "/v1/service-info"):
        response = node.get(path, headers={"Accept-Encoding": "gzip"})
        encoding = response.headers.get("content-encoding", "identity").lower()
        if encoding == "gzip":  # httpx has decoded it: the JSON must be there
            body_of(response)
            continue
        assert not response.content.startswith(b"\x1f\x8b"), (
            f"GET {path}: the body is gzip-compressed but Content-Encoding is {encoding!r}"
        )
        assert encoding == "identity", f"GET {path}: unexpected Content-Encoding {encoding!r}"
        body_of(response)
    plain = node.get("/v1/openapi.json", headers={"Accept-Encoding": "identity"})
    encoding = plain.headers.get("content-encoding", "identity").lower()
    assert encoding == "identity" and not plain.content.startswith(b"\x1f\x8b"), (
        f"a request that admits only identity got Content-Encoding {encoding!r}"
    )
