"""Helpers of the node-registry and federation tests: the national registry as the harness
reads it, node application bodies, and harness-held test nodes.

A test node is an industry node the suite applies for under an existing active regional node
(never a regional node: that would take a province a real node may need). The harness keeps
its private key, so it can sign the node-to-node assertions of a registered node and call
other nodes as that node (spec/README.md, "Tokens"). Its endpoint is a loopback port that
nothing serves, so every node that tries to reach it finds it unreachable. The suite suspends
every test node it got approved when the run ends: the registry has no removal.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.utils import base64url_encode

from conformance.checks import body_of, expect_status
from conformance.http import NodeClient
from conformance.identifiers import USCC_ALPHABET, mod37_36, uscc_check
from spec import Spec

APPLICATIONS = "/v1/node-applications"
NODES = "/v1/nodes"

# CPIN-REG-002 states the threshold in its text only: RMB 50 000 000, inclusive.
MIN_REGISTERED_CAPITAL_CNY = 50_000_000

# Nothing listens on loopback port 1 (tcpmux): a node that calls it is refused at once.
UNREACHABLE_ENDPOINT = "http://127.0.0.1:1/"

MAX_PAGES = 50  # 5 000 nodes: the registry of a 1+M+N federation is far smaller
ASSERTION_LIFETIME_S = 120  # CPIN-FED-003 allows at most 300 s


def all_pages(client: NodeClient, path: str, params: Mapping[str, str] | None = None) -> list[Any]:
    """Every item of a paged list, following nextCursor at most MAX_PAGES times."""
    items: list[Any] = []
    query: dict[str, Any] = {**(params or {}), "limit": 100}
    for _ in range(MAX_PAGES):
        response = client.get(path, params=query)
        expect_status(response, 200)
        listing = body_of(response)
        items.extend(listing["items"])
        cursor = listing.get("nextCursor")
        if not cursor:
            return items
        query["cursor"] = cursor
    raise AssertionError(f"{path} still had a nextCursor after {MAX_PAGES} pages")


def valid_uscc(rng: random.Random, prefix: str) -> str:
    """A Unified Social Credit Code with a correct GB 32100 check character; `prefix` gives
    the registration authority and kind (91 enterprise, 12 public institution)."""
    body = prefix + "440300" + "".join(rng.choice(USCC_ALPHABET) for _ in range(9))
    return body + uscc_check(body)


def resource_id(node_code: str, res_type: str, rng: random.Random) -> str:
    """A well-formed ResourceId under `node_code` with a random Serial."""
    serial = "".join(rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(8))
    return f"{node_code}-{res_type}-{serial}{mod37_36(node_code + res_type + serial)}"


def unused_industry(spec: Spec, nodes: list[dict[str, Any]], rng: random.Random) -> str:
    """An industry code (section + division) that no registered node carries, so that test
    nodes never use up the Seqs of an industry a real node serves."""
    taken = {node.get("industry") for node in nodes}
    codes = [f"{e['x-section']}{e['const']}" for e in spec.codelist("industry-division")]
    return rng.choice([code for code in codes if code not in taken])


@dataclass
class TestNode:
    """A node identity the harness holds the private key of."""

    __test__ = False  # not a pytest class

    label: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    kid: str = field(default_factory=lambda: f"cpin-conformance-{uuid.uuid4().hex[:12]}")
    node_code: str | None = None

    @property
    def jwks(self) -> dict[str, Any]:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        public = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64url_encode(raw).decode(),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }
        return {"keys": [public]}

    def assertion(self, audience: str, scopes: set[str] | None = None) -> str:
        """A node-to-node token of this node for `audience` (spec/README.md, "Tokens")."""
        if self.node_code is None:
            raise RuntimeError("the test node has no NodeCode yet")
        issued = int(time.time())
        claims = {
            "iss": self.node_code,
            "sub": self.node_code,
            "aud": audience,
            "scope": " ".join(sorted({"federation", *(scopes or ())})),
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(
            claims, self.key, algorithm="EdDSA", headers={"kid": self.kid, "typ": "JWT"}
        )


def applicant(rng: random.Random, label: str, **changes: Any) -> dict[str, Any]:
    """A builder that meets every rule: an enterprise with a licence and enough capital;
    `changes` replace members (None removes one)."""
    party = {
        "legalName": f"{label} 测试算力科技有限公司",
        "uscc": valid_uscc(rng, "91"),
        "registeredCapitalCny": 200_000_000,
        "publicInstitution": False,
        "telecomLicence": {
            "number": "B1.B2-20260001",
            "issuer": "工业和信息化部",
            "validUntil": "2030-12-31",
        },
        "dishonestyRecordLast3Years": False,
        **changes,
    }
    return {name: value for name, value in party.items() if value is not None}


def industry_application(
    parent: Mapping[str, Any],
    industry: str,
    jwks: dict[str, Any],
    label: str,
    rng: random.Random,
    builder: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An industry node application under `parent` (an active regional node record) that
    meets every rule (with `builder` as applicant when given)."""
    return {
        "role": "industry",
        "name": {"zh": f"{label} 测试行业节点", "en": f"{label} test industry node"},
        "applicant": builder or applicant(rng, label),
        "province": parent["province"],
        "industry": industry,
        "parentNodeCode": parent["nodeCode"],
        "endpoint": UNREACHABLE_ENDPOINT,
        "jwks": jwks,
        "contact": {"name": "CPIN conformance", "email": "conformance@example.com"},
    }


