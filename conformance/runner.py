"""`cpin certify` as a function: the suite run through pytest, the outcome read back.

pytest runs in this process for `cpin certify` (its progress is the user's progress bar) and
in a child process for callers that certify many times (`cpin demo`, `cpin selftest`), so one
run's imports and state never leak into the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE_INI = Path(__file__).with_name("suite") / "pytest.ini"

__all__ = ["Run", "pytest_args", "run_in_process", "run_in_subprocess"]


@dataclass(frozen=True)
class Run:
    exit_code: int
    folder: Path

    @property
    def report(self) -> dict[str, Any] | None:
        path = self.folder / "report.json"
        if not path.is_file():
            return None
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return document


def pytest_args(
    ics: Path,
    report_dir: Path,
    run_id: str,
    *,
    budget: str | None = None,
    seed: int | None = None,
    keyword: str | None = None,
    quiet: bool = True,
    perf: Path | None = None,
) -> list[str]:
    args = ["-c", str(SUITE_INI), "--rootdir", str(SUITE_INI.parent), "--pyargs",
            "conformance.suite", "--ics", str(ics), "--report-dir", str(report_dir),
            "--run-id", run_id,
            "--junitxml", str(report_dir / run_id / "junit.xml")]  # fmt: skip
    if budget:
        args += ["--budget", budget]
    if seed is not None:
        args += ["--seed", str(seed)]
    if keyword:
        args += ["-k", keyword]
    if perf is not None:
        args += ["--perf", str(perf)]
    if quiet:
        args += ["-q"]
    return args


def run_in_process(ics: Path, report_dir: Path, run_id: str | None = None, **options: Any) -> Run:
    import pytest

    run_id = run_id or str(uuid.uuid4())
    code = int(pytest.main(pytest_args(ics, report_dir, run_id, **options)))
    return Run(code, report_dir / run_id)


def run_in_subprocess(
    ics: Path,
    report_dir: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
    log: Path | None = None,
    **options: Any,
) -> Run:
    run_id = str(uuid.uuid4())
    command = [sys.executable, "-m", "pytest", *pytest_args(ics, report_dir, run_id, **options)]
    output = log.open("wb") if log else subprocess.DEVNULL
    try:
        completed = subprocess.run(
            command,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    finally:
        if log:
            output.close()  # type: ignore[union-attr]
    return Run(completed.returncode, report_dir / run_id)
