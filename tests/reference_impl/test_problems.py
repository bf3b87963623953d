"""Problem documents fit problem.json whatever the request that caused them."""

from __future__ import annotations

from reference_impl.problems import Problem, ProblemTypes
from spec import default

TYPES = ProblemTypes(default())


def test_instance_is_percent_encoded_and_never_splits_an_escape() -> None:
    body = TYPES.body(Problem("not-found", "gone"), "/v1/tasks/\x84 x", "r-1")
    assert body["instance"] == "/v1/tasks/%C2%84%20x"
    long = TYPES.body(Problem("not-found", "gone"), "/" + "é" * 2000, "r-1")["instance"]
    assert len(long) <= 2048
    assert long.endswith("%C3%A9")


def test_texts_that_repeat_the_request_are_cut_to_the_schema() -> None:
    errors = [
        {"parameter": "p" * 300, "message": "m" * 5000},
        {"pointer": "/a" + "/" + "b" * 600, "message": "too long"},
        *({"message": "x"} for _ in range(150)),
    ]
    problem = Problem("invalid-request", "d" * 9000, errors=errors)
    body = TYPES.body(problem, "/v1/identifiers", "r-1")
    assert len(body["detail"]) == 4096
    assert len(body["errors"]) == 100
    first, second = body["errors"][:2]
    assert len(first["parameter"]) == 128
    assert len(first["message"]) == 1024
    assert second["pointer"] == "/a"  # the nearest ancestor that fits
