"""The request pipeline answers every malformed or unauthorised request as the spec says."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reference_impl.calls import HANDLERS, Call, Reply

from .conftest import RunningNode

RESOLVE = "/v1/identifiers/R4400001E-GPU-00000123K"
REGISTER = "/v1/identifiers"


@pytest.fixture
def regional(node_factory: Callable[..., RunningNode]) -> RunningNode:
    return node_factory("regional")


def _problem(response, status: int, slug: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith(f"/problems/{slug}")
    assert body["status"] == status
    assert body["requestId"] == response.headers["x-request-id"]
    return body  # type: ignore[no-any-return]


def test_request_id_is_echoed_or_minted(regional: RunningNode) -> None:
    assert (
        regional.client.get("/v1/health", headers={"X-Request-Id": "abc-1"}).headers["x-request-id"]
        == "abc-1"
    )
    minted = {regional.client.get("/v1/health").headers["x-request-id"] for _ in range(3)}
    assert len(minted) == 3


def test_malformed_request_id_is_400(regional: RunningNode) -> None:
    response = regional.client.get("/v1/health", headers={"X-Request-Id": "x" * 129})
    _problem(response, 400, "invalid-request")


def test_unknown_path_is_problem_404(regional: RunningNode) -> None:
    _problem(regional.client.get("/v1/nowhere"), 404, "not-found")


def test_operation_of_another_role_is_404_when_path_unserved(regional: RunningNode) -> None:
    _problem(regional.client.get("/v1/nodes"), 404, "not-found")


def test_unserved_method_is_405_with_allow(regional: RunningNode) -> None:
    response = regional.client.put("/v1/health")
    _problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET"


def test_any_method_a_path_does_not_serve_is_405(regional: RunningNode) -> None:
    for method in ("QUERY", "TRACE", "OPTIONS"):
        response = regional.client.request(method, "/v1/health")
        assert response.status_code == 405, method
        assert response.headers["allow"] == "GET"


def test_instance_is_the_path_as_a_uri_reference(regional: RunningNode) -> None:
    body = _problem(regional.client.get("/v1/tasks/%C2%84"), 401, "unauthorized")
    assert body["instance"] == "/v1/tasks/%C2%84"


def test_token_endpoint_refusals_made_before_its_handler_are_token_errors(
    regional: RunningNode,
) -> None:
    response = regional.client.post(
        "/v1/oauth/token",
        content=b"grant_type=client_credentials",
        headers={"X-Request-Id": "two words", "Content-Type": "application/x-www-form-urlencoded"},
    )
    body = _problem(response, 400, "invalid-request")
    assert body["error"] == "invalid_request"
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"


def test_missing_token_is_401_with_bearer_challenge(regional: RunningNode) -> None:
    response = regional.client.get(RESOLVE)
    _problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_wrong_scope_is_403_naming_the_scope(regional: RunningNode) -> None:
    response = regional.client.get(RESOLVE, headers=regional.auth("tasks:read"))
    _problem(response, 403, "insufficient-scope")
    assert 'scope="ids:read"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("path", "slug"),
    [
        ("/v1/identifiers/r4400001e-GPU-00000123K", "malformed-identifier"),
        ("/v1/identifiers/R4400001E-GPU-00000123A", "check-character-mismatch"),
        ("/v1/identifiers/R4400001E-XYZ-00000123B", "malformed-identifier"),
    ],
)
def test_identifier_path_parameters_are_judged(regional: RunningNode, path: str, slug: str) -> None:
    _problem(regional.client.get(path, headers=regional.auth("ids:read")), 400, slug)


def test_unknown_query_parameter_and_bad_limit(regional: RunningNode) -> None:
    headers = regional.auth("ids:read")
    body = _problem(
        regional.client.get("/v1/identifiers?colour=red", headers=headers), 400, "invalid-request"
    )
    assert body["errors"] == [
        {"parameter": "colour", "message": "not a parameter of this operation"}
    ]
    body = _problem(
        regional.client.get("/v1/identifiers?=red", headers=headers), 400, "invalid-request"
    )
    assert body["errors"] == [{"message": "a query parameter has no name"}]
    for limit in ("0", "101", "ten", "1.5"):
        response = regional.client.get(f"/v1/identifiers?limit={limit}", headers=headers)
        _problem(response, 400, "invalid-request")


def test_not_acceptable(regional: RunningNode) -> None:
    _problem(
        regional.client.get("/v1/health", headers={"Accept": "text/html"}), 406, "not-acceptable"
    )


@pytest.mark.parametrize(
    ("content", "content_type", "status", "slug"),
    [
        (b"{}", "text/plain", 415, "unsupported-media-type"),
        (b'{"resType": "GPU",', "application/json", 400, "invalid-request"),
        (b'{"resType": NaN}', "application/json", 400, "invalid-request"),
        (b"\xff\xfe", "application/json", 400, "invalid-request"),
    ],
)
def test_bodies_are_checked_before_handlers(
    regional: RunningNode, content: bytes, content_type: str, status: int, slug: str
) -> None:
    headers = {**regional.auth("ids:write"), "Content-Type": content_type}
    _problem(regional.client.post(REGISTER, content=content, headers=headers), status, slug)


def test_unknown_members_and_coercion_are_refused(regional: RunningNode) -> None:
    headers = regional.auth("ids:write")
    owner = {"uscc": "91350100M000100Y43", "name": "某公司"}
    for body in (
        {"resType": "GPU", "owner": owner, "colour": "red"},
        {"resType": 1, "owner": owner},
        {"resType": "GPU", "owner": {**owner, "uscc": False}},
    ):
        response = regional.client.post(REGISTER, json=body, headers=headers)
        problem = _problem(response, 400, "invalid-request")
        assert problem["errors"], problem


def test_handler_crash_is_a_problem_500_without_details(
    node_factory: Callable[..., RunningNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(call: Call) -> Reply:
        raise ValueError("secret internals")

    monkeypatch.setitem(HANDLERS, "getHealth", crash)  # a node takes its handlers when built
    response = node_factory("regional").client.get("/v1/health")
    body = _problem(response, 500, "internal-error")
    assert "secret internals" not in response.text
    assert body["detail"]


def test_undocumented_answers_are_caught_in_test_mode(
    node_factory: Callable[..., RunningNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def teapot(call: Call) -> Reply:
        return Reply(418, {"status": "ok"})

    monkeypatch.setitem(HANDLERS, "getHealth", teapot)
    body = _problem(node_factory("regional").client.get("/v1/health"), 500, "internal-error")
    assert "undocumented 418" in body["detail"]


def test_cursors_are_signed_by_their_node(node_factory: Callable[..., RunningNode]) -> None:
    """CPIN-CORE-014: an altered cursor, or one another node made, is refused."""
    first, other = node_factory("regional"), node_factory("regional")
    owner = {"uscc": "91350100M000100Y43", "name": "某公司"}
    for running in (first, other):
        for _ in range(2):
            running.client.post(
                REGISTER, json={"resType": "GPU", "owner": owner}, headers=running.auth("ids:write")
            )
    headers = first.auth("ids:read")
    cursor = first.client.get("/v1/identifiers?limit=1", headers=headers).json()["nextCursor"]
    assert first.client.get(f"/v1/identifiers?cursor={cursor}", headers=headers).status_code == 200
    body, _, mac = cursor.partition(".")
    altered = ("A" if body[0] != "A" else "B") + body[1:] + "." + mac
    foreign = other.client.get("/v1/identifiers?limit=1", headers=other.auth("ids:read")).json()[
        "nextCursor"
    ]
    for bad in (altered, foreign, body):
        response = first.client.get(f"/v1/identifiers?cursor={bad}", headers=headers)
        _problem(response, 400, "invalid-request")
