"""`cpin load` end to end against the stub node (loopback, seconds per run), and the parts of
loadtests.run that need no process. locust runs only in the subprocesses `cpin load` starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cpin.cli import main
from loadtests.run import Client, LoadTarget, scenarios
from loadtests.slo import perf_outcomes
from tests.processes import cpin_run, free_port

SECRET_ENV = "CPIN_LOAD_TEST_SECRET"
SHORT = ["--users", "8", "--spawn-rate", "8", "--duration", "3"]


@contextmanager
def stub_node(*delays: str) -> Iterator[str]:
    """loadtests/stub_node.py on a free loopback port, with per-operation delays; its URL."""
    port = free_port()
    arguments = [f"--delay={delay}" for delay in delays]
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtests.stub_node", "--port", str(port), *arguments],
        stdout=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{base_url}/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the stub node did not start"
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()  # SIGTERM: SIGINT is ignored when the tests run in the background
        process.wait(timeout=10)


@pytest.fixture
def slow_resolution() -> Iterator[str]:
    with stub_node("resolveIdentifier=250") as base_url:  # CPIN-PERF-001: p99 <= 200 ms
        yield base_url


@pytest.fixture
def stub() -> Iterator[str]:
    with stub_node() as base_url:
        yield base_url


def load(base_url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cpin_run("load", "--target", base_url, "--role", "regional", "--client-id", "demo",
                    "--client-secret-env", SECRET_ENV, "--out", str(out), *SHORT, *extra,
                    env={SECRET_ENV: "stub-secret"}, timeout=90)  # fmt: skip


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_broken_slo_exits_1_naming_the_requirement(slow_resolution: str, tmp_path: Path) -> None:
    done = load(slow_resolution, tmp_path / "out")
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cpin load: SLO not met: ") and "CPIN-PERF-001" in last
    perf = read(tmp_path / "out" / "perf.json")  # run_load checked it against report.json
    outcome = perf_outcomes(perf)["CPIN-PERF-001"][0]
    assert outcome[:2] == ("load::standard::CPIN-PERF-001", "failed")
    for evidence in ("locust_stats.csv", "locust_stats_history.csv", "report.html"):
        assert (tmp_path / "out" / "standard" / evidence).exists()
    series = read(tmp_path / "out" / "timeseries.json")["runs"][0]
    assert series["scenario"] == "standard" and series["total"]


def test_two_workers_add_up(stub: str, tmp_path: Path) -> None:
    done = load(stub, tmp_path / "out", "--workers", "2")
    assert done.returncode in (0, 1), done.stderr
    run = read(tmp_path / "out" / "perf.json")["runs"][0]
    workers = read(tmp_path / "out" / "run.json")["runs"][0]["workers"]
    assert len(workers) == 2 and all(count > 0 for count in workers.values())
    assert sum(workers.values()) == run["requests"]


def test_an_unreachable_target_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "x")
    code = main(["load", "--target", f"http://127.0.0.1:{free_port()}", "--role", "regional",
                 "--client-id", "demo", "--client-secret-env", SECRET_ENV,
                 "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "cannot reach" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["load", "--role", "regional"],
        [
            "load",
            "--target",
            "ftp://x",
            "--role",
            "regional",
            "--client-id",
            "a",
            "--client-secret-env",
            "HOME",
        ],
        ["load", "--ics", "x.yaml", "--target", "http://127.0.0.1:1"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cpin load: error:")


def test_scenarios_follow_the_declared_capacity() -> None:
    client = Client("demo", SECRET_ENV)
    bare = LoadTarget("http://127.0.0.1:1", "regional", client)
    assert [(s.name, s.users) for s in scenarios(bare, None, None, 30, False)] == [("standard", 10)]
    declared = LoadTarget("http://127.0.0.1:1", "regional", client,
                          capacity={"rps": 40, "users": 40})  # fmt: skip
    assert [(s.name, s.users) for s in scenarios(declared, None, None, 30, False)] == [
        ("standard", 40),
        ("overload", 80),
    ]
    assert [s.name for s in scenarios(declared, None, None, None, True)] == ["capacity"]


def test_target_from_an_ics() -> None:
    document = {
        "node": {"role": "industry", "baseUrl": "http://127.0.0.1:1", "nodeCode": "I44C3801D"},
        "credentials": {"clientId": "demo", "clientSecret": {"env": SECRET_ENV}},
        "options": ["scheduling"],
        "capacity": {"rps": 5, "users": 5},
        "federation": {
            "upstreamUrl": "http://127.0.0.1:2",
            "upstreamCredentials": {"clientId": "up", "clientSecret": {"env": "UP"}},
        },
    }
    target = LoadTarget.from_ics(document)
    assert (target.role, target.options, target.capacity) == ("industry", ("scheduling",),
                                                              {"rps": 5, "users": 5})  # fmt: skip
    assert target.upstream_client == Client("up", "UP")
