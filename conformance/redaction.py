"""Secrets out of everything the harness writes: reports, HAR evidence, logs, messages.

Redaction happens where text leaves the harness, not where it is produced, so a new piece of
evidence cannot forget it. The shapes follow report.json `RedactedText`, which the project's
tests hold every report to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MARKER = "[REDACTED]"
SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
SECRET_FIELDS = frozenset(
    {"client_secret", "clientsecret", "secret", "password", "token", "access_token",
     "accesstoken", "refresh_token", "refreshtoken", "id_token", "idtoken", "api_key", "apikey",
     "private_key", "privatekey", "assertion", "client_assertion"}
)  # fmt: skip

_PATTERNS = (
    (re.compile(r"(?i)(authorization: *)(bearer +|basic +)?(?!\[REDACTED\])\S+"), r"\1\2" + MARKER),
    (re.compile(r"(?i)(cookie: *)(?!\[REDACTED\])\S+"), r"\1" + MARKER),
    (re.compile(r"(client_secret=)(?!\[REDACTED\])[^&\s'\"]+"), r"\1" + MARKER),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MARKER),
)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace credentials in free text: known secret values first, then credential shapes."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MARKER)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """HAR-style name/value pairs, with credential headers replaced."""
    return [
        {"name": name, "value": MARKER if name.lower() in SECRET_HEADERS else value}
        for name, value in headers
    ]


def redact_json(value: object, secrets: Iterable[str] = ()) -> object:
    """A JSON value with every secret-named member replaced and every string redacted."""
    secrets = tuple(secrets)
    if isinstance(value, Mapping):
        return {
            key: MARKER
            if str(key).lower() in SECRET_FIELDS and isinstance(item, str)
            else redact_json(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_json(item, secrets) for item in value]
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value
