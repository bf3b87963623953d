"""`cpin node` and `cpin federation up`: run reference nodes on loopback.

Secrets reach a node only through its environment, never its arguments (which `ps` shows):
CPIN_DEMO_CLIENT_SECRET registers the client `demo` with every scope, CPIN_DEMO_LIMITED_SECRET
the client `demo-limited` with the read scopes only; CPIN_ONBOARDING_SECRET
registers the client `onboarding` (registry:apply) at a national node, and is the applicant's
credential at a regional or industry node on first start.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from reference_impl.demo import (
    DEMO_CLIENT,
    DEMO_LIMITED_CLIENT,
    ONBOARDING_CLIENT,
    DemoFederation,
    federation,
    layout,
    read_scopes,
)
from reference_impl.faults import catalogue
from reference_impl.federation import OnboardingError
from reference_impl.node import Node, NodeConfig
from spec import default

DEMO_SECRET_ENV = "CPIN_DEMO_CLIENT_SECRET"
LIMITED_SECRET_ENV = "CPIN_DEMO_LIMITED_SECRET"
ONBOARDING_SECRET_ENV = "CPIN_ONBOARDING_SECRET"
START_TIMEOUT = 30.0
GRACE_S = 5  # a stopping node waits this long for open (keep-alive) connections, then closes


class UsageError(Exception):
    """Bad arguments or configuration: one line, exit 2."""


def node_config(
    role: str,
    port: int,
    data: Path,
    upstream: str | None,
    province: str | None,
    industry: str | None,
    applicant_file: Path | None,
    faults: tuple[str, ...] = (),
) -> NodeConfig:
    unknown = sorted(set(faults) - set(catalogue()))
    if unknown:
        raise UsageError(f"unknown fault {unknown[0]!r} (`cpin selftest --list` lists them)")
    clients: list[tuple[str, str, set[str]]] = []
    if demo := os.environ.get(DEMO_SECRET_ENV):
        clients.append((DEMO_CLIENT, demo, set(default().scopes)))
    if limited := os.environ.get(LIMITED_SECRET_ENV):
        clients.append((DEMO_LIMITED_CLIENT, limited, read_scopes(default())))
    onboarding = os.environ.get(ONBOARDING_SECRET_ENV)
    config = NodeConfig(role=role, data_dir=data, port=port, upstream=upstream,
                        province=province, industry=industry, clients=clients,
                        faults=faults)  # fmt: skip
    if role == "national":
        config.node_code = str(layout()["national"]["nodeCode"])
        if onboarding:
            clients.append((ONBOARDING_CLIENT, onboarding, {"registry:apply"}))
    elif onboarding:
        config.applicant_client = (ONBOARDING_CLIENT, onboarding)
    if applicant_file is not None:
        details = _applicant(applicant_file)
        config.name, config.applicant, config.contact = (
            details["name"], details["applicant"], details["contact"]
        )  # fmt: skip
    return config


def _applicant(path: Path) -> dict[str, Any]:
    try:
        details = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read applicant file {path}: {exc}") from None
    missing = {"name", "applicant", "contact"} - set(details or {})
    if missing:
        raise UsageError(f"applicant file {path} lacks {', '.join(sorted(missing))}")
    return dict(details)


def run_node(config: NodeConfig) -> int:
    """Onboard if needed (a refusal is one line, exit 2), then serve until SIGINT/SIGTERM."""
    import uvicorn

    from reference_impl.app import create_app

    try:
        asyncio.run(_onboard(config))
    except OnboardingError as exc:
        print(f"cpin node: {exc}", file=sys.stderr)
        return 2
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            timeout_graceful_shutdown=GRACE_S,
        )
    )
    print(f"cpin node: {config.role} {app.state.node.node_code} at {config.base_url}", flush=True)
    settle_heap()
    server.run()
    return 0 if server.started else 3


def settle_heap() -> None:
    """Leave what start-up built (the spec, its schemas and validators, the app) out of every
    later garbage collection: it lives as long as the process. A full collection otherwise
    walks those ~175,000 objects and stalls every request for 50-110 ms, enough to breach
    CPIN-PERF-011's 100 ms p99 in a load run."""
    gc.collect()
    gc.freeze()


async def _onboard(config: NodeConfig) -> None:
    """First start of a regional or industry node: get the NodeCode before serving."""
    if config.role == "national":
        return
    node = Node(config, default())
    try:
        await node.federation.start()
    finally:
        await node.federation.stop()
        node.close()


@dataclass
class RunningFederation:
    """The plan, the NodeCode each node reported once serving, and its processes."""

    demo: DemoFederation
    codes: dict[str, str]
    children: list[subprocess.Popen[bytes]]
    root: Path
    env: dict[str, str]

    def alive(self) -> bool:
        return all(child.poll() is None for child in self.children)

    def restart(self, key: str, faults: tuple[str, ...] = ()) -> None:
        """Stop one node and start it again on its data, with these planted faults only."""
        index = list(self.demo.configs).index(key)
        stop_all([self.children[index]])
        config = replace(self.demo.configs[key], faults=faults)
        self.children[index] = _spawn(key, config, self.root, self.env)
        _wait_until_serving(config, self.children[index])


