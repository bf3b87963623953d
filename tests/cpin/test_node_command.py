"""`cpin node` and `cpin federation up` as users run them: real processes on loopback."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cpin.cli import main
from cpin.node_command import settle_heap
from tests.processes import ENV, free_block, token

OWNER = {"uscc": "91350100M000100Y43", "name": "福建闽算智造有限公司"}


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["node", "--role", "regional", "--port", "18601", "--data", "d"], "needs --upstream"),
        (["node", "--role", "national", "--port", "80", "--data", "d"], "not a port"),
        (["node", "--role", "galactic", "--port", "18601", "--data", "d"], "invalid choice"),
    ],
)
def test_node_usage_errors_are_one_line(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert complaint in err


def test_federation_up_resolves_an_industry_identifier_everywhere(tmp_path: Path) -> None:
    base = free_block(4)
    process = subprocess.Popen(
        [sys.executable, "-m", "cpin", "federation", "up", "--base-port", str(base),
         "--data", str(tmp_path)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_as_a_background_job,
    )  # fmt: skip
    try:
        lines = _read_until(process, "Ctrl-C stops", seconds=60)
        urls = {line.split()[0]: line.split()[-1] for line in lines if "http://" in line}
        secret = next(line.split()[5] for line in lines if line.startswith("demo client:"))
        assert set(urls) == {"national", "guangdong", "beijing", "guangdong-manufacturing"}
        industry = urls["guangdong-manufacturing"]
        registered = httpx.post(
            f"{industry}/v1/identifiers",
            json={"resType": "GPU", "owner": OWNER},
            headers=token(industry, "ids:write", secret),
        )
        assert registered.status_code == 201, registered.text
        identifier = registered.json()["identifier"]
        for key in ("national", "beijing"):
            answer = httpx.get(
                f"{urls[key]}/v1/identifiers/{identifier}",
                headers=token(urls[key], "ids:read", secret),
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["authority"] == "I44C3801D"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stdout is not None
            process.stdout.close()
    assert code == 0
    leftovers = subprocess.run(["pgrep", "-f", f"--data {tmp_path}/"], capture_output=True)
    assert leftovers.stdout == b""


def _as_a_background_job() -> None:
    """A job started with `&` by a non-interactive shell (CI) inherits SIGINT ignored; the
    command must still stop on SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _read_until(process: subprocess.Popen[str], marker: str, seconds: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("federation up ended early:\n" + "".join(lines))
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError("federation up did not finish starting:\n" + "".join(lines))


def test_settle_heap_leaves_start_up_objects_out_of_collections() -> None:
    built_at_start_up = {"spec": ["a", "b"]}
    assert any(o is built_at_start_up for o in gc.get_objects())
    settle_heap()
    try:
        assert gc.get_freeze_count() > 0
        assert not any(o is built_at_start_up for o in gc.get_objects())
    finally:
        gc.unfreeze()
