"""`cpin load` as a function: check the target, run locust in subprocesses, write perf.json.

This module never imports locust: it starts `python -m locust` (a local runner, or a master and
K workers) once per scenario, waits for it within a bound, and reads back the results file the
locust side writes when it quits. Judging is done here again from the raw windows, with the same
functions, so perf.json never depends on what a locust process decided.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from loadtests import slo
from loadtests.mix import MIX_FILE, Plan, mix
from spec import Spec, default

__all__ = ["Client", "LoadError", "LoadTarget", "run_load"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
CAPACITY_LOCUSTFILE = Path(__file__).with_name("locustfile_capacity.py")
CAPACITY = "capacity"
_PREFLIGHT_TIMEOUT = 5.0
_STOP_GRACE_S = 60.0  # locust's own stop, final worker reports and the HTML report


class LoadError(Exception):
    """The target or the settings are unusable: one line, found before locust starts."""


@dataclass(frozen=True)
class Client:
    """An OAuth2 client: the secret only by the name of the variable that holds it."""

    client_id: str
    secret_env: str
    token_url: str | None = None


@dataclass(frozen=True)
class LoadTarget:
    """The node under load, as an ICS or the command line describes it."""

    base_url: str
    role: str
    client: Client
    options: tuple[str, ...] | None = None  # None: the options the node's service-info lists
    capacity: dict[str, Any] | None = None  # ics.json#/$defs/Capacity
    upstream_url: str | None = None
    upstream_client: Client | None = None
    budget: str = "standard"

    @classmethod
    def from_ics(cls, document: dict[str, Any]) -> LoadTarget:
        """From a validated ICS document (ics.json)."""
        federation = document.get("federation", {})
        upstream = federation.get("upstreamCredentials")
        return cls(
            base_url=document["node"]["baseUrl"],
            role=document["node"]["role"],
            client=_client(document["credentials"]),
            options=tuple(document.get("options", [])),
            capacity=document.get("capacity"),
            upstream_url=federation.get("upstreamUrl"),
            upstream_client=_client(upstream) if upstream else None,
            budget=document.get("budget", "standard"),
        )


def _client(entry: dict[str, Any]) -> Client:
    client_id = entry["clientId"]
    if isinstance(client_id, dict):
        client_id = os.environ.get(client_id["env"], "")
        if not client_id:
            raise LoadError(f"environment variable {entry['clientId']['env']} is not set")
    return Client(client_id, entry["clientSecret"]["env"], entry.get("tokenUrl"))


@dataclass(frozen=True)
class Scenario:
    """One locust run: its name (mix.yaml `scenarios`, or capacity) and its load."""

    name: str
    users: int
    spawn_rate: float
    duration_s: float

    @property
    def locustfile(self) -> Path:
        return CAPACITY_LOCUSTFILE if self.name == CAPACITY else LOCUSTFILE

    @property
    def limit_s(self) -> float:
        """How long the run may take before it counts as hung."""
        if self.name == CAPACITY:
            steps = mix()["capacity"]
            planned = float(steps["maxSteps"]) * float(steps["stepS"])
        else:
            planned = self.users / self.spawn_rate + float(mix()["warmupS"]) + self.duration_s
        return planned + _STOP_GRACE_S + float(mix()["seed"]["cleanupS"])


def run_load(
    target: LoadTarget,
    *,
    users: int | None = None,
    spawn_rate: float | None = None,
    duration: float | None = None,
    workers: int = 0,
    out: Path | None = None,
    find_capacity: bool = False,
    user_rps: float | None = None,
    spec: Spec | None = None,
    announce: Callable[[str], None] = lambda line: None,
) -> Path:
    """Run the load scenarios against the target; return the folder holding perf.json
    (report.json#/$defs/Perf), timeseries.json, capacity.json (with find_capacity) and each
    run's locust CSV, HTML and log. `user_rps` overrides mix.yaml's pace of each client (0: no
    pause at all, which measures the generator's own ceiling). Raises LoadError before any
    load when the target is unreachable, is not the role it is said to be, or refuses the
    client."""
    spec = spec or default()
    info = preflight(target)
    options = target.options if target.options is not None else tuple(info.get("options", []))
    plan = Plan.of(spec, target.role, list(options))
    folder = out or Path("reports") / f"load-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MIX_FILE, folder / "mix.yaml")
    runs, capacity, evidence = [], None, []
    for scenario in scenarios(target, users, spawn_rate, duration, find_capacity):
        announce(f"{scenario.name}: {scenario.users} users for {scenario.duration_s:g} s"
                 if scenario.name != CAPACITY else "capacity: rising step load")  # fmt: skip
        arguments = _cpin_arguments(scenario, target, options, user_rps)
        results = _run_locust(scenario, target, arguments, workers, folder / scenario.name)
        evidence.append(_evidence(scenario, results))
        if scenario.name == CAPACITY:
            run, capacity = _capacity(plan, results, folder)
        else:
            window = slo.Window.from_json(results["window"])
            run = perf_run(plan, scenario.name, window, scenario.spawn_rate, target.capacity)
        runs.append(run)
    perf: dict[str, Any] = {"runs": runs}
    if capacity is not None:
        perf["capacity"] = capacity
    _check(spec, perf)
    _write(folder / "perf.json", perf)
    series = [{"scenario": e["scenario"], **_series(folder / e["scenario"])} for e in evidence]
    _write(folder / "timeseries.json", {"runs": series})
    _write(folder / "run.json", {"target": target.base_url, "role": target.role,
                                 "nodeCode": info.get("nodeCode"), "workers": workers,
                                 "runs": evidence})  # fmt: skip
    return folder


def preflight(target: LoadTarget) -> dict[str, Any]:
    """service-info (reachable, and the role it is said to be) and one token, before any load."""
    for client in filter(None, (target.client, target.upstream_client)):
        if not os.environ.get(client.secret_env):
            raise LoadError(f"environment variable {client.secret_env} (client secret) is not set")
    base = target.base_url.rstrip("/")
    try:
        answer = httpx.get(f"{base}/v1/service-info", timeout=_PREFLIGHT_TIMEOUT)
    except httpx.HTTPError as exc:
        raise LoadError(f"cannot reach {base}: {exc or type(exc).__name__}") from None
    if answer.status_code != 200:
        raise LoadError(f"{base}/v1/service-info answered {answer.status_code}: not a CPIN node?")
    try:
        info: dict[str, Any] = answer.json()
    except ValueError:
        raise LoadError(f"{base}/v1/service-info is not JSON: not a CPIN node?") from None
    if info.get("role") != target.role:
        raise LoadError(f"{base} says it is a {info.get('role')} node, not {target.role}")
    token_url = target.client.token_url or f"{base}/v1/oauth/token"
    secret = os.environ[target.client.secret_env]
    try:
        token = httpx.post(token_url, data={"grant_type": "client_credentials"},
                           auth=(target.client.client_id, secret),
                           timeout=_PREFLIGHT_TIMEOUT)  # fmt: skip
    except httpx.HTTPError as exc:
        raise LoadError(f"cannot reach {token_url}: {exc or type(exc).__name__}") from None
    if token.status_code != 200:
        raise LoadError(f"{token_url} refused client {target.client.client_id!r}: "
                        f"HTTP {token.status_code}")  # fmt: skip
    return info


def scenarios(
    target: LoadTarget,
    users: int | None,
    spawn_rate: float | None,
    duration: float | None,
    find_capacity: bool,
) -> list[Scenario]:
    """The standard scenario at the declared capacity (or --users), and every other scenario
    of mix.yaml at its multiple of the declared capacity when one is declared."""
    settings = mix()
    if find_capacity:
        steps = settings["capacity"]
        return [Scenario(CAPACITY, int(steps["stepUsers"]), float(steps["stepUsers"]),
                         float(steps["stepS"]))]  # fmt: skip
    durations = settings["durationS"]
    seconds = duration or float(durations.get(target.budget, durations["standard"]))
    declared = target.capacity["users"] if target.capacity else None
    chosen = []
    for name, scenario in settings["scenarios"].items():
        load = float(scenario["load"])
        if name == "standard" and users:
            count = users
        elif declared:
            count = math.ceil(load * declared)
        elif load == 1:
            count = int(settings["defaultUsers"])
        else:
            continue
        rate = spawn_rate or max(1.0, count / 5)
        chosen.append(Scenario(name, count, rate, seconds))
    return chosen


def perf_run(
    plan: Plan,
    scenario: str,
    window: slo.Window,
    spawn_rate: float,
    capacity: dict[str, Any] | None,
    min_samples: int = 1,
) -> dict[str, Any]:
    """A PerfRun (report.json#/$defs/PerfRun): the window's totals and its SLO results. The
    run's `rps` is that of successful requests, as the catalogue's `rps` metric defines it."""
    total = window.totals()

    def metric(name: str) -> float:
        return round(slo.measure(window, "*", name) or 0.0, 3)

    return {
        "scenario": scenario,
        "users": max(1, window.users),
        "spawnRate": spawn_rate,
        "durationS": max(0.001, round(window.seconds, 3)),
        "requests": total.requests,
        "failures": total.failures,
        "rps": metric("rps"),
        "p50Ms": metric("p50_ms"),
        "p95Ms": metric("p95_ms"),
        "p99Ms": metric("p99_ms"),
        "errorRatio": round(total.failures / total.requests, 6) if total.requests else 0.0,
        "sloResults": slo.judge(plan, scenario, window, capacity, min_samples),
    }


def _capacity(
    plan: Plan, results: dict[str, Any], folder: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run at the highest step that held (or the first step, when none did), the Capacity
    object, and capacity.json with every step: the curve."""
    steps = [(step, slo.Window.from_json(step["window"])) for step in results["steps"]]
    if not steps:
        raise RuntimeError(f"the step load measured no step; see {folder / CAPACITY}")
    rate, least = float(mix()["capacity"]["stepUsers"]), int(mix()["capacity"]["minSamples"])
    curve = []
    for step, window in steps:
        row = perf_run(plan, CAPACITY, window, rate, None, least)
        curve.append({key: row[key] for key in ("users", "durationS", "requests", "failures",
                                                "rps", "p50Ms", "p95Ms", "p99Ms", "errorRatio")}
                     | {"held": not step["broken"], "broken": step["broken"]})  # fmt: skip
    held = [index for index, (step, _) in enumerate(steps) if not step["broken"]]
    shown = steps[held[-1]][1] if held else steps[0][1]
    run = perf_run(plan, CAPACITY, shown, rate, None, least)
    capacity: dict[str, Any] = {
        "scenario": CAPACITY,
        "usersWithinSlo": curve[held[-1]]["users"] if held else 0,
        "rpsWithinSlo": curve[held[-1]]["rps"] if held else 0.0,
    }
    if limiting := next((step["broken"][0] for step, _ in steps if step["broken"]), None):
        capacity["limitingRequirement"] = limiting
    _write(folder / "capacity.json", {"capacity": capacity, "steps": curve,
                                      "settings": mix()["capacity"]})  # fmt: skip
    return run, capacity


def _run_locust(
    scenario: Scenario, target: LoadTarget, arguments: list[str], workers: int, folder: Path
) -> dict[str, Any]:
    """One locust run in subprocesses, bounded in time; its results file."""
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "results.json"
    results.unlink(missing_ok=True)
    command = [sys.executable, "-m", "locust", "-f", str(scenario.locustfile), "--headless",
               "--host", target.base_url, "--csv", str(folder / "locust"),
               "--csv-full-history", "--html", str(folder / "report.html"), "--only-summary",
               "--logfile", str(folder / "locust.log"), *arguments,
               "--cpin-results", str(results)]  # fmt: skip
    if scenario.name != CAPACITY:
        run_time = math.ceil(scenario.users / scenario.spawn_rate + float(mix()["warmupS"])
                             + scenario.duration_s)  # fmt: skip
        command += ["-u", str(scenario.users), "-r", str(scenario.spawn_rate), "-t", f"{run_time}s"]
    children: list[subprocess.Popen[bytes]] = []
    try:
        if workers:
            port = _free_port()
            command += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                        str(port), "--expect-workers", str(workers),
                        "--expect-workers-max-wait", "30"]  # fmt: skip
            children.append(_spawn(command, folder / "master.out"))
            for index in range(workers):
                worker = [sys.executable, "-m", "locust", "-f", str(scenario.locustfile),
                          "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                          "--logfile", str(folder / f"worker-{index + 1}.log")]  # fmt: skip
                children.append(_spawn(worker, folder / f"worker-{index + 1}.out"))
        else:
            children.append(_spawn(command, folder / "locust.out"))
        _wait(children, time.monotonic() + scenario.limit_s)
    finally:
        _stop(children)
    if not results.exists():
        raise RuntimeError(f"locust wrote no results; see {folder / 'locust.log'}")
    document: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    return document


def _cpin_arguments(
    scenario: Scenario, target: LoadTarget, options: tuple[str, ...], user_rps: float | None
) -> list[str]:
    arguments = ["--cpin-role", target.role, "--cpin-options", ",".join(options),
                 "--cpin-scenario", "standard" if scenario.name == CAPACITY else scenario.name,
                 "--cpin-client-id", target.client.client_id,
                 "--cpin-secret-env", target.client.secret_env,
                 "--cpin-namespace", f"cpin-load-{datetime.now(UTC):%Y%m%dT%H%M%S}"]  # fmt: skip
    if target.client.token_url:
        arguments += ["--cpin-token-url", target.client.token_url]
    if target.upstream_url and target.upstream_client:
        arguments += ["--cpin-upstream", target.upstream_url,
                      "--cpin-upstream-client-id", target.upstream_client.client_id,
                      "--cpin-upstream-secret-env", target.upstream_client.secret_env]  # fmt: skip
    if target.capacity:
        arguments += ["--cpin-capacity", json.dumps(target.capacity)]
    if user_rps is not None:
        arguments += ["--cpin-user-rps", str(user_rps)]
    return arguments


def _spawn(command: list[str], output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as file:  # the child keeps its own descriptor
        return subprocess.Popen(command, stdout=file, stderr=subprocess.STDOUT)


def _wait(children: list[subprocess.Popen[bytes]], deadline: float) -> None:
    """The first child is the one that ends the run (local runner or master); workers follow
    it once it tells them to quit, after removing what they created."""
    for child in children:
        remaining = deadline - time.monotonic()
        try:
            child.wait(timeout=max(1.0, remaining))
        except subprocess.TimeoutExpired:
            raise RuntimeError("locust did not finish in time; it was stopped") from None


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _evidence(scenario: Scenario, results: dict[str, Any]) -> dict[str, Any]:
    return {
        "scenario": scenario.name,
        "users": scenario.users,
        "spawnRate": scenario.spawn_rate,
        "durationS": scenario.duration_s,
        "workers": results["workers"],
        "errors": results["errors"],
        "exceptions": results["exceptions"],
    }


def _series(folder: Path) -> dict[str, Any]:
    """Requests/s, failures/s and p50/p95/p99 over time, for charts, from locust's full
    history (percentiles over locust's sliding window of recent requests)."""
    path = folder / "locust_stats_history.csv"
    total: list[dict[str, Any]] = []
    operations: dict[str, list[dict[str, Any]]] = {}
    if not path.exists():
        return {"total": total, "operations": operations}
    with path.open(encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            point = {
                "t": int(row["Timestamp"]),
                "users": int(row["User Count"]),
                "rps": float(row["Requests/s"]),
                "failuresPerS": float(row["Failures/s"]),
                "p50Ms": _number(row["50%"]),
                "p95Ms": _number(row["95%"]),
                "p99Ms": _number(row["99%"]),
                "requests": int(row["Total Request Count"]),
                "failures": int(row["Total Failure Count"]),
            }
            if row["Name"] == "Aggregated":
                total.append(point)
            else:
                operations.setdefault(f"{row['Type']} {row['Name']}", []).append(point)
    return {"total": total, "operations": operations}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _check(spec: Spec, perf: dict[str, Any]) -> None:
    """perf.json must be what report.json promises; anything else is a bug of this kit.
    (jsonschema is imported here: its format checkers take seconds to import.)"""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    schema = {"$ref": spec.uri("schemas/report.json") + "#/$defs/Perf"}
    validator = Draft202012Validator(schema, registry=spec.registry())
    if error := best_match(validator.iter_errors(perf)):
        where = "/".join(str(part) for part in error.absolute_path)
        raise RuntimeError(f"perf.json does not match report.json: {where}: {error.message}")


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
