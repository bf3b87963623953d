"""Security class, rate limiting: a burst beyond service-info `limits.rateLimitPerMinute` is
answered 429 with Retry-After, and the client is served again once it has waited that long.

The burst uses the ICS's limited client, so the main client the other tests use is never
limited, and the last test waits out the Retry-After, leaving the limited client usable.
The burst is bounded by the declared rate plus a margin and by `BURST_DEADLINE_S`: a node too
slow to receive its own rate within that time cannot be judged (skipped, never passed). Waiting
out Retry-After makes this module slow (up to a minute against a sliding-window limiter)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conformance.checks import Contract, precondition
from conformance.http import NodeClient
from conformance.session import Certifier
from conformance.suite._security import (
    Burst,
    audit_events,
    burst,
    new_request_id,
    protected_operations,
)
from spec import Spec

BURST_DEADLINE_S = 55.0  # past a minute, no sliding window could be exceeded any more
RETRY_WAIT_BOUND_S = 65  # a per-minute limit never needs a longer wait than one window (+5 s)


@dataclass(frozen=True)
class Limited:
    burst: Burst
    refusal: httpx.Response  # the first recorded request after the burst
    refused_at: float  # time.monotonic() when it was answered
    request_id: str
    path: str
    token: str


@pytest.fixture(scope="module")
def limited(
    limited_node: NodeClient,
    service_info: dict[str, Any],
    spec: Spec,
    role: str,
    certifier: Certifier,
) -> Limited:
    """The limited client driven past the node's declared rate, once per run."""
    assert limited_node.credentials is not None
    grant = limited_node.credentials.scopes or frozenset()
    lists = [op for op in protected_operations(spec, role)
             if op.method == "GET" and op.scope in grant and "limit" in op.query
             and "{" not in op.path and not op.headers]  # fmt: skip
    precondition(lists, "the limited client's grant covers no list operation of the role")
    path = f"{lists[0].path}?limit=1"  # the cheapest page: the node's time goes to counting
    rate = int(service_info["limits"]["rateLimitPerMinute"])
    token = limited_node.token()
    sent = burst(limited_node, path, token, limit=rate + max(10, rate // 10),
                 deadline_s=BURST_DEADLINE_S,
                 timeout_s=float(certifier.budget["requestTimeoutS"]))  # fmt: skip
    request_id = new_request_id("rate")
    refusal = limited_node.get(path, token=token, headers={"X-Request-Id": request_id})
    refused_at = time.monotonic()
    certifier.log(f"rate limit burst: {sent.sent} requests in {sent.seconds:.1f} s, "
                  f"first 429 at #{sent.first_refusal} (declared {rate}/min)")  # fmt: skip
    if sent.first_refusal is None:
        precondition(
            sent.sent > rate,
            f"only {sent.sent} requests reached the node within {BURST_DEADLINE_S:.0f} s, "
            f"fewer than its declared {rate}/min: the burst cannot exceed the rate",
        )
    return Limited(sent, refusal, refused_at, request_id, path, token)


@pytest.mark.requirement("CPIN-SEC-026")
def test_requests_beyond_the_declared_rate_answer_429_with_retry_after(
    limited: Limited, service_info: dict[str, Any], contract: Contract
) -> None:
    rate = service_info["limits"]["rateLimitPerMinute"]
    assert limited.burst.first_refusal is not None, (
        f"{limited.burst.sent} requests in {limited.burst.seconds:.1f} s (declared rate "
        f"{rate}/min) and none was answered 429"
    )
    contract.expect_problem(limited.refusal, 429, "rate-limited")
    retry_after = limited.refusal.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, (
        f"the 429 carries Retry-After {retry_after or '(none)'!r}, the spec requires "
        f"delta-seconds of at least 1"
    )


@pytest.mark.requirement("CPIN-SEC-022")
def test_rate_limited_request_leaves_an_access_denied_event(
    limited: Limited, node: NodeClient
) -> None:
    precondition(limited.refusal.status_code == 429, "the burst was not answered 429")
    events = audit_events(node, limited.request_id)
    outcomes = [(e.get("outcome"), e.get("status")) for e in events]
    assert ("failure", 429) in outcomes, (
        f"the 429 (X-Request-Id {limited.request_id}) left no audit event with outcome "
        f"failure and status 429 (found {outcomes})"
    )


@pytest.mark.requirement("CPIN-SEC-027")
def test_waiting_retry_after_is_enough(limited: Limited, limited_node: NodeClient) -> None:
    precondition(limited.refusal.status_code == 429, "the burst was not answered 429")
    retry_after = limited.refusal.headers.get("retry-after", "")
    precondition(retry_after.isdigit(), "the 429 carries no delta-seconds Retry-After")
    wait = int(retry_after)
    precondition(
        wait <= RETRY_WAIT_BOUND_S,
        f"Retry-After {wait} s is longer than the suite waits ({RETRY_WAIT_BOUND_S} s)",
    )
    time.sleep(max(0.0, limited.refused_at + wait + 0.25 - time.monotonic()))
    response = limited_node.get(limited.path, token=limited.token)
    assert response.status_code != 429, (
        f"a request sent {wait} s after a 429 with Retry-After {wait} was answered 429 again"
    )
