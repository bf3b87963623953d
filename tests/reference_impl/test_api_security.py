"""reference_impl/api/security.py over HTTP: token endpoint, JWKS, audit trail, rate limit."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.reference_impl.conftest import RunningNode

TOKEN = "/v1/oauth/token"
AUDIT = "/v1/audit-events"
SECRET = "harness-" + secrets.token_urlsafe(24).replace("-", "x")


@pytest.fixture
def running(node_factory: Callable[..., RunningNode]) -> RunningNode:
    node = node_factory(role="regional")
    node.node.security.add_client("cpin-harness", SECRET, {"catalogue:read", "audit:read"})
    return node


def token_request(
    running: RunningNode, form: dict[str, str], auth: Any = ("cpin-harness", SECRET)
) -> httpx.Response:
    response: httpx.Response = running.client.post(TOKEN, data=form, auth=auth)
    assert SECRET not in response.text
    assert response.headers["cache-control"] == "no-store"
    return response


def token_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["status"] == status
    return body


def test_client_credentials_grant(running: RunningNode) -> None:
    response = token_request(running, {"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "audit:read catalogue:read"
    assert 1 <= body["expires_in"] <= 900
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    events = running.client.get(AUDIT, headers=bearer, params={"action": "token.issued"})
    assert events.status_code == 200
    assert body["access_token"] not in events.text
    [event] = events.json()["items"]
    assert event["actor"] == {"clientId": "cpin-harness"}
    assert event["target"] == "cpin-harness"
    assert event["status"] == 200
    assert event["outcome"] == "success"
    assert event["requestId"] == response.headers["x-request-id"]


def test_requested_scope_and_audience(running: RunningNode) -> None:
    form = {"grant_type": "client_credentials", "scope": "audit:read", "audience": "R4400001E"}
    response = token_request(running, form)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "audit:read"


@pytest.mark.parametrize(
    "auth",
    [None, ("cpin-harness", SECRET + "x"), ("nobody", SECRET), ("", SECRET)],
    ids=["none", "wrong-secret", "unknown-client", "empty-id"],
)
def test_invalid_client(running: RunningNode, auth: Any) -> None:
    response = token_request(running, {"grant_type": "client_credentials"}, auth=auth)
    token_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


def test_unsupported_grant_type(running: RunningNode) -> None:
    response = token_request(running, {"grant_type": "password"})
    token_error(response, 400, "unsupported_grant_type")


@pytest.mark.parametrize("scope", ["registry:admin", "audit:read registry:admin", "made:up"])
def test_invalid_scope(running: RunningNode, scope: str) -> None:
    response = token_request(running, {"grant_type": "client_credentials", "scope": scope})
    body = token_error(response, 400, "invalid_scope")
    assert "registry:admin" in body["error_description"] or "made:up" in body["error_description"]


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "client_credentials", "client_id": "cpin-harness"},
        {"grant_type": "client_credentials", "client_secret": SECRET},
        {"grant_type": "client_credentials", "audience": "I44C3801D"},
        {"scope": "audit:read"},
    ],
    ids=["client-id-in-form", "secret-in-form", "other-audience", "no-grant"],
)
def test_invalid_request(running: RunningNode, form: dict[str, str]) -> None:
    token_error(token_request(running, form), 400, "invalid_request")


def test_refused_token_requests_leave_no_token_issued_event(running: RunningNode) -> None:
    token_request(running, {"grant_type": "client_credentials"}, auth=("nobody", "x"))
    token_request(running, {"grant_type": "password"})
    events = running.client.get(
        AUDIT, headers=running.auth("audit:read"), params={"action": "token.issued"}
    )
    assert events.json()["items"] == []


def test_jwks_is_public(running: RunningNode) -> None:
    response = running.client.get("/v1/jwks")
    assert response.status_code == 200
    assert response.json() == running.node.security.jwks()
    assert "max-age" in response.headers["cache-control"]


def test_token_is_verifiable_with_the_published_jwks(running: RunningNode) -> None:
    import jwt

    token = token_request(running, {"grant_type": "client_credentials"}).json()["access_token"]
    jwk = jwt.PyJWK(running.client.get("/v1/jwks").json()["keys"][0])
    claims = jwt.decode(token, jwk.key, algorithms=["EdDSA"], audience="R4400001E")
    assert claims["iss"] == running.node.config.base_url
    assert claims["sub"] == "cpin-harness"


def test_audit_events_need_audit_read(running: RunningNode) -> None:
    assert running.client.get(AUDIT).status_code == 401
    refused = running.client.get(AUDIT, headers=running.auth("catalogue:read"))
    assert refused.status_code == 403
    assert running.client.get(AUDIT, headers=running.auth("audit:read")).status_code == 200


def test_audit_events_page_newest_first_each_once(running: RunningNode) -> None:
    request_ids = [f"req-{n}" for n in range(5)]
    for request_id in request_ids:
        response = running.client.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            auth=("cpin-harness", SECRET),
            headers={"X-Request-Id": request_id},
        )
        assert response.status_code == 200
    headers = running.auth("audit:read")
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2, "action": "token.issued"}
    while True:
        page = running.client.get(AUDIT, headers=headers, params=params).json()
        assert len(page["items"]) <= 2
        seen += [event["requestId"] for event in page["items"]]
        if "nextCursor" not in page:
            break
        params["cursor"] = page["nextCursor"]
    assert seen == request_ids[::-1]


def test_audit_event_filters(running: RunningNode) -> None:
    for request_id in ("first", "second"):
        running.client.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            auth=("cpin-harness", SECRET),
            headers={"X-Request-Id": request_id},
        )
    headers = running.auth("audit:read")
    by_id = running.client.get(AUDIT, headers=headers, params={"requestId": "second"}).json()
    assert [event["requestId"] for event in by_id["items"]] == ["second"]
    first_time = by_id["items"][0]["time"]
    since = running.client.get(AUDIT, headers=headers, params={"since": first_time}).json()
    assert "second" in [event["requestId"] for event in since["items"]]
    future = running.client.get(AUDIT, headers=headers, params={"since": "2999-01-01T00:00:00Z"})
    assert future.json()["items"] == []
    other = running.client.get(AUDIT, headers=headers, params={"action": "task.created"})
    assert other.json()["items"] == []


def test_audit_event_since_is_inclusive_to_the_nanosecond(running: RunningNode) -> None:
    running.client.post(
        TOKEN, data={"grant_type": "client_credentials"}, auth=("cpin-harness", SECRET)
    )
    headers = running.auth("audit:read")
    [event] = running.client.get(AUDIT, headers=headers).json()["items"]
    moment = event["time"]  # milliseconds, Z
    for since, count in ((moment, 1), (moment.replace("Z", "000001Z"), 0)):
        items = running.client.get(AUDIT, headers=headers, params={"since": since}).json()
        assert len(items["items"]) == count, since


@pytest.mark.parametrize("cursor", ["not-a-cursor", "YWJj", "LTE"])
def test_foreign_cursor_is_400(running: RunningNode, cursor: str) -> None:
    response = running.client.get(
        AUDIT, headers=running.auth("audit:read"), params={"cursor": cursor}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_audit_events_cannot_be_written(running: RunningNode, method: str) -> None:
    response = running.client.request(method, AUDIT, headers=running.auth("audit:read"))
    assert response.status_code in {404, 405}


def test_rate_limit_answers_429_with_retry_after(
    node_factory: Callable[..., RunningNode],
) -> None:
    limited = node_factory(role="regional", rate_limit_per_minute=3)
    headers = limited.auth("audit:read")
    answers = [limited.client.get(AUDIT, headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    retry = int(answers[-1].headers["retry-after"])
    assert 1 <= retry <= 60
    assert answers[-1].json()["type"].endswith("/rate-limited")


def test_a_remembered_token_still_expires(node_factory: Any) -> None:
    """The verified-token cache saves the signature check, never the expiry check."""
    running = node_factory("regional")
    headers = running.auth("audit:read")
    assert running.client.get("/v1/audit-events", headers=headers).status_code == 200
    later = running.node.now() + timedelta(hours=2)
    running.node.now = lambda: later
    refused = running.client.get("/v1/audit-events", headers=headers)
    assert refused.status_code == 401
    assert "expired" in refused.headers["www-authenticate"]
