"""`cpin load`: headless locust runs against one node, judged by the PERF requirements of spec/.

Exit codes: 0 every SLO held (with --find-capacity: some step held them all); 1 an SLO broke
or could not be measured (the requirement ids are named on stderr); 2 usage error, or a target
that is unreachable, is not the role it is said to be or refuses the client (one line, before
any load is sent); 3 the tool broke.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.run import Client, LoadError, LoadTarget, run_load
from loadtests.slo import describe

EXIT_NOT_MET = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class LoadRequest:
    ics: Path | None
    target: str | None
    role: str | None
    client_id: str | None
    client_secret_env: str | None
    users: int | None
    spawn_rate: float | None
    duration: float | None
    workers: int
    out: Path | None
    find_capacity: bool


def load(request: LoadRequest) -> int:
    try:
        target = _target(request)
        folder = run_load(
            target,
            users=request.users,
            spawn_rate=request.spawn_rate,
            duration=request.duration,
            workers=request.workers,
            out=request.out,
            find_capacity=request.find_capacity,
            announce=lambda line: print(f"cpin load: {line}", flush=True),
        )
    except LoadError as exc:
        print(f"cpin load: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    perf: dict[str, Any] = json.loads((folder / "perf.json").read_text(encoding="utf-8"))
    for run in perf["runs"]:
        _print_run(run)
    if capacity := perf.get("capacity"):
        curve = json.loads((folder / "capacity.json").read_text(encoding="utf-8"))["steps"]
        for step in curve:
            print(f"  step {step['users']:4} users {step['rps']:8.1f} rps ok  p50 "
                  f"{step['p50Ms']:g}  p95 {step['p95Ms']:g}  p99 {step['p99Ms']:g} ms  errors "
                  f"{step['errorRatio']:.2%}  "
                  + ("held" if step["held"] else f"broke {', '.join(step['broken'])}"))  # fmt: skip
        limit = capacity.get("limitingRequirement")
        print(f"capacity: {capacity['usersWithinSlo']} users, {capacity['rpsWithinSlo']:g} "
              f"rps within every SLO" + (f" (then {limit} broke)" if limit else ""))  # fmt: skip
    print(f"perf.json, timeseries.json and locust's reports: {folder}")
    if capacity:  # a search: it succeeds when some step held every SLO
        if capacity["usersWithinSlo"]:
            return 0
        limit = capacity.get("limitingRequirement", "an SLO")
        print(f"cpin load: SLO not met at the first step: {limit}", file=sys.stderr)
        return EXIT_NOT_MET
    results = [r for run in perf["runs"] for r in run["sloResults"]]
    broken = sorted({r["requirement"] for r in results if r["verdict"] in ("fail", "warn")})
    unmeasured = sorted({r["requirement"] for r in results if r["verdict"] == "error"})
    if broken or unmeasured:
        parts = [f"SLO not met: {', '.join(broken)}"] if broken else []
        parts += [f"not measured: {', '.join(unmeasured)}"] if unmeasured else []
        print(f"cpin load: {'; '.join(parts)}", file=sys.stderr)
        return EXIT_NOT_MET
    return 0


def _target(request: LoadRequest) -> LoadTarget:
    flags = (request.target, request.role, request.client_id, request.client_secret_env)
    if request.ics is not None:
        if any(flags):
            raise LoadError("give --ics or --target/--role/--client-id/--client-secret-env")
        return LoadTarget.from_ics(_ics(request.ics))
    missing = [name for name, value in zip(("--target", "--role", "--client-id",
                                            "--client-secret-env"), flags, strict=True)
               if not value]  # fmt: skip
    if missing:
        raise LoadError(f"without --ics, give {', '.join(missing)}")
    assert request.target and request.role and request.client_id and request.client_secret_env
    if not request.target.startswith(("http://", "https://")):
        raise LoadError(f"--target {request.target!r} is not an http(s) URL")
    return LoadTarget(request.target, request.role,
                      Client(request.client_id, request.client_secret_env))  # fmt: skip


def _ics(path: Path) -> dict[str, Any]:
    """The ICS, validated by the harness's own rules (schema, options, attestations)."""
    from conformance.ics import IcsError, load_ics
    from spec import default

    try:
        document: dict[str, Any] = load_ics(path, default()).document
    except IcsError as exc:
        raise LoadError(str(exc)) from None
    return document


def _print_run(run: dict[str, Any]) -> None:
    print(f"{run['scenario']}: {run['users']} users, {run['durationS']:g} s steady: "
          f"{run['requests']} requests, {run['rps']:g} rps ok, p50 {run['p50Ms']:g} ms, "
          f"p95 {run['p95Ms']:g} ms, p99 {run['p99Ms']:g} ms, "
          f"errors {run['errorRatio']:.2%}")  # fmt: skip
    for result in run["sloResults"]:
        print(f"  {result['verdict']:5} {result['requirement']}  {describe(result)}")
