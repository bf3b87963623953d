"""One certification run: its inputs, what the tests observed, and its outcome.

The plugin drives it; the suite's fixtures read from it. It knows nothing of pytest beyond
`pytest.Config` for its options, so the verdict logic can be exercised without running tests.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.certification import Certification, TestOutcome, evaluate
from conformance.evidence import Exchange, Recorder
from conformance.ics import Ics, IcsError, ics_from_flags, load_ics
from spec import Spec, default

__all__ = ["Certifier", "RequirementFailure", "TestRecord", "build_certifier"]

BUDGETS = Path(__file__).with_name("budgets.yaml")


class RequirementFailure(AssertionError):
    """A failure that bears on some of a test's requirements only: `failed` ids fail; the
    test's other ids keep the outcome they would have had (used by fuzzing, where each check
    maps to its own requirements and every check ran). When `failed` names none of the test's
    own ids, the failure counts against all of them: a mistake never turns into a pass."""

    def __init__(self, message: str, failed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.failed = failed


@dataclass(frozen=True)
class TestRecord:
    __test__ = False  # a result, not a test class
    nodeid: str
    requirements: tuple[str, ...]
    outcome: str
    message: str
    duration_ms: float
    evidence: tuple[Exchange, ...]
    files: tuple[tuple[str, str], ...] = ()  # (bundle path, summary) of evidence files


_SLO_OUTCOMES = {"pass": "passed", "fail": "failed", "warn": "failed", "error": "error"}
LOAD_EVIDENCE = "evidence/load"


class Certifier:
    def __init__(self, spec: Spec, ics: Ics, folder: Path, seed: int, budget: str) -> None:
        self.spec = spec
        self.ics = ics
        self.folder = folder
        self.seed = seed
        self.budget_name = budget
        self.budget: dict[str, Any] = yaml.safe_load(BUDGETS.read_text(encoding="utf-8"))[budget]
        self.run_id = folder.name
        self.created_at = datetime.now(UTC)
        self.deadline = time.monotonic() + float(self.budget["runLimitS"])
        self.recorder = Recorder(secrets=ics.secrets())
        self.records: list[TestRecord] = []
        self.selected: int | None = None
        self.aborted = False
        self.result: Certification | None = None
        self.extras: dict[str, Any] = {}  # report sections contributed by tests (fuzzing, ...)
        self.load_folder: Path | None = None
        self._known = {entry["id"]: entry for entry in spec.requirements}
        self._probe = evaluate(spec, ics.role, ics.options, {})
        self._log: list[str] = []

    def check_known(self, nodeid: str, ids: tuple[str, ...]) -> None:
        if not ids:
            raise pytest.UsageError(f"{nodeid} verifies no requirement (@pytest.mark.requirement)")
        unknown = [i for i in ids if i not in self._known]
        if unknown:
            raise pytest.UsageError(f"{nodeid} names unknown requirement ids {', '.join(unknown)}")

    def requirement(self, requirement_id: str) -> dict[str, Any]:
        return dict(self._known[requirement_id])

    def applicable(self, ids: tuple[str, ...]) -> tuple[str, ...]:
        verdicts = {r.id: r.verdict for r in self._probe.requirements}
        return tuple(i for i in ids if verdicts[i] != "not_applicable")

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def record(
        self,
        nodeid: str,
        ids: tuple[str, ...],
        outcome: str,
        message: str,
        duration_s: float,
        failure: RequirementFailure | None,
    ) -> None:
        previous = next((r for r in self.records if r.nodeid == nodeid), None)
        if previous is not None:  # a later phase (teardown) can only make a pass worse
            if previous.outcome != "passed" or outcome == "passed":
                return
            self.records.remove(previous)
        evidence = tuple(self.recorder.for_test(nodeid))
        if failure is not None and set(failure.failed) & set(ids):
            failed = tuple(i for i in ids if i in failure.failed)
            others = tuple(i for i in ids if i not in failure.failed)
            if others:
                self.records.append(TestRecord(nodeid, others, "passed", "", duration_s * 1000,
                                               evidence))  # fmt: skip
            ids = failed
        if ids:
            self.records.append(TestRecord(nodeid, ids, outcome, message, duration_s * 1000,
                                           evidence))  # fmt: skip

    def join_load(self, folder: Path) -> None:
        """A load run's results (`cpin load` / loadtests: perf.json, report.json#/$defs/Perf)
        join this run: each SLO result is the outcome of one test of its requirement, and the
        run's files become evidence in the bundle."""
        perf = _read_perf(folder, self.spec)
        applicable = set(self.applicable(tuple(self._known)))
        for run in perf["runs"]:
            for slo in run["sloResults"]:
                requirement = slo["requirement"]
                if requirement not in applicable:
                    continue
                message = (f"{slo['metric']} of {slo['operation']}: measured {slo['measured']}, "
                           f"required {slo['op']} {slo['threshold']}")  # fmt: skip
                evidence = ((f"{LOAD_EVIDENCE}/perf.json", f"{run['scenario']} load run"),)
                self.records.append(TestRecord(
                    f"load::{run['scenario']}::{requirement}", (requirement,),
                    _SLO_OUTCOMES.get(slo["verdict"], "error"),
                    "" if slo["verdict"] == "pass" else message,
                    float(run["durationS"]) * 1000, (), evidence,
                ))  # fmt: skip
        self.extras["perf"] = perf
        self.load_folder = folder

    def outcomes(self) -> dict[str, list[TestOutcome]]:
        by_requirement: dict[str, list[TestOutcome]] = defaultdict(list)
        for record in self.records:
            for requirement in record.requirements:
                by_requirement[requirement].append(
                    TestOutcome(
                        record.nodeid, record.outcome, record.duration_ms, record.message or None
                    )
                )
        return by_requirement

    def evaluate(self) -> Certification:
        attested = [a["requirement"] for a in self.ics.document.get("attestations", [])]
        return evaluate(self.spec, self.ics.role, self.ics.options, self.outcomes(),
                        attested=attested, run_aborted=self.aborted)  # fmt: skip

    def finish(self) -> Certification:
        from conformance.report import write_bundle

        self.result = self.evaluate()
        write_bundle(self, self.result)
        return self.result

    def summary_lines(self) -> list[str]:
        if self.result is None:
            return []
        return [
            f"{c.klass:15} {c.verdict:15} {'must pass' if c.must_pass else ''}"
            for c in self.result.classes
        ]

    def log(self, line: str) -> None:
        self._log.append(f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}")

    @property
    def log_lines(self) -> list[str]:
        return list(self._log)


