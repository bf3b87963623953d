"""The load generator's own ceiling beside the reference node's capacity: a report, never a test.

A capacity figure means something only when the load generator could have sent more. This
script measures both with the same code path `cpin load` uses (loadtests.run_load):

  * the generator's ceiling: one locust process (no workers), clients that never pause,
    against loadtests/stub_node.py, which answers every operation with the spec's example at
    once (so the stub, not a node's work, is all the server does);
  * the reference regional node's capacity: `cpin load --find-capacity` against a reference
    federation the script starts with `cpin federation up --base-port P` and stops afterwards.

CPU seconds of the generator and of the stub show which side limited the ceiling. The ratio of
the ceiling to the capacity says how far the generator was from being the bottleneck.

    .venv/bin/python scripts/bench_load.py [--base-port 8820] [--users 32] [--duration 15]

Ports: the federation on P..P+3, the stub on P+10; loopback only. Exit 0 whatever the figures;
1 if something broke.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtests.run import Client, LoadTarget, run_load

STUB_SECRET_ENV = "CPIN_BENCH_STUB_SECRET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-port", type=int, default=8820)
    parser.add_argument("--users", type=int, default=32, help="clients for the ceiling run")
    parser.add_argument("--duration", type=float, default=15, help="steady seconds (ceiling)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cpin-bench-load-"))
    ceiling = generator_ceiling(args.base_port + 10, args.users, args.duration, work)
    capacity, curve = node_capacity(args.base_port, work)
    print()
    print(f"load generator ceiling (1 locust process, {args.users} clients without pause, "
          f"stub node): {ceiling['rps']:.0f} requests/s, p50 {ceiling['p50Ms']:g} ms, "
          f"p99 {ceiling['p99Ms']:g} ms")  # fmt: skip
    print(f"  CPU over the run: generator {ceiling['generatorCpuS']:.1f} s, stub node "
          f"{ceiling['stubCpuS']:.1f} s, wall {ceiling['wallS']:.1f} s")  # fmt: skip
    limit = capacity.get("limitingRequirement", "none within the steps")
    print(f"reference regional node capacity: {capacity['usersWithinSlo']} users, "
          f"{capacity['rpsWithinSlo']:g} requests/s within every SLO (then: {limit})")  # fmt: skip
    for step in curve:
        mark = "held" if step["held"] else "broke " + ", ".join(step["broken"])
        print(f"  {step['users']:4} users {step['rps']:8.1f} rps  p50 {step['p50Ms']:5g}  "
              f"p95 {step['p95Ms']:5g}  p99 {step['p99Ms']:5g} ms  errors "
              f"{step['errorRatio']:.2%}  {mark}")  # fmt: skip
    top = max(step["rps"] for step in curve)
    print(f"ceiling / highest rps the node reached: {ceiling['rps'] / max(top, 1e-9):.0f}x")
    print(f"evidence: {work}")
    return 0


def generator_ceiling(port: int, users: int, duration: float, work: Path) -> dict[str, Any]:
    stub = subprocess.Popen(
        [sys.executable, "-m", "loadtests.stub_node", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait(f"{base_url}/v1/health", stub)
        os.environ[STUB_SECRET_ENV] = "stub"
        target = LoadTarget(base_url, "regional", Client("bench", STUB_SECRET_ENV))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        folder = run_load(target, users=users, spawn_rate=users, duration=duration,
                          user_rps=0, out=work / "ceiling")  # fmt: skip
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        stub_cpu = _cpu_seconds(stub.pid)
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    run = json.loads((folder / "perf.json").read_text(encoding="utf-8"))["runs"][0]
    generator = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {**run, "generatorCpuS": generator, "stubCpuS": stub_cpu, "wallS": wall}


def node_capacity(base_port: int, work: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ics_dir = work / "ics"
    log = (work / "federation.log").open("wb")
    federation = subprocess.Popen(
        [sys.executable, "-m", "cpin", "federation", "up", "--base-port", str(base_port),
         "--data", str(work / "federation"), "--ics-dir", str(ics_dir)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        secrets = ics_dir / "secrets.env"
        deadline = time.monotonic() + 120
        while not secrets.exists() or not secrets.read_text(encoding="utf-8"):
            if federation.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the federation did not start; see {log.name}")
            time.sleep(0.5)
        for line in secrets.read_text(encoding="utf-8").splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            os.environ[name] = value
        documents = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in ics_dir.glob("*.yaml")]
        regional = min((d for d in documents if d["node"]["role"] == "regional"),
                       key=lambda d: str(d["node"]["baseUrl"]))  # fmt: skip
        folder = run_load(LoadTarget.from_ics(regional), find_capacity=True,
                          out=work / "capacity")  # fmt: skip
    finally:
        federation.terminate()  # SIGTERM: it stops its nodes (SIGINT may be ignored in background)
        try:
            federation.wait(timeout=30)
        except subprocess.TimeoutExpired:
            federation.kill()
        log.close()
    document = json.loads((folder / "capacity.json").read_text(encoding="utf-8"))
    return document["capacity"], document["steps"]


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"bench_load: {exc}", file=sys.stderr)
        sys.exit(1)
