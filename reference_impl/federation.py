"""Node-to-node: onboarding, the national registry, proxy resolution, upward reports.

    start()      national: put its own record in the registry
                 others:   find the parent and the national node (their service-info),
                           apply for a NodeCode on first start (CPIN-FED-001), then report
                           upward in the background until stop()
    lookup(code) a node record from the national registry, cached for RECORD_TTL
    call(...)    one authenticated node-to-node request (CPIN-FED-003), failures mapped to
                 502 upstream-unavailable / 504 upstream-timeout (CPIN-FED-008)
    resolve(id)  identification.md §9 steps 4-5, for identifiers this node did not issue

The HTTP client takes an httpx transport, so tests run a whole federation in one process
(`httpx.ASGITransport` per node, mounted by base URL) and production uses sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import httpx

from reference_impl.problems import Problem
from reference_impl.store import schema

if TYPE_CHECKING:
    from reference_impl.node import Node

log = logging.getLogger("reference_impl.federation")

UPSTREAM_TIMEOUT = 5.0  # CPIN-FED-012 (SHOULD <= 5 s; CPIN-FED-008 MUST <= 10 s)
RECORD_TTL = 60.0  # registry records cached this long: CPIN-FED-013 allows 300 s
REPORT_INTERVAL = 1.0  # identifier reports reach the parent well within CPIN-ID-022's 60 s
REPORT_BATCH = 200

schema("""
CREATE TABLE IF NOT EXISTS identity (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""")


class OnboardingError(RuntimeError):
    """The national node did not approve this node: it cannot serve without a NodeCode."""


class Federation:
    def __init__(self, node: Node, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.node = node
        self.client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, transport=transport)
        self.national: dict[str, Any] = {}
        self.parent: dict[str, Any] = {}
        self._records: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._reporter: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from reference_impl.api.registry import ensure_national_record

        if self.node.config.role == "national":
            ensure_national_record(self.node)
            return
        self.node.node_code = self.node.node_code or self.remembered("nodeCode")
        try:
            await self._discover()
        except OnboardingError:
            if self.node.node_code is None:
                raise
            log.warning("parent unreachable at start; serving local data (CPIN-FED-010)")
        if self.node.node_code is None:
            self.node.node_code = await self._apply()
            self.remember("nodeCode", self.node.node_code)
        self.node.security.lookup_node = self.lookup
        self._reporter = asyncio.create_task(self._report_forever())

    async def stop(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        await self.client.aclose()

    def remembered(self, key: str) -> str | None:
        row = self.node.store.row("SELECT value FROM identity WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    def remember(self, key: str, value: str) -> None:
        with self.node.store.transaction() as db:
            db.execute("INSERT OR REPLACE INTO identity (key, value) VALUES (?, ?)", (key, value))

    async def _discover(self) -> None:
        """The parent is the upstream; the national node is the parent's upstream, or itself."""
        upstream = self.node.config.upstream
        if not upstream:
            raise OnboardingError(f"a {self.node.config.role} node needs --upstream")
        self.parent = await self._service_info(upstream)
        national_url = self.parent.get("upstream") if self.parent["role"] != "national" else None
        self.national = await self._service_info(national_url) if national_url else self.parent
        self.node.config.parent = self.parent["nodeCode"]

    async def _service_info(self, base_url: str) -> dict[str, Any]:
        try:
            response = await self.client.get(f"{base_url}/v1/service-info")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise OnboardingError(f"cannot read service-info of {base_url}: {exc}") from None
        info: dict[str, Any] = response.json()
        info["baseUrl"] = base_url
        return info

    async def _apply(self) -> str:
        """CPIN-FED-001: submit a node application and take the NodeCode it is given."""
        config = self.node.config
        if config.applicant is None or config.contact is None or config.applicant_client is None:
            raise OnboardingError("first start needs an applicant, a contact and credentials")
        base = self.national["baseUrl"]
        client_id, secret = config.applicant_client
        token = await self.client.post(
            f"{base}/v1/oauth/token",
            data={"grant_type": "client_credentials", "scope": "registry:apply"},
            auth=(client_id, secret),
        )
        if token.status_code != 200:
            raise OnboardingError(
                f"the national node refused the applicant's credentials: {token.text}"
            )
        application = {
            "role": config.role,
            "name": config.name,
            "applicant": config.applicant,
            "contact": config.contact,
            "province": config.province,
            "endpoint": config.base_url,
            "jwks": self.node.security.jwks(),
            **({"industry": config.industry, "parentNodeCode": self.parent["nodeCode"]}
               if config.role == "industry" else {}),
        }  # fmt: skip
        answer = await self.client.post(
            f"{base}/v1/node-applications",
            json=application,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        record = answer.json()
        if answer.status_code != 201 or record.get("status") != "approved":
            raise OnboardingError(f"the national node did not approve this node: {answer.text}")
        return str(record["nodeCode"])

    async def lookup(self, node_code: str) -> dict[str, Any] | None:
        """The node's record in the national registry, or None when it has none."""
        if self.node.config.role == "national":
            return self._local_record(node_code)
        loop = asyncio.get_running_loop()
        cached = self._records.get(node_code)
        if cached and cached[0] > loop.time():
            return cached[1]
        response = await self._ask_national(f"/v1/nodes/{node_code}")
        record = response.json() if response.status_code == 200 else None
        if response.status_code not in {200, 404}:
            raise Problem(
                "upstream-unavailable", f"the national registry answered {response.status_code}"
            )
        self._records[node_code] = (loop.time() + RECORD_TTL, record)
        return record

    def _local_record(self, node_code: str) -> dict[str, Any] | None:
        row = self.node.store.row("SELECT record FROM nodes WHERE node_code = ?", (node_code,))
        return None if row is None else dict(json.loads(row["record"]))

    async def children(self) -> list[dict[str, Any]]:
        """The nodes whose parent this node is, from the national registry."""
        if self.node.config.role == "national":
            rows = self.node.store.rows(
                "SELECT record FROM nodes WHERE parent = ? ORDER BY node_code",
                (self.node.node_code,),
            )
            return [dict(json.loads(row["record"])) for row in rows]
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = f"?parent={self.node.node_code}&limit=100" + (
                f"&cursor={cursor}" if cursor else ""
            )
            response = await self._ask_national(f"/v1/nodes{query}")
            if response.status_code != 200:
                raise Problem(
                    "upstream-unavailable", f"the national registry answered {response.status_code}"
                )
            listing = response.json()
            found.extend(listing["items"])
            cursor = listing.get("nextCursor")
            if not cursor:
                return found

    async def _ask_national(self, path: str) -> httpx.Response:
        """A registry read at the national node, which must have been reached once."""
        if not self.national:
            raise Problem("upstream-unavailable", "the national node has not been reached yet")
        return await self._send(
            self.national["nodeCode"],
            self.national["baseUrl"],
            "GET",
            path,
            scopes={"registry:read", "federation"},
        )

    async def call(
        self,
        node_code: str,
        method: str,
        path: str,
        *,
        scopes: set[str],
        body: Any = None,
        request_id: str | None = None,
    ) -> httpx.Response:
        record = await self.lookup(node_code)
        if record is None:
            raise Problem("unknown-identifier", f"no node {node_code} in the national registry")
        return await self._send(node_code, record["endpoint"], method, path, scopes=scopes,
                                body=body, request_id=request_id)  # fmt: skip

    async def _send(
        self,
        node_code: str,
        base_url: str,
        method: str,
        path: str,
        *,
        scopes: set[str],
        body: Any = None,
        request_id: str | None = None,
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self.node.security.node_assertion(node_code, scopes)}"
        }
        if request_id:
            headers["X-Request-Id"] = request_id  # CPIN-FED-009
        try:
            return await self.client.request(
                method, f"{base_url}{path}", json=body, headers=headers
            )
        except httpx.TimeoutException:
            raise Problem("upstream-timeout", f"{node_code} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise Problem(
                "upstream-unavailable", f"{node_code} could not be reached: {exc}"
            ) from None

    async def resolve(self, identifier: str) -> tuple[int, Any, dict[str, str]]:
        """identification.md §9 steps 4-5: ask the issuing node, relay what it answers."""
        issuer = identifier[:9]
        record = await self.lookup(issuer)
        if record is None:
            raise Problem("unknown-identifier", f"no node {issuer} issued identifiers")
        if record.get("status") == "revoked":
            raise Problem("identifier-revoked", f"the issuing node {issuer} is revoked")
        response = await self.call(issuer, "GET", f"/v1/identifiers/{identifier}",
                                   scopes={"ids:read", "federation"})  # fmt: skip
        try:
            body = response.json()
        except json.JSONDecodeError:
            raise Problem("upstream-unavailable", f"{issuer} answered no JSON") from None
        return response.status_code, body, dict(response.headers)

    async def _report_forever(self) -> None:
        """Bounded by the node's life: runs until stop() cancels it; a failed round retries."""
        while True:
            try:
                if not self.parent:
                    await self._discover()
                await self.report_identifiers()
            except (Problem, httpx.HTTPError, OnboardingError) as exc:
                log.warning("identifier report to %s failed: %s", self.parent.get("nodeCode"), exc)
            await asyncio.sleep(REPORT_INTERVAL)

    async def report_identifiers(self) -> int:
        """Send the parent every identifier record written since the last accepted report."""
        from reference_impl.api.identification import changed_since

        after = int(self.remembered("reported.identifiers") or 0)
        changes = changed_since(self.node.store, after, REPORT_BATCH)
        if not changes:
            return 0
        body = {"reporter": self.node.node_code, "identifiers": [item for _, item in changes]}
        response = await self.call(self.parent["nodeCode"], "POST", "/v1/federation/identifiers",
                                   scopes={"federation"}, body=body)  # fmt: skip
        if response.status_code != 200:
            raise Problem(
                "upstream-unavailable", f"report refused: {response.status_code} {response.text}"
            )
        self.remember("reported.identifiers", str(changes[-1][0]))
        return len(changes)
