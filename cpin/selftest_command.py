"""`cpin selftest`: certify the reference federation, clean and with each planted fault, and
print the kill matrix (issue 6). A fault is killed when the run gives `fail` (or `warn`, for a
SHOULD) to at least one requirement the fault says it breaks.

The federation starts once; for each fault only the node it is planted in restarts, on its own
data, with that fault and no other; afterwards it restarts clean.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conformance.runner import Run, run_in_subprocess
from cpin.ics_files import ics_documents, write_ics_files
from cpin.node_command import RunningFederation, running_federation
from reference_impl.faults import Fault, catalogue
from spec import default

NODE_FOR_ROLE = {"regional": "guangdong", "industry": "guangdong-manufacturing",
                 "national": "national"}  # fmt: skip
ROLE_PREFERENCE = ("regional", "industry", "national")
FINDINGS = {"fail", "warn"}


@dataclass(frozen=True)
class Trial:
    fault: Fault | None
    node: str
    run: Run
    found: tuple[str, ...]  # requirement ids with fail/warn
    broken: tuple[str, ...]  # requirement ids with error/skipped (the run could not judge)

    @property
    def killed(self) -> bool:
        return self.fault is not None and bool(set(self.fault.breaks) & set(self.found))


def list_faults() -> int:
    for fault in catalogue().values():
        print(f"{fault.name:40} {','.join(fault.roles):27} {' '.join(fault.breaks)}")
        print(f"{'':40} {fault.summary}")
    return 0


def selftest(
    names: list[str], *, baseline: bool, budget: str, keyword: str | None, base_port: int,
    out: Path | None,
) -> int:  # fmt: skip
    known = catalogue()
    faults = [known[name] for name in names] if names else []
    root = Path(tempfile.mkdtemp(prefix="cpin-selftest-"))
    trials: list[Trial] = []
    with running_federation(base_port, root / "federation", _quiet) as federation:
        ics = write_ics_files(
            ics_documents(federation.demo, federation.codes, default(), budget), root / "ics"
        )
        env = _secrets(federation)
        if baseline or not faults:
            for key in ics:
                trials.append(_certify(None, key, ics[key], root, env, keyword))
                _print(trials[-1])
        for index, fault in enumerate(faults):
            following = faults[index + 1] if index + 1 < len(faults) else None
            trials.append(plant_and_certify(federation, fault, ics, root, env, keyword,
                                            restart_clean=following is None
                                            or node_for(following) != node_for(fault)))  # fmt: skip
            _print(trials[-1])
    matrix = kill_matrix(trials)
    print(matrix)
    if out is not None:
        out.write_text(matrix, encoding="utf-8")
    clean = all(not t.found and not t.broken for t in trials if t.fault is None)
    killed = all(t.killed for t in trials if t.fault is not None)
    return 0 if clean and killed else 1


def plant_and_certify(
    federation: RunningFederation,
    fault: Fault,
    ics: dict[str, Path],
    root: Path,
    env: dict[str, str],
    keyword: str | None = None,
    *,
    restart_clean: bool = True,
) -> Trial:
    """Restart the fault's node with the fault and certify it with the tests of the
    requirements the fault breaks (or `keyword`); then restart it clean, unless the caller's
    next fault restarts the same node anyway."""
    key = node_for(fault)
    federation.restart(key, (fault.name,))
    try:
        return _certify(fault, key, ics[key], root, env, keyword or keyword_for(fault))
    finally:
        if restart_clean:
            federation.restart(key)


def node_for(fault: Fault) -> str:
    return NODE_FOR_ROLE[next(r for r in ROLE_PREFERENCE if r in fault.roles)]


def keyword_for(fault: Fault) -> str:
    """The suite modules with a test of a requirement the fault breaks: a fault is killed by
    failing one of its own requirements, so the other tests cannot decide it."""
    from conformance.suite_index import modules_for

    return " or ".join(sorted(modules_for(set(fault.breaks)))) or "no_test_of_these_ids"


def _quiet(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _secrets(federation: RunningFederation) -> dict[str, str]:
    from cpin.node_command import DEMO_SECRET_ENV, LIMITED_SECRET_ENV

    return {DEMO_SECRET_ENV: federation.demo.demo_secret,
            LIMITED_SECRET_ENV: federation.demo.limited_secret}  # fmt: skip


def _certify(
    fault: Fault | None, key: str, ics: Path, root: Path, env: dict[str, str], keyword: str | None
) -> Trial:
    name = fault.name if fault else "clean"
    log = root / "logs" / f"{key}-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    run = run_in_subprocess(ics, root / "reports", env=env, keyword=keyword, log=log)
    report = run.report or {"requirements": []}
    found = tuple(r["id"] for r in report["requirements"] if r["verdict"] in FINDINGS)
    broken = tuple(r["id"] for r in report["requirements"] if r["verdict"] in {"error", "skipped"})
    return Trial(fault, key, run, found, broken)


def _print(trial: Trial) -> None:
    label = trial.fault.name if trial.fault else "(no fault)"
    if trial.fault is None:
        state = "clean" if not trial.found and not trial.broken else "NOT CLEAN"
    else:
        state = "killed" if trial.killed else "SURVIVED"
    print(f"{label:40} {trial.node:24} {state:9} fail/warn: {' '.join(trial.found) or '-'}"
          f"  error/skipped: {' '.join(trial.broken) or '-'}  report: {trial.run.folder}",
          file=sys.stderr, flush=True)  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One line of the kill matrix."""

    fault: str
    node: str
    breaks: tuple[str, ...]
    found: tuple[str, ...]

    @property
    def killed(self) -> bool:
        return bool(set(self.breaks) & set(self.found))


def kill_matrix(trials: list[Trial]) -> str:
    rows = [Row(t.fault.name, t.node, t.fault.breaks, t.found) for t in trials if t.fault]
    return matrix_markdown(rows)


def matrix_markdown(rows: list[Row]) -> str:
    """The matrix as Markdown: one row per fault, the kill rate, and every automated MUST
    requirement that no killed fault breaks (the suite's known gaps)."""
    lines = ["| fault | node | breaks | suite failed | killed |", "|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: r.fault):
        found = " ".join(row.found) or "-"
        killed = "yes" if row.killed else "**no**"
        lines.append(
            f"| `{row.fault}` | {row.node} | {' '.join(row.breaks)} | {found} | {killed} |"
        )
    if rows:
        count = sum(row.killed for row in rows)
        lines += ["", f"Kill rate: {count}/{len(rows)} ({100 * count / len(rows):.0f}%)", ""]
        proven = {i for row in rows if row.killed for i in set(row.breaks) & set(row.found)}
        lines += _gaps(proven)
    return "\n".join(lines) + "\n"


def _gaps(proven: set[str]) -> list[str]:
    musts = [r for r in default().requirements
             if r["level"] == "MUST" and r["test"]["method"] == "automated"]  # fmt: skip
    gaps = [r for r in musts if r["id"] not in proven and r["class"] != "perf"]
    perf = [r["id"] for r in musts if r["class"] == "perf"]
    judged = len(musts) - len(perf)
    lines = [
        f"Automated MUST requirements proven by a killed fault: {judged - len(gaps)} of "
        f"{judged} (the {len(perf)} perf MUSTs are judged by load runs, not planted faults)."
    ]
    if gaps:
        lines += ["", "Known gaps (no planted fault proves the suite catches a breach):", ""]
        lines += [f"- {r['id']} {r['title']['en']}" for r in gaps]
    return lines
