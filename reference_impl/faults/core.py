"""Faults of the core class: service-info, errors, request ids, pagination, formats."""

from __future__ import annotations

from reference_impl.faults import FaultSite, fault
from reference_impl.faults._transport import rewrite_headers


@fault(
    "problem-json-missing",
    breaks=["CPIN-CORE-006"],
    summary="errors are sent as application/json instead of application/problem+json",
)
def problem_json_missing(site: FaultSite) -> None:
    def plain(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [
            (name, b"application/json" if value == b"application/problem+json" else value)
            for name, value in headers
        ]

    site.wrap_app(rewrite_headers(plain))
