"""conformance/fuzzing.py: what the driver hands schemathesis (the runs themselves are proven by
tests/reference_impl/test_schemathesis.py and the planted faults of tests/cpin/test_selftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.fuzzing import STATELESS, FuzzTarget, _schema
from spec import default

BUDGET = {"fuzzPhases": list(STATELESS), "fuzzExamples": 1, "requestTimeoutS": 5,
          "statefulSteps": 2, "statefulExamples": 1}  # fmt: skip


def _configured(rate: int | None) -> Any:
    target = FuzzTarget("http://127.0.0.1:9", "regional", "token", "client", "secret", rate)
    return _schema(default(), target, STATELESS, BUDGET, seed=1, excluded=set()).config


@pytest.mark.parametrize(("declared", "paced"), [(6000, 4800), (100, 80), (1, 1)])
def test_fuzzing_stays_below_the_declared_rate(declared: int, paced: int) -> None:
    limiter = _configured(declared).rate_limit_for()
    assert [(rate.limit, rate.interval) for rate in limiter.bucket_factory.bucket.rates] == [
        (paced, 60_000)
    ]


def test_a_node_that_declares_no_rate_is_not_paced() -> None:
    assert _configured(None).rate_limit_for() is None


def test_a_refusal_by_state_counts_as_rejecting_invalid_data() -> None:
    """A PATCH without If-Match to an identifier fuzzing had revoked is answered 410: the node
    refused it, and must not be failed for it (seen in a demo run)."""
    checks = _configured(None).checks_config_for()
    assert {"410", "412"} <= set(checks.negative_data_rejection.expected_statuses)
