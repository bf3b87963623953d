"""`cpin demo` (and `make demo`): the reference federation on loopback, every node certified
end to end from an ICS as a vendor would write it, a summary, and the federation stopped.

Exit 0 when every node is certified, 1 when one is not, 3 when the federation or a run broke.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from conformance.runner import Run, run_in_subprocess
from cpin.ics_files import ics_documents, write_ics_files
from cpin.node_command import (
    DEMO_SECRET_ENV,
    LIMITED_SECRET_ENV,
    RunningFederation,
    UsageError,
    running_federation,
)
from reference_impl.demo import DEMO_CLIENT
from spec import default


def demo(base_port: int, report_dir: Path, budget: str, *, with_load: bool = True) -> int:
    console = Console(stderr=False, highlight=False)
    root = Path(tempfile.mkdtemp(prefix="cpin-demo-"))
    report_dir = report_dir.resolve()
    console.print(f"Starting the reference federation on 127.0.0.1:{base_port}-{base_port + 3}")
    runs: dict[str, tuple[str, str, Run, float]] = {}
    try:
        with running_federation(base_port, root / "federation", console.print) as federation:
            paths = write_ics_files(
                ics_documents(federation.demo, federation.codes, default(), budget), root / "ics"
            )
            env = {
                DEMO_SECRET_ENV: federation.demo.demo_secret,
                LIMITED_SECRET_ENV: federation.demo.limited_secret,
            }
            console.print(f"Seeding standing data: {_seed(federation)} records")
            for key, ics in paths.items():
                config = federation.demo.configs[key]
                console.print(f"Certifying {key} ({config.role}, {federation.codes[key]}) ...")
                started = time.monotonic()
                log = root / "logs" / f"{key}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(prefix="cpin-load-") as scratch:
                    perf = _load(ics, budget, Path(scratch), env) if with_load else None
                    run = run_in_subprocess(ics, report_dir, env=env, log=log, perf=perf)
                runs[key] = (config.role, federation.codes[key], run, time.monotonic() - started)
    except UsageError as exc:
        print(f"cpin demo: {exc}", file=sys.stderr)
        return 3
    console.print("The federation is stopped.")
    console.print(_summary(runs))
    for line in report_lines(runs):  # plain lines: a table cell would cut a long path
        print(line)
    outcomes = [run.report["summary"]["overall"] if run.report else "no report"
                for _, _, run, _ in runs.values()]  # fmt: skip
    if "no report" in outcomes:
        return 3
    return 0 if all(outcome == "certified" for outcome in outcomes) else 1


def _seed(federation: RunningFederation, copies: int = 3) -> int:
    """What a federation in service holds: each lower node registers the spec's example
    resources and identifiers through its API, and the run waits until the national index
    shows the resources. Without it a fresh national node has nothing to resolve or read, and
    its load run measures nothing."""
    examples = {path: _examples(path) for path in ("/v1/resources", "/v1/identifiers")}
    created = 0
    for config in federation.demo.configs.values():
        if config.role == "national":
            continue
        with httpx.Client(base_url=config.base_url, timeout=10) as client:
            token = client.post("/v1/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(DEMO_CLIENT, federation.demo.demo_secret)).json()  # fmt: skip
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            for path, bodies in examples.items():
                for body in bodies * copies:
                    created += client.post(path, json=body, headers=headers).status_code == 201
    _wait_for_index(federation)
    return created


def _examples(path: str) -> list[dict[str, object]]:
    content = default().openapi["paths"][path]["post"]["requestBody"]["content"]
    return [example["value"] for example in content["application/json"]["examples"].values()]


def _wait_for_index(federation: RunningFederation, seconds: float = 60) -> None:
    national = federation.demo.configs["national"]
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=national.base_url, timeout=10) as client:
        token = client.post("/v1/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(DEMO_CLIENT, federation.demo.demo_secret)).json()  # fmt: skip
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        while time.monotonic() < deadline:
            listed = client.get("/v1/resources", headers=headers).json().get("items", [])
            if listed:
                return
            time.sleep(1)


def _load(ics: Path, budget: str, scratch: Path, env: dict[str, str]) -> Path | None:
    """The node's load run (its secrets are in this process's environment only for it)."""
    from conformance.ics import load_ics
    from cpin.certify_command import load_run

    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return load_run(load_ics(ics, default()), budget, scratch)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _summary(runs: dict[str, tuple[str, str, Run, float]]) -> Table:
    table = Table(title="CPIN certification of the reference federation")
    for column in ("node", "role", "NodeCode", "outcome", "classes passed", "time"):
        table.add_column(column)
    for key, (role, code, run, seconds) in runs.items():
        report = run.report
        if report is None:
            table.add_row(key, role, code, "no report", "-", f"{seconds:.0f} s")
            continue
        must = [c for c in report["classes"] if c["mustPass"]]
        passed = sum(c["verdict"] in {"pass", "warn"} for c in must)
        table.add_row(key, role, code, report["summary"]["overall"], f"{passed}/{len(must)}",
                      f"{seconds:.0f} s")  # fmt: skip
    return table


def report_lines(runs: dict[str, tuple[str, str, Run, float]]) -> list[str]:
    """Where each node's report is: the page if the run wrote one, else its folder."""
    lines = []
    for key, (_, _, run, _) in runs.items():
        page = run.folder / "report.html"
        lines.append(f"report of {key}: {page if page.is_file() else run.folder}")
    return lines
