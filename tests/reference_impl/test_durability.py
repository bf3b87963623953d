"""An acknowledged write is never lost: across a clean restart, and across SIGKILL under load.

Real `cpin node` processes (a national node for onboarding, a regional node under test):
SQLite's WAL with synchronous=FULL, committed before the 201 is sent, is what is on trial.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reference_impl.demo import layout
from tests.processes import cpin, free_port, running, stop, token, wait_serving

OWNER = {"uscc": "9144030071526726XG", "name": "广东粤算科技有限公司"}
WRITERS = 6
LOAD_SECONDS = 2.0


class Pair:
    """A national node and one regional node under it, restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.national_url = f"http://127.0.0.1:{free_port()}"
        self.regional_port = free_port()
        self.url = f"http://127.0.0.1:{self.regional_port}"
        guangdong = next(n for n in layout()["nodes"] if n["key"] == "guangdong")
        self.applicant = root / "applicant.yaml"
        details = {key: guangdong[key] for key in ("name", "applicant", "contact")}
        self.applicant.write_text(yaml.safe_dump(details, allow_unicode=True), encoding="utf-8")
        port = self.national_url.rsplit(":", 1)[1]
        national_data = str(root / "national")
        self.national = cpin(
            "node", "--role", "national", "--port", port, "--data", national_data,
            log=root / "national.log",
        )  # fmt: skip
        wait_serving(self.national_url, self.national)
        self.regional = self.start_regional()

    def start_regional(self) -> Any:
        process = cpin("node", "--role", "regional", "--port", str(self.regional_port),
                       "--data", str(self.root / "regional"), "--upstream", self.national_url,
                       "--province", "44", "--applicant", str(self.applicant),
                       log=self.root / "regional.log")  # fmt: skip
        wait_serving(self.url, process)
        return process

    def register(self, client: httpx.Client, headers: dict[str, str]) -> str | None:
        try:
            answer = client.post(f"{self.url}/v1/identifiers", headers=headers,
                                 json={"resType": "GPU", "owner": OWNER})  # fmt: skip
        except httpx.HTTPError:
            return None  # not acknowledged: the node died before answering
        return answer.json()["identifier"] if answer.status_code == 201 else None

    def all_identifiers(self) -> list[str]:
        headers, found, cursor = token(self.url, "ids:read"), [], None
        while True:
            query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = httpx.get(f"{self.url}/v1/identifiers{query}", headers=headers).json()
            found += [item["identifier"] for item in page["items"]]
            cursor = page.get("nextCursor")
            if not cursor:
                return found


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    nodes = Pair(tmp_path)
    with running(nodes.national):
        yield nodes
        stop(nodes.regional)


def test_restart_keeps_every_record(pair: Pair) -> None:
    headers = token(pair.url, "ids:write")
    with httpx.Client() as client:
        written = [pair.register(client, headers) for _ in range(20)]
    code = httpx.get(f"{pair.url}/v1/service-info").json()["nodeCode"]
    stop(pair.regional)
    pair.regional = pair.start_regional()
    assert httpx.get(f"{pair.url}/v1/service-info").json()["nodeCode"] == code
    assert sorted(pair.all_identifiers()) == sorted(w for w in written if w)


def test_sigkill_under_concurrent_writes_loses_no_acknowledged_id(pair: Pair) -> None:
    headers = token(pair.url, "ids:write")
    acknowledged: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + LOAD_SECONDS

    def write() -> None:
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                identifier = pair.register(client, headers)
                if identifier is None:
                    return
                with lock:
                    acknowledged.append(identifier)

    writers = [threading.Thread(target=write) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    time.sleep(LOAD_SECONDS / 2)
    pair.regional.send_signal(signal.SIGKILL)
    pair.regional.wait()
    for writer in writers:
        writer.join(timeout=10)
    assert len(acknowledged) > WRITERS  # the load really ran before the kill

    pair.regional = pair.start_regional()
    stored = pair.all_identifiers()
    assert len(stored) == len(set(stored)), "a serial was handed out twice"
    assert set(acknowledged) <= set(stored), "an acknowledged registration was lost"
    read = token(pair.url, "ids:read")
    for identifier in acknowledged[-5:]:
        assert httpx.get(f"{pair.url}/v1/identifiers/{identifier}", headers=read).status_code == 200
