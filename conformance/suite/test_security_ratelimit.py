"""Security class, rate limiting: a burst beyond service-info `limits.rateLimitPerMinute` is
answered 429 with Retry-After, and the client is served again once it has waited that long.

The burst uses the ICS's limited client, so the main client the other tests use is never
limited. It is bounded by the declared rate plus a margin and by `BURST_DEADLINE_S`: a node too
slow to receive its own rate within that time cannot be judged (skipped, never passed).

Waiting out Retry-After (up to a minute against a sliding-window limiter) would stall the run,
so the suite's conftest orders the run around it: the limited client's other users first, then
the burst, then the rest of the suite while a timer sends the follow-up request exactly when
Retry-After has passed (later would excuse a node whose Retry-After is too short), and the test
that judges the follow-up last."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

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
FOLLOW_UP_MARGIN_S = 0.25  # sent this long after Retry-After has passed, never earlier


@dataclass(frozen=True)
class SentLater:
    """The follow-up exchange, as the timer saw it."""

    started: datetime
    response: httpx.Response
    elapsed_ms: float


@dataclass(frozen=True)
class Limited:
    burst: Burst
    refusal: httpx.Response  # the first recorded request after the burst
    request_id: str
    follow_up: Future[SentLater] | None  # scheduled when the refusal gives a usable Retry-After


@pytest.fixture(scope="session")
def rate_limited(
    limited_node: NodeClient,
    declared_rate: int,
    spec: Spec,
    role: str,
    certifier: Certifier,
) -> Iterator[Limited]:
    """The limited client driven past the node's declared rate, once per run, and the
    follow-up request scheduled; teardown cancels a follow-up not yet sent."""
    assert limited_node.credentials is not None
    grant = limited_node.credentials.scopes or frozenset()
    lists = [op for op in protected_operations(spec, role)
             if op.method == "GET" and op.scope in grant and "limit" in op.query
             and "{" not in op.path and not op.headers]  # fmt: skip
    precondition(lists, "the limited client's grant covers no list operation of the role")
    path = f"{lists[0].path}?limit=1"  # the cheapest page: the node's time goes to counting
    token = limited_node.token()
    timeout = float(certifier.budget["requestTimeoutS"])
    sent = burst(limited_node, path, token, limit=declared_rate + max(10, declared_rate // 10),
                 deadline_s=BURST_DEADLINE_S, timeout_s=timeout)  # fmt: skip
    request_id = new_request_id("rate")
    refusal = limited_node.get(path, token=token, headers={"X-Request-Id": request_id})
    refused_at = time.monotonic()
    certifier.log(f"rate limit burst: {sent.sent} requests in {sent.seconds:.1f} s, "
                  f"first 429 at #{sent.first_refusal} (declared {declared_rate}/min)")  # fmt: skip
    if sent.first_refusal is None:
        precondition(
            sent.sent > declared_rate,
            f"only {sent.sent} requests reached the node within {BURST_DEADLINE_S:.0f} s, "
            f"fewer than its declared {declared_rate}/min: the burst cannot exceed the rate",
        )
    cancelled = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="cpin-retry-after") as timer:
        follow_up = None
        if _why_not_judged(refusal) is None:
            due = refused_at + int(refusal.headers["retry-after"]) + FOLLOW_UP_MARGIN_S
            url, headers = limited_node.url(path), {"Authorization": f"Bearer {token}"}
            follow_up = timer.submit(_send_when_due, url, headers, due, timeout, cancelled)
        try:
            yield Limited(sent, refusal, request_id, follow_up)
        finally:
            cancelled.set()


def _why_not_judged(refusal: httpx.Response) -> str | None:
    """Why waiting out this refusal's Retry-After cannot be judged; None when it can (a 429
    with delta-seconds the suite can afford to wait)."""
    value = refusal.headers.get("retry-after", "")
    if refusal.status_code != 429:
        return "the burst was not answered 429"
    if not value.isdigit():
        return "the 429 carries no delta-seconds Retry-After"
    if int(value) > RETRY_WAIT_BOUND_S:
        return f"Retry-After {value} s is longer than the suite waits ({RETRY_WAIT_BOUND_S} s)"
    return None


def _send_when_due(
    url: str, headers: dict[str, str], due: float, timeout: float, cancelled: threading.Event
) -> SentLater:
    """Runs on the timer thread with its own connection: the main thread's clients are not
    shared across threads. Cancelled only when the run ends before the judging test."""
    if cancelled.wait(max(0.0, due - time.monotonic())):
        raise RuntimeError("the run ended before the follow-up request was due")
    started = datetime.now(UTC)
    clock = time.perf_counter()
    with httpx.Client(timeout=timeout) as http:
        response = http.get(url, headers=headers)
    return SentLater(started, response, (time.perf_counter() - clock) * 1000)


@pytest.mark.requirement("CPIN-SEC-026")
def test_requests_beyond_the_declared_rate_answer_429_with_retry_after(
    rate_limited: Limited, declared_rate: int, contract: Contract
) -> None:
    assert rate_limited.burst.first_refusal is not None, (
        f"{rate_limited.burst.sent} requests in {rate_limited.burst.seconds:.1f} s (declared rate "
        f"{declared_rate}/min) and none was answered 429"
    )
    contract.expect_problem(rate_limited.refusal, 429, "rate-limited")
    retry_after = rate_limited.refusal.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, (
        f"the 429 carries Retry-After {retry_after or '(none)'!r}, the spec requires "
        f"delta-seconds of at least 1"
    )


@pytest.mark.requirement("CPIN-SEC-022")
def test_rate_limited_request_leaves_an_access_denied_event(
    rate_limited: Limited, node: NodeClient
) -> None:
    precondition(rate_limited.refusal.status_code == 429, "the burst was not answered 429")
    events = audit_events(node, rate_limited.request_id)
    outcomes = [(e.get("outcome"), e.get("status")) for e in events]
    assert ("failure", 429) in outcomes, (
        f"the 429 (X-Request-Id {rate_limited.request_id}) left no audit event with outcome "
        f"failure and status 429 (found {outcomes})"
    )


@pytest.mark.requirement("CPIN-SEC-027")
@pytest.mark.runs_last
def test_waiting_retry_after_is_enough(rate_limited: Limited, certifier: Certifier) -> None:
    why_not = _why_not_judged(rate_limited.refusal)
    precondition(why_not is None, str(why_not))
    assert rate_limited.follow_up is not None  # scheduled exactly when there is no why_not
    retry_after = rate_limited.refusal.headers["retry-after"]
    sent = rate_limited.follow_up.result()
    certifier.recorder.record(sent.response.request, sent.response, sent.elapsed_ms,
                              started=sent.started)  # fmt: skip
    assert sent.response.status_code != 429, (
        f"a request sent {retry_after} s after a 429 with Retry-After {retry_after} was "
        f"answered 429 again"
    )
