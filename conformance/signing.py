"""Detached Ed25519 signatures over report.json (report.json#/$defs/Signature).

The signed bytes are the report without its `signature` member in the JSON Canonicalization
Scheme (RFC 8785, via the rfc8785 package), so any JSON tool that re-serialises the report
still verifies it. Since `artefacts` holds every other file's digest, one signature seals the
whole bundle.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["load_signing_key", "sign_bundle", "signature_problem"]


def load_signing_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8, unencrypted); ValueError otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key is not an Ed25519 key")
    return key


def signed_bytes(report: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in report.items() if k != "signature"}
    return bytes(rfc8785.dumps(unsigned))


def sign_bundle(folder: Path, pem: bytes, key_id: str | None = None) -> None:
    key = load_signing_key(pem)
    path = folder / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)  # fmt: skip
    signature: dict[str, Any] = {
        "alg": "Ed25519",
        "publicKey": _b64(public),
        "value": _b64(key.sign(signed_bytes(report))),
    }
    if key_id:
        signature["keyId"] = key_id
    report["signature"] = signature
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def signature_problem(report: dict[str, Any], pinned: bytes | None = None) -> str | None:
    """Why the report's signature does not hold, or None when it does. `pinned`: the raw
    public key the auditor expects; without it the embedded key is checked for integrity only."""
    signature = report["signature"]
    public = _unb64(signature["publicKey"])
    if pinned is not None and public != pinned:
        return "the report is signed with another key than the one expected"
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            _unb64(signature["value"]), signed_bytes(report)
        )
    except (InvalidSignature, ValueError):
        return "the signature does not verify: the report changed after it was signed"
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
