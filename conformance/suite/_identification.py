"""Helpers of the identification tests: identifiers built by the spec's rules, registration
bodies, cache headers, bounded listing and polling, and identifiers minted by other nodes.

Identifiers are built with the harness's own check-character routine
(`conformance.identifiers`), never with anything the node under test says.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from conformance.checks import body_of, expect_status
from conformance.http import NodeClient
from conformance.ics import ClientCredentials, Ics, IcsError, client_credentials
from conformance.identifiers import USCC_ALPHABET, mod37_36, uscc_check
from conformance.session import Certifier
from spec import Spec

IDENTIFIERS = "/v1/identifiers"
SERIAL_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
REPORT_WAIT_S = 60.0  # upward reports: the 60 s CPIN-ID-022/023/030 allow, and no less
MAX_PAGES = 20
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*([0-9]+)\s*(?:,|$)", re.IGNORECASE)

T = TypeVar("T")


def path_of(identifier: str) -> str:
    """The resolution path of any string, percent-encoded so it arrives byte for byte."""
    return f"{IDENTIFIERS}/{quote(identifier, safe='')}"


def resource_id(node_code: str, res_type: str, serial: str) -> str:
    """A ResourceId with a correct check character (identification.md §5.5)."""
    return f"{node_code}-{res_type}-{serial}{mod37_36(node_code + res_type + serial)}"


def with_wrong_check(identifier: str) -> str:
    """The same identifier with another (wrong) last character."""
    right = identifier[-1]
    wrong = SERIAL_ALPHABET[(SERIAL_ALPHABET.index(right) + 7) % 36]
    return identifier[:-1] + wrong


def node_code(prefix8: str) -> str:
    return prefix8 + mod37_36(prefix8)


def random_serial(rng: random.Random) -> str:
    """A serial a node is unlikely to have minted: starts with Z, then seven random characters."""
    return "Z" + "".join(rng.choice(SERIAL_ALPHABET) for _ in range(7))


def unique_uscc(rng: random.Random) -> str:
    """A valid GB 32100-2015 code with a random subject part: an owner only this run uses."""
    first17 = "91440300" + "".join(rng.choice(USCC_ALPHABET) for _ in range(9))
    return first17 + uscc_check(first17)


def registration(res_type: str, uscc: str, label: str) -> dict[str, Any]:
    return {
        "resType": res_type,
        "owner": {"uscc": uscc, "name": label},
        "description": label,
    }


def max_age(response: httpx.Response) -> int | None:
    match = _MAX_AGE.search(response.headers.get("cache-control", ""))
    return int(match.group(1)) if match else None


def expect_max_age(response: httpx.Response, bound: int, what: str) -> int:
    """The answer's Cache-Control max-age, which must be present and within [0, bound]."""
    value = max_age(response)
    assert value is not None, (
        f"{what} answered {response.status_code} with Cache-Control "
        f"{response.headers.get('cache-control')!r}; identification.md §10 requires max-age"
    )
    assert 0 <= value <= bound, (
        f"{what} answered {response.status_code} with max-age={value}; "
        f"identification.md §10 allows at most {bound}"
    )
    return value


def list_all(client: NodeClient, params: dict[str, str], limit: int = 100) -> list[dict[str, Any]]:
    """Every item of a filtered listIdentifiers, following cursors (at most MAX_PAGES pages)."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {**params, "limit": limit}
    for _ in range(MAX_PAGES):
        response = client.get(IDENTIFIERS, params=query)
        expect_status(response, 200)
        page = body_of(response)
        items.extend(page["items"])
        cursor = page.get("nextCursor")
        if not cursor:
            return items
        query = {**params, "limit": limit, "cursor": cursor}
    raise AssertionError(f"listIdentifiers {params} gave more than {MAX_PAGES} pages")


def poll(probe: Callable[[], T | None], timeout: float = REPORT_WAIT_S) -> T | None:
    """The first non-None result of `probe`, tried until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def by_identifier(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["identifier"]: item for item in items}


@dataclass
class Minted:
    """An identifier this suite registered at another node, and that node's client."""

    at: NodeClient
    record: dict[str, Any]

    @property
    def identifier(self) -> str:
        return str(self.record["identifier"])