def _read_perf(folder: Path, spec: Spec) -> dict[str, Any]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    from spec import ID_BASE

    try:
        perf: dict[str, Any] = json.loads((folder / "perf.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--perf {folder}: no readable perf.json ({exc})") from None
    validator = Draft202012Validator({"$ref": ID_BASE + "schemas/report.json#/$defs/Perf"},
                                     registry=spec.registry())  # fmt: skip
    error = best_match(validator.iter_errors(perf))
    if error is not None:
        raise pytest.UsageError(f"--perf {folder}/perf.json: {error.message}")
    return perf


def build_certifier(config: pytest.Config) -> Certifier:
    spec = default()
    try:
        ics = _ics(config, spec)
        ics.credentials()  # an unset secret variable is a usage error, before any test runs
    except IcsError as exc:
        raise pytest.UsageError(str(exc)) from None
    budget = config.getoption("budget") or ics.budget
    seed = config.getoption("seed")
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    run_id = config.getoption("run_id") or str(uuid.uuid4())
    try:
        run_id = str(uuid.UUID(run_id))
    except ValueError:
        raise pytest.UsageError(f"--run-id {run_id!r} is not a UUID") from None
    folder = Path(config.getoption("report_dir")).resolve() / run_id
    certifier = Certifier(spec, ics, folder, seed, budget)
    if config.getoption("perf"):
        certifier.join_load(Path(config.getoption("perf")))
    return certifier


def _ics(config: pytest.Config, spec: Spec) -> Ics:
    path = config.getoption("ics")
    if path:
        return load_ics(Path(path), spec)
    missing = [flag for flag, name in (("--role", "role"), ("--node-code", "node_code"),
               ("--client-id", "client_id"), ("--client-secret-env", "client_secret_env"))
               if not config.getoption(name)]  # fmt: skip
    if missing:
        raise IcsError(f"--target-url needs {', '.join(missing)} (or give --ics FILE)")
    return ics_from_flags(
        spec,
        target=config.getoption("target_url"),
        role=config.getoption("role"),
        node_code=config.getoption("node_code"),
        client_id=config.getoption("client_id"),
        secret_env=config.getoption("client_secret_env"),
        options=list(config.getoption("option")),
        budget=config.getoption("budget"),
    )
