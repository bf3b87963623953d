"""Benchmark: wall time of a full `standard` certification of a regional reference node, beside
a bare `st run` (schemathesis CLI) against the same node with the same example budget.

    .venv/bin/python scripts/bench_certify.py [--base-port 8950] [--budget standard]

Starts the local reference federation (loopback), certifies the Guangdong regional node with the
whole suite (requirement-traced tests, fuzzing stateless and stateful, reports), then runs
`st run` with the budget's examples, phases and seed, and prints both wall times and their
ratio. Target (issue 4): the standard certification under 90 s on this machine. Not a test:
the figures depend on the machine, and a shared machine makes them noisy.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.runner import run_in_subprocess
from cpin.ics_files import ics_documents, write_ics_files
from cpin.node_command import DEMO_SECRET_ENV, LIMITED_SECRET_ENV, running_federation
from spec import ROOT, default

TARGET_S = 90.0
NODE = "guangdong"
BUDGETS = Path(__file__).resolve().parents[1] / "conformance" / "budgets.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-port", type=int, default=8950)
    parser.add_argument("--budget", default="standard", choices=["quick", "standard", "thorough"])
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args()
    budget = yaml.safe_load(BUDGETS.read_text(encoding="utf-8"))[args.budget]
    root = Path(tempfile.mkdtemp(prefix="cpin-bench-certify-"))
    with running_federation(args.base_port, root / "federation", lambda line: None) as federation:
        demo = federation.demo
        ics = write_ics_files(
            ics_documents(demo, federation.codes, default(), args.budget), root / "ics"
        )[NODE]
        env = {DEMO_SECRET_ENV: demo.demo_secret, LIMITED_SECRET_ENV: demo.limited_secret}
        started = time.monotonic()
        run = run_in_subprocess(ics, root / "reports", env=env, seed=args.seed,
                                log=root / "certify.log")  # fmt: skip
        certify_s = time.monotonic() - started
        outcome = run.report["summary"]["overall"] if run.report else "no report"
        base_url = demo.configs[NODE].base_url
        token = httpx.post(f"{base_url}/v1/oauth/token", data={"grant_type": "client_credentials"},
                           auth=("demo", demo.demo_secret)).json()["access_token"]  # fmt: skip
        started = time.monotonic()
        st = subprocess.run(
            [shutil.which("st") or str(Path(sys.executable).with_name("st")), "run",
             str(ROOT / "openapi.yaml"), "--url", base_url, "--checks", "all",
             "--max-examples", str(budget["fuzzExamples"]), "--phases",
             ",".join(budget["fuzzPhases"]), "--seed", str(args.seed), "--no-shrink",
             "--workers", "1", "--request-timeout", str(budget["requestTimeoutS"]),
             "--header", f"Authorization: Bearer {token}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        st_s = time.monotonic() - started
    print(f"certification ({args.budget}, {NODE}): {certify_s:7.1f} s  outcome {outcome}")
    print(f"bare st run (same examples/phases/seed): {st_s:7.1f} s  exit {st.returncode}")
    print(f"ratio certification / st run: {certify_s / st_s:.2f}")
    verdict = "PASS" if certify_s < TARGET_S else "MISS"
    print(f"target: standard certification under {TARGET_S:.0f} s: {verdict}")
    print(f"report: {run.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