@dataclass
class Elsewhere:
    """Nodes of the federation other than the target, as the ICS names them (its upstream
    and its peers with credentials): where the suite can mint identifiers the target did not
    issue, or find some. Everything it registers is revoked again by `close`."""

    target_code: str
    clients: list[tuple[str, str, NodeClient]]  # (role, NodeCode, client)
    created: list[Minted] = field(default_factory=list)

    @classmethod
    def from_ics(cls, certifier: Certifier) -> Elsewhere:
        ics = certifier.ics
        timeout = float(certifier.budget["requestTimeoutS"])
        federation = ics.federation
        declared: list[tuple[str, str, str, dict[str, Any] | None]] = []
        if "upstreamUrl" in federation:
            code = str(federation.get("upstreamNodeCode", ""))
            role = {"N": "national", "R": "regional", "I": "industry"}.get(code[:1], "")
            declared.append((role, code, federation["upstreamUrl"],
                             federation.get("upstreamCredentials")))  # fmt: skip
        for peer in federation.get("peers", []):
            declared.append((peer["role"], peer["nodeCode"], peer["baseUrl"],
                             peer.get("credentials")))  # fmt: skip
        clients = []
        for role, code, url, client in declared:
            credentials = _credentials(client)
            if credentials is not None and code != ics.node_code:
                clients.append((role, code, NodeClient(url, credentials, certifier.recorder,
                                                        timeout=timeout)))  # fmt: skip
        return cls(ics.node_code, clients)

    def mint(self, res_type: str, uscc: str, label: str) -> Minted | None:
        """Register an identifier at the first other node that lets this client do so."""
        for role, _code, client in self.clients:
            if role == "national":
                continue
            response = client.post(IDENTIFIERS, json=registration(res_type, uscc, label))
            if response.status_code == 201:
                minted = Minted(client, dict(response.json()))
                self.created.append(minted)
                return minted
        return None

    def minting_children(self) -> Iterator[tuple[str, NodeClient]]:
        """Other nodes whose parent is presumably the target (industry peers of a regional)."""
        for role, code, client in self.clients:
            if (
                role == "industry"
                and self.target_code.startswith("R")
                and code[1:3] == (self.target_code[1:3])
            ):
                yield code, client

    def listed(self, state: str) -> list[dict[str, Any]]:
        """Identifiers in `state` that the target did not issue, as their issuing nodes list
        them (first page of each): the issuer's registry is the record, a reported copy
        elsewhere may lag or carry what a test planted."""
        found: dict[str, dict[str, Any]] = {}
        for _, code, client in self.clients:
            response = client.get(IDENTIFIERS, params={"state": state, "limit": 100})
            if response.status_code != 200:
                continue
            for item in body_of(response).get("items", []):
                issued_there = item["identifier"].startswith(code)
                if item.get("state") == state and issued_there:
                    found.setdefault(item["identifier"], item)
        return list(found.values())

    def close(self) -> None:
        for minted in self.created:
            try:
                minted.at.delete(path_of(minted.identifier))
            except httpx.HTTPError:
                continue
        for _, _, client in self.clients:
            client.close()


def _credentials(client: dict[str, Any] | None) -> ClientCredentials | None:
    if not client:
        return None
    try:
        return client_credentials(client, "federation")
    except IcsError:
        return None


@dataclass(frozen=True)
class IdentifierOperation:
    """An operation that takes a ResourceId, and how to send it one."""

    operation_id: str
    method: str
    template: str
    body_field: str | None  # the body member holding the identifier; None: in the path
    media_type: str | None
    example: Any

    def send(self, node: NodeClient, identifier: str) -> httpx.Response:
        headers: dict[str, str] = {}
        kwargs: dict[str, Any] = {}
        if self.method == "PATCH":
            headers["If-Match"] = '"cpin-conformance"'
        if self.body_field is not None:
            path = self.template
            body = {**self.example, self.body_field: identifier}
        else:
            name = self.template[self.template.index("{") + 1 : self.template.index("}")]
            path = self.template.replace("{" + name + "}", quote(identifier, safe=""))
            body = self.example
        if body is not None and self.media_type is not None:
            headers["Content-Type"] = self.media_type
            kwargs["content"] = json.dumps(body, ensure_ascii=False).encode()
        return node.request(self.method, path, headers=headers, **kwargs)

    def __str__(self) -> str:
        return f"{self.method} {self.template} ({self.operation_id})"


def identifier_operations(spec: Spec, ics: Ics, requirement: str) -> list[IdentifierOperation]:
    """The operations carrying `requirement` that this node serves and must pass: those of a
    required class, or of an optional class the ICS declares."""
    role = ics.role
    profile = spec.profiles["roles"][spec.certification["roles"][role]["profile"]]
    served = {name for name, c in profile["classes"].items() if c["status"] == "required"}
    served |= {o["class"] for o in profile.get("options", []) if o["option"] in ics.options}
    found = []
    for path, method, operation in spec.operations():
        if requirement not in operation.get("x-requirements", []):
            continue
        if role not in operation.get("x-roles", []) or operation["tags"][0] not in served:
            continue
        media, example = _request_example(operation)
        body_field = None if "{" in path else "resourceId"
        found.append(IdentifierOperation(operation["operationId"], method.upper(), path,
                                         body_field, media, example))  # fmt: skip
    return found


def _request_example(operation: dict[str, Any]) -> tuple[str | None, Any]:
    content = operation.get("requestBody", {}).get("content", {})
    for media, entry in content.items():
        examples = entry.get("examples", {})
        if examples:
            return media, next(iter(examples.values()))["value"]
    return None, None


def foreign_code(spec: Spec, ics: Ics) -> str:
    """A valid NodeCode of another node: the upstream's, or a regional one from the vectors."""
    upstream = ics.federation.get("upstreamNodeCode")
    if upstream and upstream != ics.node_code:
        return str(upstream)
    codes = [v["code"] for v in spec.vectors["node_codes"]["valid"]]
    return str(next(c for c in codes if c.startswith("R") and c != ics.node_code))