@contextmanager
def running_federation(
    base_port: int, root: Path, announce: Callable[[str], None] = print
) -> Iterator[RunningFederation]:
    """The reference federation as child processes, stopped on exit (children first)."""
    root.mkdir(parents=True, exist_ok=True)
    demo = federation(default(), base_port, root)
    env = {
        **os.environ,
        DEMO_SECRET_ENV: demo.demo_secret,
        LIMITED_SECRET_ENV: demo.limited_secret,
        ONBOARDING_SECRET_ENV: demo.onboarding_secret,
    }
    children: list[subprocess.Popen[bytes]] = []
    codes: dict[str, str] = {}
    try:
        for key, config in demo.configs.items():
            children.append(_spawn(key, config, root, env))
            codes[key] = _wait_until_serving(config, children[-1])
            announce(f"{key:26} {config.role:9} {codes[key]}  {config.base_url}")
        yield RunningFederation(demo, codes, children, root, env)
    finally:
        stop_all(children)


def federation_up(base_port: int, data: Path | None, ics_dir: Path | None = None) -> int:
    """National + 2 regional + 1 industry node as child processes, until interrupted."""
    root = data or Path(tempfile.mkdtemp(prefix="cpin-federation-"))
    for signum in (signal.SIGINT, signal.SIGTERM):  # a background job inherits SIGINT ignored
        signal.signal(signum, _interrupt)
    try:
        with running_federation(base_port, root, lambda line: print(line, flush=True)) as fed:
            demo = fed.demo
            print(f"demo client: id {DEMO_CLIENT}  secret {demo.demo_secret}  (token: POST "
                  f"<node>/v1/oauth/token, HTTP Basic)", flush=True)  # fmt: skip
            print(f"limited client: id {DEMO_LIMITED_CLIENT}  secret {demo.limited_secret}  "
                  f"(scopes: the read scopes)", flush=True)  # fmt: skip
            if ics_dir is not None:
                _write_ics(demo, fed.codes, ics_dir)
            print(f"data in {root}; Ctrl-C stops the federation", flush=True)
            while fed.alive():
                time.sleep(0.5)
            print("cpin federation: a node stopped unexpectedly", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 0
    except UsageError as exc:
        print(f"cpin federation: {exc}", file=sys.stderr)
        return 3


def _write_ics(demo: DemoFederation, codes: dict[str, str], folder: Path) -> None:
    """ICS files for `cpin certify --ics`, and the secrets they name in a 0600 env file."""
    from cpin.ics_files import ics_documents, write_ics_files

    paths = write_ics_files(ics_documents(demo, codes, default(), "standard"), folder)
    secrets_file = folder / "secrets.env"
    secrets_file.touch(mode=0o600)
    secrets_file.write_text(
        f"export {DEMO_SECRET_ENV}={demo.demo_secret}\n"
        f"export {LIMITED_SECRET_ENV}={demo.limited_secret}\n",
        encoding="utf-8",
    )
    listed = ", ".join(str(p) for p in paths.values())
    print(f"ICS files: {listed}; secrets: {secrets_file}", flush=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _spawn(
    key: str, config: NodeConfig, root: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cpin", "node", "--role", config.role,
               "--port", str(config.port), "--data", str(config.data_dir)]  # fmt: skip
    if config.upstream:
        command += ["--upstream", config.upstream, "--province", str(config.province)]
        applicant = root / f"{key}-applicant.yaml"
        details = {"name": config.name, "applicant": config.applicant, "contact": config.contact}
        applicant.write_text(yaml.safe_dump(details, allow_unicode=True), encoding="utf-8")
        command += ["--applicant", str(applicant)]
    if config.industry:
        command += ["--industry", config.industry]
    for name in config.faults:
        command += ["--fault", name]
    with (root / f"{key}.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_until_serving(config: NodeConfig, child: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise UsageError(f"the {config.role} node on port {config.port} exited; see its log")
        try:
            info = httpx.get(f"{config.base_url}/v1/service-info", timeout=1.0)
            if info.status_code == 200:
                return _node_code(info)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise UsageError(f"the {config.role} node on port {config.port} did not start in time")


def _node_code(info: httpx.Response) -> str:
    """The NodeCode a serving node reports; a planted fault may garble its service-info."""
    try:
        return str(info.json()["nodeCode"])
    except (ValueError, KeyError, TypeError):
        return "(service-info unreadable)"


def stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    """Children first (reverse start order), politely, then firmly; never leaves one running,
    not even when a second Ctrl-C arrives meanwhile."""
    with _interrupts_deferred():
        _stop(children)


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """SIGINT ignored while stopping (signal handlers belong to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous or signal.default_int_handler)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    deadline = time.monotonic() + GRACE_S + 5
    for child in reversed(children):
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
