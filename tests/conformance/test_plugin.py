"""The pytest plugin on planted suites: ids are checked at collection, each test outcome maps
to the verdict the certification rule defines, and the report is written and valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.reports import load, only_bundle, schema_errors, verdicts

TARGET = [
    "--target-url", "http://127.0.0.1:9", "--role", "regional", "--node-code", "R4400001E",
    "--client-id", "demo", "--client-secret-env", "CPIN_TEST_SECRET", "--budget", "quick",
]  # fmt: skip

OUTCOMES = """
import pytest

@pytest.mark.requirement("CPIN-CORE-001")
def test_assertion_is_a_failure():
    assert 1 == 2, "the node said 1"

@pytest.mark.requirement("CPIN-CORE-002")
def test_exception_is_an_error():
    raise KeyError("harness bug")

@pytest.mark.requirement("CPIN-CORE-003")
def test_skip_is_skipped():
    pytest.skip("precondition failed: nothing to test")

@pytest.mark.requirement("CPIN-CORE-005")
def test_pass_is_a_pass():
    assert True

@pytest.mark.requirement("CPIN-REG-001")
def test_of_another_role_is_deselected():
    raise AssertionError("must not run on a regional node")
"""


@pytest.fixture
def planted(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("CPIN_TEST_SECRET", "s3cret-value")
    return pytester


def _run(pytester: pytest.Pytester, source: str) -> tuple[pytest.RunResult, Path]:
    pytester.makepyfile(test_planted=source)
    reports = pytester.path / "reports"
    result = pytester.runpytest(*TARGET, "--report-dir", str(reports), "-p", "no:cacheprovider")
    return result, reports


def test_outcomes_map_to_verdicts_and_the_report_validates(planted: pytest.Pytester) -> None:
    result, reports = _run(planted, OUTCOMES)
    report = load(only_bundle(reports))
    assert schema_errors(report) == []
    found = verdicts(report)
    planted = ("CPIN-CORE-001", "CPIN-CORE-002", "CPIN-CORE-003", "CPIN-CORE-005")
    assert [found[i] for i in planted] == ["fail", "error", "skipped", "pass"]
    assert found["CPIN-REG-001"] == "not_applicable"
    assert found["CPIN-CORE-004"] == "untested"
    assert report["summary"]["overall"] == "not_certified"
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*outcome: not_certified (exit 1)*"])


def test_the_failure_message_becomes_the_reason(planted: pytest.Pytester) -> None:
    _, reports = _run(planted, OUTCOMES)
    entry = next(r for r in load(only_bundle(reports))["requirements"]
                 if r["id"] == "CPIN-CORE-001")  # fmt: skip
    assert "the node said 1" in entry["reason"]["en"]
    assert entry["tests"][0]["outcome"] == "failed"


def test_an_unknown_requirement_id_stops_collection(planted: pytest.Pytester) -> None:
    result, reports = _run(
        planted,
        """
import pytest

@pytest.mark.requirement("CPIN-CORE-999")
def test_x():
    pass
""",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown requirement ids CPIN-CORE-999*"])
    assert not list(reports.rglob("report.json"))


def test_an_unset_secret_variable_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_planted=OUTCOMES)
    result = pytester.runpytest(*TARGET, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*CPIN_TEST_SECRET is not set*"])


def test_without_a_target_the_plugin_stays_out_of_the_way(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    assert not (pytester.path / "reports").exists()


def test_no_secret_reaches_the_bundle(planted: pytest.Pytester) -> None:
    _, reports = _run(planted, OUTCOMES)
    bundle = only_bundle(reports)
    for path in bundle.rglob("*"):
        if path.is_file():
            assert "s3cret-value" not in path.read_text(encoding="utf-8", errors="replace"), path
