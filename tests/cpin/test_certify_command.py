"""`cpin certify` from the outside: usage errors before any test, and a run against nodes
that break below HTTP (tests/conformance/chaos.py) that still ends in budget with a report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conformance.chaos import chaos_server
from tests.conformance.reports import load, only_bundle, schema_errors, verdicts
from tests.processes import cpin_run

SECRET_ENV = {"CPIN_TEST_SECRET": "chaos-secret-value"}
# A quick run's 5 s request timeout, three strikes before the node counts as down, and every
# other request failing at once: far inside this bound, which only catches a run that hangs.
RUN_BOUND_S = 150


def _flags(url: str, report_dir: Path) -> list[str]:
    return ["certify", "--target", url, "--role", "regional", "--node-code", "R4400001E",
            "--client-id", "conformance", "--client-secret-env", "CPIN_TEST_SECRET",
            "--budget", "quick", "--report-dir", str(report_dir)]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["certify"], "give --ics FILE"),
        (["certify", "--ics", "/nonexistent/ics.yaml"], "cannot read ICS"),
        (["certify", "--target", "http://127.0.0.1:9"], "--target needs --role"),
        (["certify", "--target", "ftp://x", "--role", "regional", "--node-code", "R4400001E",
          "--client-id", "a", "--client-secret-env", "CPIN_TEST_SECRET"], "node/baseUrl"),
        (["certify", "--target", "http://127.0.0.1:9", "--role", "regional", "--node-code",
          "R4400001E", "--client-id", "a", "--client-secret-env", "CPIN_UNSET_VARIABLE"],
         "CPIN_UNSET_VARIABLE is not set"),
        (["certify", "--target", "http://127.0.0.1:9", "--role", "regional", "--node-code",
          "R4400001E", "--client-id", "a", "--client-secret-env", "CPIN_TEST_SECRET",
          "--option", "selection"], "not offered to the regional role"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = cpin_run(*args, "--report-dir", str(tmp_path), env=SECRET_ENV)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.rglob("report.json"))


def test_an_invalid_ics_file_names_the_member(tmp_path: Path) -> None:
    ics = tmp_path / "ics.yaml"
    ics.write_text("ics: '1.0'\nnode: {role: regional}\n", encoding="utf-8")
    result = cpin_run("certify", "--ics", str(ics), env=SECRET_ENV)
    assert result.returncode == 2
    assert str(ics) in result.stderr and "required property" in result.stderr


@pytest.mark.parametrize("behaviour", ["hang", "reset", "garbage"])  # truncated: as garbage
def test_a_broken_node_ends_in_budget_with_a_report(behaviour: str, tmp_path: Path) -> None:
    with chaos_server(behaviour) as url:
        started = time.monotonic()
        result = cpin_run(*_flags(url, tmp_path), env=SECRET_ENV, timeout=RUN_BOUND_S + 30)
        elapsed = time.monotonic() - started
    assert elapsed < RUN_BOUND_S, f"the run took {elapsed:.0f} s"
    report = load(only_bundle(tmp_path))
    assert schema_errors(report) == []
    assert report["summary"]["overall"] in {"not_certified", "incomplete"}
    assert result.returncode == report["summary"]["exitCode"] in {1, 3}
    assert verdicts(report)["CPIN-CORE-001"] in {"fail", "error"}
    core = next(r for r in report["requirements"] if r["id"] == "CPIN-CORE-001")
    assert core["evidence"], "a verdict about a broken node must show the exchange"
    assert "serviceInfoProblem" in report["target"]
