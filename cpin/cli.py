"""The `cpin` command line: parse, dispatch, map outcomes to the exit codes users rely on.

Exit codes (DESIGN.md §7): 0 success / certified, 1 a negative verdict (invalid spec, not
certified), 2 usage or configuration error (one line on stderr), 3 the tool itself broke.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from cpin import __version__

EXIT_USAGE = 2
EXIT_BROKEN = 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: scripts grep it, people read it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cpin", description="CPIN conformance kit")
    parser.add_argument("--version", action="version", version=f"cpin {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    spec = commands.add_parser("spec", help="work with the standard in spec/")
    spec_commands = spec.add_subparsers(dest="spec_command", required=True, parser_class=_Parser)
    validate = spec_commands.add_parser("validate", help="validate the spec folder")
    validate.add_argument(
        "--spec",
        type=Path,
        metavar="DIR",
        help="spec folder to validate (default: the shipped one)",
    )
    validate.set_defaults(run=_spec_validate)

    node = commands.add_parser("node", help="run one reference node on loopback")
    node.add_argument("--role", required=True, choices=["national", "regional", "industry"])
    node.add_argument("--port", required=True, type=_port)
    node.add_argument("--data", required=True, type=Path, metavar="DIR", help="its SQLite and keys")
    node.add_argument("--upstream", metavar="URL", help="the parent node (regional, industry)")
    node.add_argument("--province", metavar="PP", help="GB/T 2260 code (first start)")
    node.add_argument("--industry", metavar="X99", help="GB/T 4754-2017 section+division")
    node.add_argument("--applicant", type=Path, metavar="FILE", help="name, applicant, contact")
    node.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="plant a named fault (self-verification of the suite only; repeatable)",
    )
    node.set_defaults(run=_node)

    federation = commands.add_parser("federation", help="a local reference federation")
    federation_commands = federation.add_subparsers(
        dest="federation_command", required=True, parser_class=_Parser
    )
    up = federation_commands.add_parser("up", help="national + 2 regional + 1 industry node")
    up.add_argument("--base-port", type=_port, default=8400, metavar="P")
    up.add_argument("--data", type=Path, metavar="DIR", help="default: a new temporary folder")
    up.add_argument("--ics-dir", type=Path, metavar="DIR", help="write an ICS file per node here")
    up.set_defaults(run=_federation_up)
    certify = commands.add_parser("certify", help="certify a node from its base URL")
    certify.add_argument(
        "--ics", type=Path, metavar="FILE", help="implementation conformance statement"
    )
    certify.add_argument("--target", metavar="URL", help="node base URL (instead of --ics)")
    certify.add_argument("--role", choices=["national", "regional", "industry"])
    certify.add_argument("--node-code", metavar="CODE")
    certify.add_argument("--client-id", metavar="ID")
    certify.add_argument(
        "--client-secret-env", metavar="VAR", help="env variable holding the secret"
    )
    certify.add_argument("--option", action="append", default=[], metavar="NAME")
    certify.add_argument("--budget", choices=["quick", "standard", "thorough"])
    certify.add_argument("--seed", type=int, metavar="N", help="replay a run's generated tests")
    certify.add_argument("--report-dir", type=Path, default=Path("reports"), metavar="DIR")
    certify.add_argument("-k", dest="keyword", metavar="EXPR", help="only tests matching EXPR")
    certify.add_argument("--sign-key", type=Path, metavar="PEM", help="Ed25519 key to sign with")
    certify.add_argument(
        "--with-load",
        action="store_true",
        help="also run the load scenarios (cpin load) and judge the perf class",
    )
    certify.set_defaults(run=_certify)

    load = commands.add_parser("load", help="locust load run with SLO verdicts")
    load.add_argument("--ics", type=Path, metavar="FILE", help="target, role, client, capacity")
    load.add_argument("--target", metavar="URL", help="node base URL (instead of --ics)")
    load.add_argument("--role", choices=["national", "regional", "industry"])
    load.add_argument("--client-id", metavar="ID")
    load.add_argument("--client-secret-env", metavar="VAR", help="env variable holding the secret")
    load.add_argument("--users", type=_positive(int), metavar="N", help="simulated clients")
    load.add_argument("--spawn-rate", type=_positive(float), metavar="R", help="clients/second")
    load.add_argument("--duration", type=_positive(float), metavar="S", help="steady seconds")
    load.add_argument("--workers", type=_positive(int, zero=True), default=0, metavar="K")
    load.add_argument("--out", type=Path, metavar="DIR", help="default: reports/load-<time>")
    load.add_argument("--find-capacity", action="store_true", help="step load until an SLO breaks")
    load.set_defaults(run=_load)

    report = commands.add_parser("report", help="work with report bundles")
    report_commands = report.add_subparsers(
        dest="report_command", required=True, parser_class=_Parser
    )
    verify = report_commands.add_parser("verify", help="check a bundle offline")
    verify.add_argument("bundle", type=Path, metavar="DIR")
    verify.add_argument(
        "--public-key", type=Path, metavar="PEM", help="the key it must be signed with"
    )
    verify.set_defaults(run=_report_verify)

    demo = commands.add_parser("demo", help="federation up, certify every node, stop")
    demo.add_argument("--base-port", type=_port, default=8400, metavar="P")
    demo.add_argument("--report-dir", type=Path, default=Path("reports"), metavar="DIR")
    demo.add_argument("--budget", choices=["quick", "standard", "thorough"], default="standard")
    demo.add_argument(
        "--no-load", action="store_true", help="skip the load runs (the perf class stays untested)"
    )
    demo.set_defaults(run=_demo)

    selftest = commands.add_parser("selftest", help="certify the reference nodes, clean and faulty")
    selftest.add_argument("--list", action="store_true", help="list the planted faults")
    selftest.add_argument("--fault", action="append", default=[], metavar="NAME")
    selftest.add_argument("--all", action="store_true", help="every fault of the catalogue")
    selftest.add_argument("--baseline", action="store_true", help="also certify every clean node")
    selftest.add_argument("--budget", choices=["quick", "standard", "thorough"], default="quick")
    selftest.add_argument("-k", dest="keyword", metavar="EXPR", help="only tests matching EXPR")
    selftest.add_argument("--base-port", type=_port, default=8600, metavar="P")
    selftest.add_argument("--out", type=Path, metavar="FILE", help="write the matrix here")
    selftest.set_defaults(run=_selftest)
    return parser


def _certify(args: argparse.Namespace) -> int:
    from cpin.certify_command import CertifyRequest, certify

    if args.seed is not None and args.seed < 0:
        print("cpin: error: --seed must be a non-negative integer", file=sys.stderr)
        return EXIT_USAGE
    return certify(CertifyRequest(
        ics=args.ics, target=args.target, role=args.role, node_code=args.node_code,
        client_id=args.client_id, client_secret_env=args.client_secret_env,
        options=args.option, budget=args.budget, seed=args.seed, report_dir=args.report_dir,
        keyword=args.keyword, sign_key=args.sign_key, with_load=args.with_load,
    ))  # fmt: skip


def _load(args: argparse.Namespace) -> int:
    from cpin.load_command import LoadRequest, load

    return load(LoadRequest(
        ics=args.ics, target=args.target, role=args.role, client_id=args.client_id,
        client_secret_env=args.client_secret_env, users=args.users, spawn_rate=args.spawn_rate,
        duration=args.duration, workers=args.workers, out=args.out,
        find_capacity=args.find_capacity,
    ))  # fmt: skip


def _positive(kind: type[int] | type[float], zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'>= 0' if zero else '> 0'}")
        return value

    return parse


def _report_verify(args: argparse.Namespace) -> int:
    from cpin.report_command import verify

    return verify(args.bundle, args.public_key)


def _demo(args: argparse.Namespace) -> int:
    from cpin.demo_command import demo

    return demo(args.base_port, args.report_dir, args.budget, with_load=not args.no_load)


def _selftest(args: argparse.Namespace) -> int:
    from cpin.selftest_command import list_faults, selftest
    from reference_impl.faults import catalogue

    if args.list:
        return list_faults()
    names = list(catalogue()) if args.all else args.fault
    unknown = [name for name in names if name not in catalogue()]
    if unknown:
        print(f"cpin: error: unknown fault {unknown[0]!r} (cpin selftest --list)", file=sys.stderr)
        return EXIT_USAGE
    return selftest(names, baseline=args.baseline, budget=args.budget, keyword=args.keyword,
                    base_port=args.base_port, out=args.out)  # fmt: skip


def _port(text: str) -> int:
    if not text.isdigit() or not 1024 <= int(text) <= 65532:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1024 to 65532")
    return int(text)


def _node(args: argparse.Namespace) -> int:
    from cpin.node_command import UsageError, node_config, run_node

    if args.role != "national" and not args.upstream:
        print(f"cpin: error: a {args.role} node needs --upstream", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = node_config(args.role, args.port, args.data, args.upstream, args.province,
                             args.industry, args.applicant, tuple(args.fault))  # fmt: skip
    except UsageError as exc:
        print(f"cpin: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_node(config)


def _federation_up(args: argparse.Namespace) -> int:
    from cpin.node_command import federation_up

    return federation_up(args.base_port, args.data, args.ics_dir)


def _spec_validate(args: argparse.Namespace) -> int:
    from cpin.spec_command import run_validate

    if args.spec is not None and not args.spec.is_dir():
        print(f"cpin: error: spec folder {args.spec} does not exist", file=sys.stderr)
        return EXIT_USAGE
    return run_validate(args.spec)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("cpin: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, not a traceback, and the "broke" code
        print(f"cpin: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    return code