def issued_code(response: httpx.Response) -> str | None:
    """The NodeCode an application answer says was issued, if any."""
    if response.status_code != 201:
        return None
    try:
        record = response.json()
    except ValueError:
        return None
    code = record.get("nodeCode") if isinstance(record, dict) else None
    return code if isinstance(code, str) else None


def rules_of(record: Mapping[str, Any]) -> list[str]:
    return [str(v.get("rule")) for v in record.get("violations", []) if isinstance(v, dict)]


@dataclass
class Registry:
    """The national registry as one test module sees it, and the test nodes it got approved
    (suspended again at the end)."""

    national: NodeClient
    spec: Spec
    label: str
    rng: random.Random
    approved: list[str] = field(default_factory=list)

    def nodes(self, **filters: str) -> list[dict[str, Any]]:
        return all_pages(self.national, NODES, filters)

    def regional_parent(self, province: str | None = None) -> dict[str, Any] | None:
        """An active regional node (of `province` when given), the lowest NodeCode first."""
        filters = {"role": "regional", "status": "active"}
        candidates = self.nodes(**filters, **({"province": province} if province else {}))
        return candidates[0] if candidates else None

    def submit(self, application: dict[str, Any]) -> httpx.Response:
        """POST an application; an approval is remembered for suspension at the end."""
        response = self.national.post(APPLICATIONS, json=application)
        self.remember(response)
        return response

    def remember(self, response: httpx.Response) -> None:
        if code := issued_code(response):
            self.approved.append(code)

    def application(
        self,
        parent: Mapping[str, Any],
        industry: str,
        test_node: TestNode | None = None,
        builder: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        jwks = (test_node or TestNode(self.label)).jwks
        return industry_application(parent, industry, jwks, self.label, self.rng, builder)

    def enrol(
        self, parent: Mapping[str, Any], industry: str, builder: dict[str, Any] | None = None
    ) -> tuple[TestNode, httpx.Response]:
        """Apply for a test node under `parent`; the caller judges the answer."""
        test_node = TestNode(self.label)
        response = self.submit(self.application(parent, industry, test_node, builder))
        test_node.node_code = issued_code(response)
        return test_node, response

    def suspend(self, node_code: str, reason: str) -> httpx.Response:
        body = {"reason": {"zh": f"{self.label}：{reason}", "en": f"{self.label}: {reason}"}}
        return self.national.put(f"{NODES}/{node_code}/suspension", json=body)

    def suspend_all(self) -> Iterator[str]:
        """Suspend every test node approved here; yields a line per refusal."""
        for code in dict.fromkeys(self.approved):
            try:
                answer = self.suspend(code, "conformance test node, suspended after the run")
            except httpx.HTTPError as exc:
                yield f"suspending test node {code}: {exc}"
                continue
            if answer.status_code != 200:
                yield f"suspending test node {code} -> {answer.status_code}"
