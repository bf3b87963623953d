"""`cpin report verify DIR`: the offline check of a bundle (conformance.verify), as a command.
Exit 0 when the bundle holds, 1 with one line per problem when it does not, 2 on bad input."""

from __future__ import annotations

import sys
from pathlib import Path

from conformance.verify import verify_bundle
from spec import default


def verify(bundle: Path, public_key: Path | None) -> int:
    if not (bundle / "report.json").is_file():
        print(f"cpin report verify: error: {bundle} holds no report.json", file=sys.stderr)
        return 2
    pinned = None
    if public_key is not None:
        pinned = _raw_public_key(public_key)
        if pinned is None:
            print(f"cpin report verify: error: {public_key} is not an Ed25519 public key (PEM)",
                  file=sys.stderr)  # fmt: skip
            return 2
    problems = verify_bundle(bundle, default(), pinned)
    for problem in problems:
        print(f"{bundle}: {problem}")
    if not problems:
        sealed = "signature verified" if _signed(bundle) else "not signed"
        print(f"{bundle}: the bundle holds (schema, digests, verdicts re-derived; {sealed})")
    return 1 if problems else 0


def _raw_public_key(path: Path) -> bytes | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _signed(bundle: Path) -> bool:
    import json

    return "signature" in json.loads((bundle / "report.json").read_text(encoding="utf-8"))
