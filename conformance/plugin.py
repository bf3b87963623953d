"""The pytest plugin: requirement markers, applicability, outcomes, the certification and its
report. Registered as the `cpin` pytest11 entry point; inert unless a target is given.

    collection   every suite test names catalogue ids (@pytest.mark.requirement); an unknown
                 id or a test without one is a usage error; a test none of whose ids apply to
                 the role and options is deselected (the report still lists those ids as
                 not_applicable, with the reason from certification.yaml)
    each test    the exchanges it caused are its evidence; its outcome is
                     passed | failed (AssertionError: a finding about the node)
                     | skipped (pytest.skip: a precondition failed)
                     | error (anything else: the harness or the connection broke)
    session end  certification.evaluate(...) over every outcome -> reports -> exit code
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import allure
import pytest

from conformance.session import Certifier, RequirementFailure, build_certifier

__all__ = ["CERTIFIER"]

CERTIFIER = pytest.StashKey[Certifier]()
_SUITE_PACKAGE = "conformance.suite"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cpin", "CPIN certification (cpin certify)")
    group.addoption("--ics", metavar="FILE", help="implementation conformance statement")
    group.addoption("--target-url", metavar="URL", help="node base URL (instead of --ics)")
    group.addoption("--role", choices=["national", "regional", "industry"])
    group.addoption("--node-code", metavar="CODE", help="the NodeCode the node should report")
    group.addoption("--client-id", metavar="ID", help="OAuth client of the harness")
    group.addoption("--client-secret-env", metavar="VAR", help="env variable with its secret")
    group.addoption("--option", action="append", default=[], metavar="NAME")
    group.addoption("--budget", choices=["quick", "standard", "thorough"])
    group.addoption("--report-dir", metavar="DIR", default="reports", help="default: reports/")
    group.addoption("--seed", type=int, metavar="N", help="seed of generated tests")
    group.addoption("--run-id", metavar="UUID", help="name of the bundle folder (default: new)")
    group.addoption("--perf", metavar="DIR", help="a load run's folder (perf.json) to join")


@pytest.hookimpl(tryfirst=True)  # before allure-pytest reads its option
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): catalogue ids this test verifies")
    config.addinivalue_line("markers", "runs_last: runs after every other test of the suite")
    config.addinivalue_line("markers", "made_up_codes: names NodeCodes nobody registered")
    if config.getoption("ics") or config.getoption("target_url"):
        certifier = build_certifier(config)
        config.stash[CERTIFIER] = certifier
        if hasattr(config.option, "allure_report_dir") and not config.option.allure_report_dir:
            config.option.allure_report_dir = str(certifier.folder / "allure-results")


def _certifier(config: pytest.Config) -> Certifier | None:
    return config.stash.get(CERTIFIER, None)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    suite = [item for item in items if _in_suite(item)]
    if not suite:
        return
    certifier = _certifier(config)
    if certifier is None:
        raise pytest.UsageError("the CPIN suite needs a target: --ics FILE or --target-url URL")
    keep, drop = [], []
    for item in items:
        if not _in_suite(item):
            keep.append(item)
            continue
        ids = _requirement_ids(item)
        certifier.check_known(item.nodeid, ids)
        applicable = certifier.applicable(ids)
        if applicable:
            item.stash[_IDS] = applicable
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    certifier.selected = len([i for i in keep if _in_suite(i)])


_IDS = pytest.StashKey[tuple[str, ...]]()


def _in_suite(item: pytest.Item) -> bool:
    """A suite test: in conformance.suite, or anywhere if it names requirements (a team's own
    tests can join the certification by marking them)."""
    module = getattr(item, "module", None)
    in_package = module is not None and module.__name__.startswith(_SUITE_PACKAGE)
    return in_package or item.get_closest_marker("requirement") is not None


def _requirement_ids(item: pytest.Item) -> tuple[str, ...]:
    ids: list[str] = []
    for mark in item.iter_markers("requirement"):
        ids.extend(mark.args)
    return tuple(dict.fromkeys(ids))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    certifier = _certifier(item.config)
    if certifier is None or _IDS not in item.stash:
        return (yield)
    if certifier.out_of_time():
        item.session.shouldstop = "the run's time budget is spent; the remaining tests do not run"
        certifier.aborted = True
        return True
    certifier.recorder.current_test = item.nodeid
    _label_for_allure(certifier, item.stash[_IDS])
    try:
        return (yield)
    finally:
        certifier.recorder.current_test = "(session)"


def _label_for_allure(certifier: Certifier, ids: tuple[str, ...]) -> None:
    """Allure groups by class (feature) and requirement (story); without it every test of the
    suite would sit in one flat list."""
    for requirement in ids:
        entry = certifier.requirement(requirement)
        allure.dynamic.feature(entry["class"])  # type: ignore[no-untyped-call]
        allure.dynamic.story(requirement)  # type: ignore[no-untyped-call]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    certifier = _certifier(item.config)
    if certifier is None or _IDS not in item.stash:
        return report
    outcome, message = _classify(report, call)
    if outcome is not None:
        failure = call.excinfo.value if call.excinfo is not None else None
        certifier.record(item.nodeid, item.stash[_IDS], outcome, message, report.duration,
                         failure if isinstance(failure, RequirementFailure) else None)  # fmt: skip
    return report


def _classify(report: pytest.TestReport, call: pytest.CallInfo[None]) -> tuple[str | None, str]:
    """The test outcome of one phase, or None when the phase decides nothing (a passed setup)."""
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return "skipped", reason.removeprefix("Skipped: ")
    if report.failed:
        error = call.excinfo.value if call.excinfo is not None else None
        text = f"{error}" if error is not None else str(report.longrepr)
        if isinstance(error, AssertionError) and report.when == "call":
            return "failed", text.splitlines()[0] if text else "assertion failed"
        name = type(error).__name__ if error is not None else "error"
        return "error", f"{report.when}: {name}: {text.splitlines()[0] if text else ''}"
    if report.when == "call":
        return "passed", ""
    return None, ""


@pytest.hookimpl(trylast=True)  # after junitxml has written its file: the manifest covers it
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    certifier = _certifier(session.config)
    if certifier is None or certifier.selected is None:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop:
        certifier.aborted = True
    started = time.monotonic()
    result = certifier.finish()
    certifier.log(f"report written in {time.monotonic() - started:.1f} s")
    session.exitstatus = result.exit_code


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    certifier = _certifier(config)
    if certifier is None or certifier.result is None:
        return
    result = certifier.result
    terminalreporter.section("CPIN certification")
    for line in certifier.summary_lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"outcome: {result.outcome} (exit {result.exit_code})")
    terminalreporter.write_line(f"report: {Path(certifier.folder) / 'report.html'}")
