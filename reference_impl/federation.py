"""Node-to-node: onboarding, the national registry, proxy resolution, upward flows, tasks.

    start()         national: put its own record in the registry
                    others:   find the parent and the national node (their service-info),
                              apply for a NodeCode on first start (CPIN-FED-001), then report
                              upward in the background until stop()
    lookup(code)    a node record from the national registry, cached for RECORD_TTL (a code the
                    registry does not know, for UNKNOWN_TTL only: see lookup)
    call(...)       one authenticated node-to-node request (CPIN-FED-003), failures mapped to
                    502 upstream-unavailable / 504 upstream-timeout (CPIN-FED-008)
    resolve(id)     identification.md §9 steps 4-5, for identifiers this node did not issue
    national_index  the national node's catalogue, for federation-wide selection (CPIN-SEL-015)
    forward_task, remote_task   createTask / getTask / cancelTask at the owning node

The upward flows (identifiers, catalogue, metrics) share one background task and one rule:
each sends, in write order, what was written after the last position the parent took, and
moves that position only once the parent has answered (200, or 400 for a batch it will never
take). So a parent that is down loses nothing: the same items go again in a later round
(CPIN-FED-011), and the parent applies them idempotently. A round sends at most REPORT_BATCH
items per flow; one that filled a batch is followed at once by the next, and one that failed
by a wait that doubles up to PARENT_RETRY_MAX.

The HTTP client takes an httpx transport, so tests run a whole federation in one process
(`httpx.ASGITransport` per node, mounted by base URL) and production uses sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from jsonschema import Draft202012Validator

from reference_impl.problems import Problem
from reference_impl.store import schema
from spec import ID_BASE, Spec

if TYPE_CHECKING:
    from reference_impl.node import Node

log = logging.getLogger("reference_impl.federation")

UPSTREAM_TIMEOUT = 5.0  # CPIN-FED-012 (SHOULD <= 5 s; CPIN-FED-008 MUST <= 10 s)
RECORD_TTL = 60.0  # registry records cached this long: CPIN-FED-013 allows 300 s
UNKNOWN_TTL = 5.0  # "no such node" cached this long
RECORD_CACHE = 4096  # NodeCodes remembered at most: callers choose the codes asked about
REPORT_INTERVAL = 1.0  # changes reach the parent well within the 60 s of CPIN-ID-022/AGG-019
REPORT_BATCH = 200  # items per flow and round; the federation schemas allow 1000
PARENT_RETRY_MAX = 16.0  # s between rounds at most while they fail (CPIN-ID-022 allows 60 s)
MEASURE_INTERVAL = timedelta(seconds=30)  # CPIN-MON-012 asks for a fresh L2 at least every 60 s
METRIC_VALIDITY = 60  # s: a measurement stays fresh until the next one has surely arrived
INDEX_TTL = 5.0  # s the national index is reused for selection (CPIN-SEL-015 allows 60 s)
INDEX_PAGE = 100  # the largest page listResources gives
INDEX_PAGES = 1000  # a national index longer than this many pages is cut (and logged)

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
        self._index: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._measured: datetime | None = None
        self.contacts: dict[str, datetime] = {}
        """NodeCode -> the last time a node answered this node's call (listPeers)."""

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
        """The node's record in the national registry, or None when it has none.

        An unknown code is asked again after UNKNOWN_TTL, not RECORD_TTL: identifiers and
        tokens name codes nobody has registered yet, and a node registered a moment later
        should be known at once, not a minute later."""
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
        if len(self._records) >= RECORD_CACHE:
            self._records.pop(next(iter(self._records)))
        ttl = RECORD_TTL if record is not None else UNKNOWN_TTL
        self._records[node_code] = (loop.time() + ttl, record)
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
        pages = self._pages("/v1/nodes", {"parent": self.node.node_code}, {"registry:read"})
        return [item async for item in pages]

    async def national_index(self) -> list[dict[str, Any]]:
        """CPIN-SEL-015: every resource the national node lists, reused for INDEX_TTL.

        The national node's own table is the index, so it has nothing to fetch. Elsewhere, when
        the national node cannot be reached, the last index fetched is answered (empty if none)
        for another INDEX_TTL: the node goes on selecting among the resources it knows
        (CPIN-FED-010) without waiting on the national node at every request."""
        if self.node.config.role == "national":
            return []
        loop = asyncio.get_running_loop()
        expires, index = self._index
        if expires > loop.time():
            return index
        try:
            pages = self._pages("/v1/resources", {}, {"catalogue:read"})
            index = [item async for item in pages]
        except Problem as problem:
            log.warning("national index unavailable, selecting among known resources: %s", problem)
            index = self._index[1]  # and not asked again before INDEX_TTL has passed
        self._index = (loop.time() + INDEX_TTL, index)
        return index

    async def _pages(
        self, path: str, query: Mapping[str, Any], scopes: set[str]
    ) -> AsyncIterator[dict[str, Any]]:
        """The items of every page of a list at the national node, at most INDEX_PAGES pages."""
        cursor: str | None = None
        for _ in range(INDEX_PAGES):
            params = {**query, "limit": INDEX_PAGE, **({"cursor": cursor} if cursor else {})}
            response = await self._ask_national(f"{path}?{urlencode(params)}", scopes)
            if response.status_code != 200:
                raise Problem(
                    "upstream-unavailable", f"the national node answered {response.status_code}"
                )
            listing = response.json()
            for item in listing["items"]:
                yield item
            cursor = listing.get("nextCursor")
            if not cursor:
                return
        log.warning("%s at the national node has more than %d pages; cut", path, INDEX_PAGES)

    async def _ask_national(
        self, path: str, scopes: Iterable[str] = ("registry:read",)
    ) -> httpx.Response:
        """A read at the national node, which must have been reached once."""
        if not self.national:
            raise Problem("upstream-unavailable", "the national node has not been reached yet")
        return await self._send(
            self.national["nodeCode"],
            self.national["baseUrl"],
            "GET",
            path,
            scopes={*scopes, "federation"},
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
            response = await self._request(method, f"{base_url}{path}", body, headers)
        except httpx.TimeoutException:
            raise Problem("upstream-timeout", f"{node_code} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise Problem(
                "upstream-unavailable", f"{node_code} could not be reached: {exc}"
            ) from None
        if response.status_code < 500:
            self.contacts[node_code] = self.node.now()
        return response

    async def _request(
        self, method: str, url: str, body: Any, headers: dict[str, str]
    ) -> httpx.Response:
        """A GET the peer dropped without answering is sent once more, on a fresh connection:
        the race of a pooled keep-alive connection the peer was just closing for idleness (seen
        as rare 502s of proxied resolutions under load). A write is never sent twice: the peer
        may have applied it."""
        try:
            return await self.client.request(method, url, json=body, headers=headers)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            if method != "GET":
                raise
            return await self.client.request(method, url, json=body, headers=headers)

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

    # -- tasks at the owning node (CPIN-SCHED-010, CPIN-FED-007, CPIN-FED-008) ------------

    async def forward_task(self, body: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        """createTask at the node whose NodeCode the resource carries: its task record, or
        its 404/409 raised as the same problem; 502/504 when it gives no valid answer."""
        owner = str(body["resourceId"])[:9]
        if await self.lookup(owner) is None:
            raise Problem(
                "not-found", f"No node {owner} is registered to hold {body['resourceId']}."
            )
        response = await self.call(owner, "POST", "/v1/tasks", scopes={"tasks:write"},
                                   body=dict(body), request_id=request_id)  # fmt: skip
        return self._task_answer(owner, response, 201)

    async def remote_task(
        self, owner: str, task_id: str, request_id: str, *, cancel: bool = False
    ) -> dict[str, Any]:
        """getTask (or cancelTask) of a forwarded task at the node it was forwarded to."""
        if cancel:
            method, path, scope = "POST", f"/v1/tasks/{task_id}/cancel", "tasks:write"
        else:
            method, path, scope = "GET", f"/v1/tasks/{task_id}", "tasks:read"
        response = await self.call(owner, method, path, scopes={scope}, request_id=request_id)
        return self._task_answer(owner, response, 200)

    def _task_answer(self, owner: str, response: httpx.Response, expected: int) -> dict[str, Any]:
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = None
        status = response.status_code
        if status == expected and _task_validator(self.node.spec).is_valid(body):
            return dict(body)
        if status in {404, 409} and (slug := self._problem_slug(body, status)):
            raise Problem(slug, f"{owner}: {body.get('detail', '')}")  # CPIN-FED-007
        raise Problem("upstream-unavailable", f"{owner} gave no valid answer (status {status}).")

    def _problem_slug(self, body: Any, status: int) -> str | None:
        """The slug of a problem body whose type is one of the spec's, with that status."""
        prefix = f"{ID_BASE}problems/"
        kind = body.get("type") if isinstance(body, dict) else None
        if not isinstance(kind, str) or not kind.startswith(prefix):
            return None
        slug = kind.removeprefix(prefix)
        try:
            return slug if self.node.problems.status(slug) == status else None
        except KeyError:
            return None

    # -- upward flows ----------------------------------------------------------------------

    async def _report_forever(self) -> None:
        """Bounded by the node's life: runs until stop() cancels it. A round that sent a full
        batch is followed at once by the next one. After a round that failed, the wait doubles,
        up to PARENT_RETRY_MAX: a parent that is down is neither called nor logged about every
        second, and is reported to again within that time once it is back."""
        wait = REPORT_INTERVAL
        while True:
            full, failed = await self._report_round()
            wait = min(wait * 2, PARENT_RETRY_MAX) if failed else REPORT_INTERVAL
            await asyncio.sleep(0 if full else wait)

    async def _report_round(self) -> tuple[bool, bool]:
        """(a flow sent a full batch, a flow or the parent's discovery failed)"""
        if not self.parent:
            try:
                await self._discover()
            except OnboardingError as exc:
                log.warning("upward reports wait for the parent: %s", exc)
                return False, True
        flows: tuple[tuple[str, Callable[[], Awaitable[int]]], ...] = (
            ("identifier", self.report_identifiers),
            ("catalogue", self.report_catalogue),
            ("metric", self.report_metrics),
        )
        full = failed = False
        for name, flow in flows:
            try:
                full = await flow() == REPORT_BATCH or full
            except (Problem, httpx.HTTPError) as exc:
                failed = True
                log.warning("%s report to %s failed: %s", name, self.parent.get("nodeCode"), exc)
            except Exception:
                failed = True
                log.exception("%s report to %s failed", name, self.parent.get("nodeCode"))
        return full, failed

    async def report_identifiers(self) -> int:
        """CPIN-ID-022/023/030: every identifier record written since the last accepted report,
        the copies this node's children reported to it included."""
        from reference_impl.api.identification import changed_since

        after = int(self.remembered("reported.identifiers") or 0)
        changes = changed_since(self.node.store, after, REPORT_BATCH)
        if not changes:
            return 0
        body = {"reporter": self.node.node_code, "identifiers": [item for _, item in changes]}
        await self._push("/v1/federation/identifiers", "federation", body)
        self.remember("reported.identifiers", str(changes[-1][0]))
        return len(changes)

    async def report_catalogue(self) -> int:
        """CPIN-AGG-019/021: catalogue entries written since the last accepted push, own and
        aggregated, each as the node holds it; a withdrawn entry travels as a withdrawal."""
        after = int(self.remembered("reported.catalogue") or 0)
        rows = self.node.store.rows(
            "SELECT seq, resource_id, withdrawn_at, record FROM resources"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, REPORT_BATCH),
        )
        if not rows:
            return 0
        upserts = [
            _as_pushed(row["record"], "origin") for row in rows if row["withdrawn_at"] is None
        ]
        withdrawals = [row["resource_id"] for row in rows if row["withdrawn_at"] is not None]
        body: dict[str, Any] = {"reporter": self.node.node_code}
        if upserts:
            body["upserts"] = upserts
        if withdrawals:
            body["withdrawals"] = withdrawals
        await self._push("/v1/federation/catalogue", "federation", body)
        self.remember("reported.catalogue", str(rows[-1]["seq"]))
        return len(rows)

    async def report_metrics(self) -> int:
        """CPIN-MON-011/012: the node's own measurements (taken here when due) and every record
        stored since the last accepted push, its children's included, while still fresh; a
        record whose validity ran out would be refused as stale-metric, so it is not sent."""
        from reference_impl import metrics

        self.measure()
        after = int(self.remembered("reported.metrics") or 0)
        rows = self.node.store.rows(
            "SELECT seq, expires, record FROM metric_records WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, REPORT_BATCH),
        )
        if not rows:
            return 0
        now = metrics.micros(self.node.now())
        records = [_as_pushed(row["record"], "recordId") for row in rows if now <= row["expires"]]
        if records:
            await self._push("/v1/metrics", "metrics:write", {"records": records})
        self.remember("reported.metrics", str(rows[-1]["seq"]))
        return len(rows)

    def measure(self) -> int:
        """Store the node's own measurements when MEASURE_INTERVAL has passed since the last."""
        from reference_impl.api.monitoring import store_record as store_metric
        from reference_impl.node import timestamp

        now, own = self.node.now(), self.node.node_code
        if own is None or (self._measured is not None and now - self._measured < MEASURE_INTERVAL):
            return 0
        rows = self.node.store.rows(
            "SELECT record FROM resources WHERE origin = ? AND withdrawn_at IS NULL", (own,)
        )
        records = own_measurements(own, [json.loads(row["record"]) for row in rows], timestamp(now))
        with self.node.store.transaction() as db:
            for record in records:
                store_metric(db, record, own)
        self._measured = now
        return len(records)

    async def _push(self, path: str, scope: str, body: Mapping[str, Any]) -> None:
        """One upward push. 200 is accepted (items the parent refused one by one are logged);
        a 400 is a batch the parent will never take, logged and passed over so that the flow
        does not stall; anything else raises, and the same batch goes again next round."""
        parent = self.parent["nodeCode"]
        response = await self.call(parent, "POST", path, scopes={scope}, body=body)
        if response.status_code == 200:
            if rejected := response.json().get("rejected"):
                details = [item.get("problem", {}).get("detail") for item in rejected[:3]]
                log.warning("%s refused %d item(s) of %s: %s", parent, len(rejected), path, details)
            return
        if response.status_code == 400:
            log.error("%s refused a batch of %s as invalid, passed over: %s",
                      parent, path, response.text[:500])  # fmt: skip
            return
        raise Problem(
            "upstream-unavailable", f"{parent} answered {path} with {response.status_code}"
        )


def own_measurements(
    node_code: str, resources: Iterable[Mapping[str, Any]], at: str
) -> list[dict[str, Any]]:
    """What the reference node measures of itself: per resource, its rated peak at each
    precision (devices x per-device peak, one record per precision: figures of different
    precisions are never added), and one L2 score of the node, 10 x the share of its resources
    in health state ok (10 when it has none)."""
    common = {"timestamp": at, "validitySeconds": METRIC_VALIDITY}
    records: list[dict[str, Any]] = []
    resources = list(resources)
    for resource in resources:
        peaks: dict[str, tuple[float, str]] = {}
        groups = [(int(g["count"]), g.get("peak", [])) for g in resource.get("accelerators", [])]
        groups.append((1, resource.get("cpu", {}).get("peak", [])))
        for count, figures in groups:
            for figure in figures:
                value, unit = peaks.get(figure["precision"], (0.0, figure["unit"]))
                peaks[figure["precision"]] = (value + count * float(figure["value"]), unit)
        subject = {"nodeCode": node_code, "resourceId": resource["resourceId"]}
        records += [
            {"subject": subject, "level": "L0", "category": "compute", "name": "compute.peak",
             "value": round(value, 6), "unit": unit, "precision": precision, **common}
            for precision, (value, unit) in peaks.items()
        ]  # fmt: skip
    healthy = sum(1 for r in resources if r.get("healthState") == "ok")
    score = 10.0 * healthy / len(resources) if resources else 10.0
    records.append({"subject": {"nodeCode": node_code}, "level": "L2", "value": round(score, 3),
                    "unit": "score", **common})  # fmt: skip
    return records


def _as_pushed(stored: str, *local: str) -> dict[str, Any]:
    """A stored record as it travels upward, without the members that only the holding node
    gives it: `origin` of a catalogue copy (federation.json CataloguePush), `recordId` of a
    metric record (metric-record.json MetricBatch)."""
    record: dict[str, Any] = json.loads(stored)
    for key in local:
        record.pop(key, None)
    return record


@cache
def _task_validator(spec: Spec) -> Draft202012Validator:
    return Draft202012Validator({"$ref": spec.uri("schemas/task.json")}, registry=spec.registry())
