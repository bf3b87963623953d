"""`cpin certify`: validate the input, run the suite, seal the bundle, return the outcome.

Input problems are found before any test runs and are usage errors (one line, exit 2): an ICS
that violates ics.json, an option the role does not offer, an unset secret variable, an
unreadable signing key. Everything after that is the run's business and ends in a report.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from conformance.ics import Ics, IcsError, ics_from_flags, load_ics
from conformance.runner import run_in_process
from spec import default

EXIT_USAGE = 2
EXIT_BROKEN = 3
_PYTEST_USAGE_ERROR = 4


@dataclass(frozen=True)
class CertifyRequest:
    ics: Path | None
    target: str | None
    role: str | None
    node_code: str | None
    client_id: str | None
    client_secret_env: str | None
    options: list[str]
    budget: str | None
    seed: int | None
    report_dir: Path
    keyword: str | None
    sign_key: Path | None
    with_load: bool = False


def certify(request: CertifyRequest) -> int:
    try:
        ics = _ics(request)
        ics.credentials()
        signer = _signer(request.sign_key)
    except IcsError as exc:
        print(f"cpin certify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    run_id = str(uuid.uuid4())
    folder = request.report_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    ics_file = folder / "ics.yaml"
    ics_file.write_text(
        yaml.safe_dump(ics.document, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    budget = request.budget or ics.budget
    with tempfile.TemporaryDirectory(prefix="cpin-load-") as scratch:
        perf = load_run(ics, budget, Path(scratch)) if request.with_load else None
        run = run_in_process(
            ics_file,
            request.report_dir,
            run_id,
            budget=request.budget,
            seed=request.seed,
            keyword=request.keyword,
            quiet=False,
            perf=perf,
        )
    if run.exit_code == _PYTEST_USAGE_ERROR:
        return EXIT_USAGE
    report = run.report
    if report is None:
        print(
            f"cpin certify: the run wrote no report (pytest exit {run.exit_code})", file=sys.stderr
        )
        return EXIT_BROKEN
    if signer is not None:
        from conformance.signing import sign_bundle

        sign_bundle(run.folder, signer)
    return int(report["summary"]["exitCode"])


def load_run(ics: Ics, budget: str, scratch: Path) -> Path | None:
    """The load scenarios first, on a node the suite has not yet touched; their results join
    the report. A quick budget runs none. A target the load run cannot use is said in one line,
    and the perf class then stays untested (which never certifies)."""
    if budget == "quick":
        print("cpin certify: the quick budget runs no load; the perf class stays untested")
        return None
    from loadtests import LoadError, LoadTarget, run_load

    try:
        target = replace(LoadTarget.from_ics(ics.document), budget=budget)
        return run_load(target, out=scratch / "load", announce=_announce)
    except LoadError as exc:
        print(f"cpin certify: no load run: {exc}", file=sys.stderr)
        return None


def _announce(line: str) -> None:
    print(f"load: {line}", flush=True)


def _ics(request: CertifyRequest) -> Ics:
    if request.ics is not None:
        if request.target is not None:
            raise IcsError("give --ics FILE or --target URL, not both")
        return load_ics(request.ics, default())
    if request.target is None:
        raise IcsError(
            "give --ics FILE, or --target URL with --role, --node-code, --client-id "
            "and --client-secret-env"
        )
    flags = {
        "--role": request.role,
        "--node-code": request.node_code,
        "--client-id": request.client_id,
        "--client-secret-env": request.client_secret_env,
    }
    missing = [flag for flag, value in flags.items() if not value]
    if missing:
        raise IcsError(f"--target needs {', '.join(missing)}")
    return ics_from_flags(
        default(),
        target=request.target,
        role=str(request.role),
        node_code=str(request.node_code),
        client_id=str(request.client_id),
        secret_env=str(request.client_secret_env),
        options=request.options,
        budget=request.budget,
    )


def _signer(path: Path | None) -> bytes | None:
    if path is None:
        return None
    from conformance.signing import load_signing_key

    try:
        pem = path.read_bytes()
        load_signing_key(pem)
    except OSError as exc:
        raise IcsError(f"cannot read signing key {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise IcsError(f"signing key {path}: {exc}") from None
    return pem
