"""Identifier resolution benchmark of the reference node (issue 3): a report, never a test.

Timing targets live here and only here, as printed figures: shared machines are too noisy for
a test to assert them. One run, every server with the same uvicorn settings (those of
`cpin node`, see scripts/_bench_server.py), prints:

  * requests/s, p50 and p99 of GET /v1/identifiers/{id} on the reference node, of a bare ASGI
    endpoint answering the same bytes, and their ratio (target: node/bare >= 0.5);
  * resolution p50 with 1,000 and with 1,000,000 registered identifiers (target: within 1.3x).

The registries are written straight into SQLite before their node starts, with the node's
own schema and writing code. Requests go to a fixed-seed random sample of existing
identifiers: local resolution reads the table (the node's cache holds remote answers only),
so no hot key flatters the large registry. The contenders run back to back, in rotating
order, for several rounds; the table quotes the median of the rounds. Client and server CPU
time show whether the load generator, not the server, was the bottleneck: the default client
is a minimal HTTP/1.1 one (scripts/_bench_client.py), as httpx's own CPU cost per request
would make it the bottleneck in front of the bare endpoint (`--client httpx` shows it).

    .venv/bin/python scripts/bench_resolution.py            # 10^3 and 10^6: ~1.5 min on 2 CPUs
    .venv/bin/python scripts/bench_resolution.py --quick    # 10^3 and 10^5: about a minute

Exit 0 whatever the figures; 1 if something broke (a server did not start, a request failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

import httpx
import uvicorn
from _bench_client import CLIENTS, ClientError, connections, drive
from _bench_server import NODE_CODE

from reference_impl.api import identification
from reference_impl.node import timestamp
from reference_impl.store import Store
from spec import default

SERVER = Path(__file__).with_name("_bench_server.py")
OWNER = {"uscc": "9144030071526726XG", "name": "广东粤算科技有限公司"}
SMALL, LARGE, QUICK_LARGE = 1_000, 1_000_000, 100_000
RATIO_TARGET, GROWTH_TARGET = 0.5, 1.3
BATCH = 10_000  # identifiers written per transaction while building a registry
POOL = 20_000  # distinct identifiers each registry is queried with (all of them if fewer)
RATE_LIMIT = 1_000_000_000  # per minute: the limiter still runs, but never answers 429 here
START_TIMEOUT, STOP_TIMEOUT, REQUEST_TIMEOUT = 60.0, 10.0, 30.0


@dataclass(frozen=True)
class Target:
    label: str
    store: int | None  # registered identifiers; None for the bare endpoint
    base_url: str
    process: subprocess.Popen[bytes]
    paths: list[str]  # the sample of identifiers to resolve, as request paths


@dataclass(frozen=True)
class Sample:
    rps: float
    p50: float  # seconds
    p99: float
    client_cpu: float  # CPU seconds per wall second (1.0 = one core busy)
    server_cpu: float | None


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    root = args.data or Path(tempfile.mkdtemp(prefix="cpin-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    began = time.monotonic()
    try:
        _settings(args)
        rng = random.Random(args.seed)
        stores = {size: root / f"ids-{size}" for size in (SMALL, args.large)}
        pools = {size: _sample(_build(folder, size), size, rng) for size, folder in stores.items()}
        secret = secrets.token_urlsafe(24)
        targets = [_start_node(size, folder, pools[size], secret, processes)
                   for size, folder in stores.items()]  # fmt: skip
        answer = _record_answer(targets[0], _token(targets[0].base_url, secret), root / "answer")
        targets.insert(0, _start_bare(answer, targets[0].paths, processes))
        results = _rounds(targets, secret, args, rng)
        _report(targets, results, args.large)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, ClientError, OSError, TimeoutError, httpx.HTTPError) as exc:
        print(f"bench_resolution: {exc}", file=sys.stderr)
        _show_logs(root)
        return 1
    finally:
        _stop(processes)
        if args.data is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nruntime {time.monotonic() - began:.0f} s")
    return 0


class BenchError(Exception):
    """Something broke: the figures would mean nothing."""


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"large registry of {QUICK_LARGE:,} instead of {LARGE:,}")  # fmt: skip
    parser.add_argument(
        "--large", type=int, metavar="N", help=f"large registry (default {LARGE:,})"
    )
    parser.add_argument("--client", choices=CLIENTS, default=CLIENTS[0],
                        help="load generator (see scripts/_bench_client.py)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=16, metavar="C")
    parser.add_argument("--requests", type=int, default=20_000, metavar="N", help="per measurement")
    parser.add_argument("--warmup", type=int, default=500, metavar="N", help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="keep registries and logs here, and reuse registries found here "
                             "(default: a temporary folder, removed afterwards)")  # fmt: skip
    args = parser.parse_args(argv)
    args.large = args.large or (QUICK_LARGE if args.quick else LARGE)
    for name in ("large", "concurrency", "requests", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if args.large <= SMALL:
        parser.error(f"--large must exceed {SMALL:,}")
    return args


def _settings(args: argparse.Namespace) -> None:
    loop = "uvloop" if find_spec("uvloop") else "asyncio"  # what uvicorn's "auto" picks
    http = "httptools" if find_spec("httptools") else "h11"
    print(f"Python {platform.python_version()}, uvicorn {uvicorn.__version__} ({loop} loop, "
          f"{http}), one worker per server, log level warning; {os.cpu_count()} CPUs shared "
          f"by client and servers")  # fmt: skip
    client = "raw HTTP/1.1 on asyncio" if args.client == "raw" else f"httpx {httpx.__version__}"
    print(f"client: {client}, keep-alive, concurrency {args.concurrency}; "
          f"{args.requests:,} requests per measurement after {args.warmup:,} warm-up; "
          f"{args.rounds} rounds in rotating order; seed {args.seed}")  # fmt: skip
    print(f"node: regional {NODE_CODE}, rate limit raised to {RATE_LIMIT:,}/min (the limiter "
          f"still runs), bearer token from its token endpoint on every request\n")  # fmt: skip


def _build(folder: Path, count: int) -> Path:
    """A registry of `count` active identifiers, written as registerIdentifier writes them
    (identification.allocate + its record writer), BATCH per transaction; reused if present."""
    path = folder / "node.sqlite3"
    if path.exists():
        store = Store(path)
        found = store.row("SELECT COUNT(*) AS n FROM identifiers")
        store.close()
        if found is None or found["n"] != count:
            raise BenchError(f"{path} exists but does not hold exactly {count:,} identifiers")
        print(f"registry of {count:,} identifiers: reused {path}")
        return path
    started = time.perf_counter()
    types = default().codes("resource-type")
    now = timestamp(datetime.now(UTC))
    store = Store(path)
    try:
        for first in range(0, count, BATCH):
            with store.transaction() as db:
                for number in range(first, min(count, first + BATCH)):
                    res_type = types[number % len(types)]
                    identifier = identification.allocate(db, NODE_CODE, res_type)
                    identification.write_record(db, {
                        "identifier": identifier, "resType": res_type, "issuer": NODE_CODE,
                        "owner": OWNER, "state": "active",
                        "description": f"Benchmark resource {number}",
                        "createdAt": now, "updatedAt": now,
                    })  # fmt: skip
    finally:
        store.close()
    print(f"registry of {count:,} identifiers: built in {time.perf_counter() - started:.1f} s "
          f"({BATCH:,} per transaction)")  # fmt: skip
    return path


def _sample(path: Path, count: int, rng: random.Random) -> list[str]:
    """POOL identifiers drawn at random from the whole registry (write order = `seq`)."""
    chosen = rng.sample(range(1, count + 1), min(POOL, count))
    store = Store(path)
    try:
        found: list[str] = []
        for first in range(0, len(chosen), 500):
            part = chosen[first : first + 500]
            rows = store.rows(
                f"SELECT identifier FROM identifiers WHERE seq IN ({','.join('?' * len(part))})",
                tuple(part),
            )
            found.extend(row["identifier"] for row in rows)
    finally:
        store.close()
    if len(found) != len(chosen):
        raise BenchError(f"{path}: expected seq 1..{count}; rebuild it")
    found.sort()
    rng.shuffle(found)
    return found


def _start_node(
    size: int,
    folder: Path,
    identifiers: list[str],
    secret: str,
    processes: list[subprocess.Popen[bytes]],
) -> Target:
    port, nobody = _free_port(), _free_port()  # nobody listens on its upstream's port
    upstream, limit = f"http://127.0.0.1:{nobody}", str(RATE_LIMIT)
    arguments = ["node", "--port", str(port), "--data", str(folder),
                 "--upstream", upstream, "--rate-limit", limit]  # fmt: skip
    process = _spawn(arguments, folder / "server.log", secret)
    processes.append(process)
    base_url = f"http://127.0.0.1:{port}"
    _wait_serving(base_url, process)
    paths = [f"/v1/identifiers/{identifier}" for identifier in identifiers]
    return Target("reference node", size, base_url, process, paths)


def _start_bare(answer: Path, paths: list[str], processes: list[subprocess.Popen[bytes]]) -> Target:
    """The bare endpoint, asked the same paths as the small node (it answers any path alike)."""
    port = _free_port()
    process = _spawn(["bare", "--port", str(port), "--answer", str(answer)],
                     answer.parent / "bare.log", None)  # fmt: skip
    processes.append(process)
    base_url = f"http://127.0.0.1:{port}"
    _wait_serving(base_url, process)
    return Target("bare ASGI endpoint", None, base_url, process, paths)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(arguments: list[str], log: Path, secret: str | None) -> subprocess.Popen[bytes]:
    """A server process; a node gets the demo client's secret through its environment only."""
    env = {**os.environ, **({"CPIN_DEMO_CLIENT_SECRET": secret} if secret else {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, str(SERVER), *arguments], env=env,
                                stdout=output, stderr=subprocess.STDOUT)  # fmt: skip


def _wait_serving(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the server for {base_url} exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BenchError(f"the server for {base_url} did not start within {START_TIMEOUT:.0f} s")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Every server started, politely (SIGINT), then firmly."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in reversed(processes):
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _token(base_url: str, secret: str) -> str:
    answer = httpx.post(
        f"{base_url}/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "ids:read"},
        auth=("demo", secret),
        timeout=REQUEST_TIMEOUT,
    )
    if answer.status_code != 200:
        raise BenchError(f"{base_url} refused the demo client a token: {answer.status_code}")
    return str(answer.json()["access_token"])


def _record_answer(node: Target, token: str, folder: Path) -> Path:
    """One real resolution answer of the node: what the bare endpoint sends back verbatim."""
    answer = httpx.get(
        f"{node.base_url}{node.paths[0]}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT,
    )
    if answer.status_code != 200:
        raise BenchError(f"resolving {node.paths[0]} answered {answer.status_code}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "body").write_bytes(answer.content)
    kept = {k: v for k, v in answer.headers.items() if k.lower() not in {"date", "server"}}
    (folder / "headers.json").write_text(json.dumps(kept), encoding="utf-8")
    print(f"answer: {len(answer.content)} bytes, headers {', '.join(sorted(kept))}\n")
    return folder


def _rounds(
    targets: list[Target], secret: str, args: argparse.Namespace, rng: random.Random
) -> dict[int, list[Sample]]:
    """Every target once per round, the order rotated each round so drift hits all alike."""
    results: dict[int, list[Sample]] = {i: [] for i in range(len(targets))}
    for round_number in range(args.rounds):
        shift = round_number % len(targets)
        for index in [*range(shift, len(targets)), *range(shift)]:
            target = targets[index]
            token_source = target if target.store is not None else targets[1]
            headers = {
                "Authorization": f"Bearer {_token(token_source.base_url, secret)}",
                "Accept": "application/json",
            }
            paths = rng.choices(target.paths, k=args.warmup + args.requests)
            sample = asyncio.run(_measure(target, paths, headers, args))
            results[index].append(sample)
            print(f"round {round_number + 1}/{args.rounds}  {_name(target):34} "
                  f"{sample.rps:8,.0f} req/s  p50 {sample.p50 * 1e3:6.2f} ms  "
                  f"p99 {sample.p99 * 1e3:6.2f} ms  {_cpu(sample)}", flush=True)  # fmt: skip
    return results


async def _measure(
    target: Target, paths: list[str], headers: dict[str, str], args: argparse.Namespace
) -> Sample:
    failures: Counter[int] = Counter()
    latencies: list[float] = []
    port = int(target.base_url.rsplit(":", 1)[1])
    async with connections(
        args.client, "127.0.0.1", port, headers, args.concurrency, REQUEST_TIMEOUT
    ) as fetchers:
        await drive(fetchers, paths[: args.warmup], [], failures)
        client_before, server_before = _own_cpu(), _process_cpu(target.process.pid)
        started = time.perf_counter()
        await drive(fetchers, paths[args.warmup :], latencies, failures)
        wall = time.perf_counter() - started
        client_cpu, server_after = _own_cpu() - client_before, _process_cpu(target.process.pid)
    if failures:
        raise BenchError(f"{_name(target)} answered {dict(failures)} (status: count)")
    latencies.sort()
    server_cpu = (
        None if server_before is None or server_after is None else server_after - server_before
    )
    return Sample(
        rps=len(latencies) / wall,
        p50=_percentile(latencies, 0.50),
        p99=_percentile(latencies, 0.99),
        client_cpu=client_cpu / wall,
        server_cpu=None if server_cpu is None else server_cpu / wall,
    )


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest rank: the smallest latency at or above `fraction` of all requests."""
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a server process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _name(target: Target) -> str:
    return target.label if target.store is None else f"{target.label}, {target.store:,} ids"


def _cpu(sample: Sample) -> str:
    server = "?" if sample.server_cpu is None else f"{sample.server_cpu:.0%}"
    return f"CPU client {sample.client_cpu:.0%} server {server}"


def _report(targets: list[Target], results: dict[int, list[Sample]], large: int) -> None:
    medians = {}
    print(f"\nmedians of {len(results[0])} rounds (CPU: share of one core over the wall time)")
    print(
        f"{'':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  {'client CPU':>10} {'server CPU':>10}"
    )
    for index, target in enumerate(targets):
        samples = results[index]
        servers = [s.server_cpu for s in samples if s.server_cpu is not None]
        median = Sample(
            rps=statistics.median(s.rps for s in samples),
            p50=statistics.median(s.p50 for s in samples),
            p99=statistics.median(s.p99 for s in samples),
            client_cpu=statistics.median(s.client_cpu for s in samples),
            server_cpu=statistics.median(servers) if servers else None,
        )
        medians[index] = median
        server = "?" if median.server_cpu is None else f"{median.server_cpu:.0%}"
        print(f"{_name(target):34} {median.rps:8,.0f} {median.p50 * 1e3:8.2f} "
              f"{median.p99 * 1e3:8.2f}  {median.client_cpu:>10.0%} {server:>10}")  # fmt: skip
    bare, small, big = medians[0], medians[1], medians[2]
    ratio = small.rps / bare.rps
    growth = big.p50 / small.p50
    print()
    print(f"node/bare requests/s ({SMALL:,} ids):          {ratio:5.2f}   target >= "
          f"{RATIO_TARGET}  {'PASS' if ratio >= RATIO_TARGET else 'MISS'}")  # fmt: skip
    print(f"p50 with {large:,} / p50 with {SMALL:,} ids: {growth:5.2f}   target <= "
          f"{GROWTH_TARGET}  {'PASS' if growth <= GROWTH_TARGET else 'MISS'}"
          + ("" if large == LARGE else f"  (the target is set for {LARGE:,})"))  # fmt: skip
    print(f"(also: node/bare p50 {small.p50 / bare.p50:.2f}x, p99 {small.p99 / bare.p99:.2f}x)")
    paired = [n.rps / b.rps for b, n in zip(results[0], results[1], strict=True)]
    print(f"(node/bare requests/s within each round: {' '.join(f'{r:.2f}' for r in paired)};"
          " their spread is this machine's noise)")  # fmt: skip


def _show_logs(root: Path) -> None:
    for log in sorted(root.glob("**/*.log")):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        if lines:
            print(f"--- {log} (last lines)", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
