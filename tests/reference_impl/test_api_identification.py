"""reference_impl/api/identification.py: minting, listing, resolution, update, revocation."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reference_impl.api import identification
from reference_impl.api.identification import allocate, changed_since, merge_patch, store_reported
from reference_impl.calls import etag_of
from reference_impl.ids import IdentifierRules, mint_resource_id
from reference_impl.node import json_record
from reference_impl.problems import Problem
from reference_impl.store import Store
from spec import ID_BASE, default

RULES = IdentifierRules.from_spec(default())
OWNER = {"uscc": "9144030071526726XG", "name": "广东粤算科技有限公司"}
OTHER_OWNER = {"uscc": "91110000802100433B", "name": "北京算网科技有限公司"}
FOREIGN = "I44C3801D-NPU-00000001H"  # issued by the industry node, not the regional one
READ, WRITE = "ids:read", "ids:write"


@pytest.fixture
def regional(node_factory: Callable[..., Any]) -> Any:
    return node_factory(role="regional")


def register(running: Any, **body: Any) -> Any:
    payload = {"resType": "GPU", "owner": OWNER, **body}
    return running.client.post("/v1/identifiers", json=payload, headers=running.auth(WRITE))


def resolve(running: Any, identifier: str, **headers: str) -> Any:
    return running.client.get(
        f"/v1/identifiers/{identifier}", headers={**running.auth(READ), **headers}
    )


def patch(running: Any, identifier: str, body: Any, etag: str | None) -> Any:
    headers = {**running.auth(WRITE), "Content-Type": "application/merge-patch+json"}
    if etag is not None:
        headers["If-Match"] = etag
    return running.client.patch(f"/v1/identifiers/{identifier}", json=body, headers=headers)


def revoke(running: Any, identifier: str) -> Any:
    return running.client.delete(f"/v1/identifiers/{identifier}", headers=running.auth(WRITE))


def audited(running: Any, prefix: str = "identifier.") -> list[dict[str, Any]]:
    rows = running.node.store.rows(
        "SELECT record FROM audit_events WHERE action LIKE ? ORDER BY seq", (f"{prefix}%",)
    )
    return [json_record(r) for r in rows]


def max_age(response: Any) -> int:
    directive = response.headers["cache-control"]
    assert directive.startswith("max-age="), directive
    return int(directive.removeprefix("max-age="))


def problem_slug(response: Any) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["type"]).removeprefix(f"{ID_BASE}problems/")


# -- registerIdentifier ------------------------------------------------------------------


def test_register_mints_under_own_node_code(regional: Any) -> None:
    response = register(regional, description="韶关GPU池", extensions={"x-gd-campus": "韶关"})
    assert response.status_code == 201
    record = response.json()
    identifier = record["identifier"]
    assert RULES.resource_id_flaw(identifier) is None
    assert identifier.startswith("R4400001E-GPU-")
    assert record["state"] == "active"
    assert record["issuer"] == record["authority"] == "R4400001E"
    assert record["source"] == "local"
    assert record["description"] == "韶关GPU池"
    assert response.headers["location"] == f"/v1/identifiers/{identifier}"
    assert response.headers["etag"].startswith('"')
    assert [(e["action"], e["target"], e["status"]) for e in audited(regional)] == [
        ("identifier.registered", identifier, 201)
    ]


def test_register_on_an_industry_node(node_factory: Callable[..., Any]) -> None:
    industry = node_factory(role="industry")
    response = register(industry, resType="NPU")
    assert response.status_code == 201
    assert response.json()["identifier"].startswith("I44C3801D-NPU-")


def test_register_refuses_a_wrong_uscc_check_character(regional: Any) -> None:
    response = register(regional, owner={"uscc": "9144030071526726X9", "name": "x"})
    assert response.status_code == 400
    assert problem_slug(response) == "invalid-request"
    assert response.json()["errors"][0]["pointer"] == "/owner/uscc"
    assert response.json()["errors"][0]["rule"] == "CPIN-ID-010"
    assert regional.node.store.rows("SELECT * FROM identifiers") == []
    assert audited(regional) == []


@pytest.mark.parametrize(
    "extra", [{"identifier": "R4400001E-GPU-00000123K"}, {"serial": "00000123"}]
)
def test_register_refuses_a_client_chosen_identifier(regional: Any, extra: dict[str, str]) -> None:
    response = register(regional, **extra)
    assert response.status_code == 400
    assert regional.node.store.rows("SELECT * FROM identifiers") == []


def test_serials_are_never_reused_after_revocation(regional: Any) -> None:
    first = register(regional).json()["identifier"]
    assert revoke(regional, first).status_code == 200
    second = register(regional).json()["identifier"]
    assert second != first
    assert second[14:22] > first[14:22]


def test_serials_count_per_resource_type(regional: Any) -> None:
    gpu = register(regional, resType="GPU").json()["identifier"]
    cpu = register(regional, resType="CPU").json()["identifier"]
    assert gpu[14:22] == cpu[14:22] == "00000001"


def test_fifty_concurrent_registrations_get_fifty_identifiers(regional: Any) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        response = register(regional)
        assert response.status_code == 201
        with lock:
            results.append(response.json()["identifier"])

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(set(results)) == 50
    assert len(audited(regional)) == 50


def test_allocation_is_unique_across_connections(tmp_path: Path) -> None:
    """Two connections on one file (as two processes would have): BEGIN IMMEDIATE keeps the
    counter race-free, so 50 threads over both stores get 50 serials."""
    stores = [Store(tmp_path / "node.sqlite3"), Store(tmp_path / "node.sqlite3")]
    minted: list[str] = []
    lock = threading.Lock()

    def one(store: Store) -> None:
        with store.transaction() as db:
            identifier = allocate(db, "R4400001E", "GPU")
        with lock:
            minted.append(identifier)

    threads = [threading.Thread(target=one, args=(stores[i % 2],)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert sorted(minted) == [mint_resource_id("R4400001E", "GPU", n) for n in range(1, 51)]


def test_allocation_rolled_back_with_its_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.sqlite3")
    with pytest.raises(RuntimeError), store.transaction() as db:
        allocate(db, "R4400001E", "GPU")
        raise RuntimeError("the record could not be written")
    with store.transaction() as db:
        assert allocate(db, "R4400001E", "GPU") == mint_resource_id("R4400001E", "GPU", 1)
    store.close()


# -- resolveIdentifier -------------------------------------------------------------------


def test_local_resolution(regional: Any) -> None:
    registered = register(regional)
    identifier = registered.json()["identifier"]
    response = resolve(regional, identifier)
    assert response.status_code == 200
    assert response.json() == registered.json()
    assert response.json()["source"] == "local"
    assert response.json()["authority"] == "R4400001E"
    assert response.headers["etag"] == registered.headers["etag"]
    assert 0 <= max_age(response) <= 300


def test_a_registry_written_before_etags_were_stored_is_upgraded(
    tmp_path: Path, node_factory: Callable[..., Any]
) -> None:
    """A node opening an identifiers table of an older node (no etag column) stores the ETag
    of every record, and serves it as before: computed over the record."""
    identifier = mint_resource_id("R4400001E", "GPU", 7)
    record = {"identifier": identifier, "resType": "GPU", "issuer": "R4400001E", "owner": OWNER,
              "state": "active", "createdAt": "2026-03-01T08:00:00.000Z",
              "updatedAt": "2026-03-01T08:00:00.000Z"}  # fmt: skip
    (tmp_path / "regional-0").mkdir()
    with sqlite3.connect(tmp_path / "regional-0" / "node.sqlite3") as old:
        old.execute(
            "CREATE TABLE identifiers (identifier TEXT PRIMARY KEY, issuer TEXT NOT NULL,"
            " res_type TEXT NOT NULL, state TEXT NOT NULL, owner_uscc TEXT NOT NULL,"
            " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, seq INTEGER NOT NULL UNIQUE,"
            " record TEXT NOT NULL)"
        )
        old.execute(
            "INSERT INTO identifiers VALUES (?, 'R4400001E', 'GPU', 'active', ?, ?, ?, 1, ?)",
            (identifier, OWNER["uscc"], record["createdAt"], record["updatedAt"],
             json.dumps(record, ensure_ascii=False)),
        )  # fmt: skip
    old.close()
    response = resolve(node_factory(role="regional"), identifier)
    assert response.status_code == 200
    assert response.json() == {**record, "authority": "R4400001E", "source": "local"}
    assert response.headers["etag"] == etag_of(record)


def test_unknown_own_identifier_is_404(regional: Any) -> None:
    identifier = "R4400001E-GPU-00000123K"
    response = resolve(regional, identifier)
    assert response.status_code == 404
    assert problem_slug(response) == "unknown-identifier"
    assert 0 <= max_age(response) <= 60


def test_revoked_identifier_is_410_at_once(regional: Any) -> None:
    identifier = register(regional).json()["identifier"]
    revoke(regional, identifier)
    response = resolve(regional, identifier)
    assert response.status_code == 410
    assert problem_slug(response) == "identifier-revoked"
    assert 0 <= max_age(response) <= 300


@pytest.mark.parametrize(
    ("identifier", "slug"),
    [
        ("r4400001e-gpu-00000123k", "malformed-identifier"),
        ("R4400001E-DCU-00000123E", "malformed-identifier"),
        ("R4400001E-GPU-00000123A", "check-character-mismatch"),
        ("R4400001F-GPU-00000123J", "check-character-mismatch"),
    ],
)
def test_bad_identifiers_are_400_before_anything_else(
    regional: Any, identifier: str, slug: str
) -> None:
    for response in (
        resolve(regional, identifier),
        patch(regional, identifier, {"description": "x"}, None),
        revoke(regional, identifier),
    ):
        assert response.status_code == 400
        assert problem_slug(response) == slug


def test_foreign_identifier_without_peer_lookup_is_502(regional: Any) -> None:
    response = resolve(regional, FOREIGN)
    assert response.status_code == 502
    assert problem_slug(response) == "upstream-unavailable"


class Upstream:
    """A stand-in for the issuing node, behind `resolve_remote`."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        self.answer = (status, body, headers)
        self.calls = 0

    async def __call__(self, node: Any, identifier: str) -> Any:
        self.calls += 1
        return self.answer


def upstream_record(identifier: str = FOREIGN) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "resType": identifier[10:13],
        "issuer": identifier[:9],
        "owner": OWNER,
        "state": "active",
        "createdAt": "2026-03-03T04:00:00Z",
        "updatedAt": "2026-03-03T04:00:00Z",
        "authority": identifier[:9],
        "source": "local",
    }


def upstream_problem(slug: str, status: int) -> dict[str, Any]:
    return {"type": f"{ID_BASE}problems/{slug}", "title": slug, "status": status, "detail": "d"}


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Upstream]:
    def install(status: int, body: Any, headers: Mapping[str, str]) -> Upstream:
        fake = Upstream(status, body, headers)
        monkeypatch.setattr(identification, "resolve_remote", fake)
        return fake

    return install


def test_proxied_resolution_then_cache_then_expiry(
    regional: Any, upstream: Callable[..., Upstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = upstream(200, upstream_record(), {"Cache-Control": "max-age=120", "ETag": '"u1"'})
    first = resolve(regional, FOREIGN)
    assert first.status_code == 200
    assert first.json()["source"] == "proxied"
    assert first.json()["authority"] == "I44C3801D"
    assert max_age(first) == 120
    assert first.headers["etag"] == '"u1"'
    assert "age" not in first.headers

    start = regional.node.now()
    monkeypatch.setattr(regional.node, "now", lambda: start + timedelta(seconds=45.7))
    cached = resolve(regional, FOREIGN)
    assert cached.json()["source"] == "cache"
    assert cached.headers["age"] == "45"
    assert max_age(cached) == 75
    assert fake.calls == 1

    monkeypatch.setattr(regional.node, "now", lambda: start + timedelta(seconds=121))
    again = resolve(regional, FOREIGN)
    assert again.json()["source"] == "proxied"
    assert fake.calls == 2


def test_upstream_max_age_is_capped(regional: Any, upstream: Callable[..., Upstream]) -> None:
    upstream(200, upstream_record(), {"cache-control": "public, max-age=86400"})
    assert max_age(resolve(regional, FOREIGN)) == 300


@pytest.mark.parametrize("cache_control", ["no-store", "no-store, max-age=60", ""])
def test_uncacheable_upstream_answers_are_not_cached(
    regional: Any, upstream: Callable[..., Upstream], cache_control: str
) -> None:
    fake = upstream(
        200, upstream_record(), {"Cache-Control": cache_control} if cache_control else {}
    )
    assert resolve(regional, FOREIGN).headers["cache-control"] == "no-store"
    assert resolve(regional, FOREIGN).json()["source"] == "proxied"
    assert fake.calls == 2


@pytest.mark.parametrize(
    ("status", "slug", "bound"), [(404, "unknown-identifier", 60), (410, "identifier-revoked", 300)]
)
def test_upstream_404_and_410_are_passed_on_and_cached(
    regional: Any, upstream: Callable[..., Upstream], status: int, slug: str, bound: int
) -> None:
    fake = upstream(status, upstream_problem(slug, status), {"Cache-Control": "max-age=999"})
    first = resolve(regional, FOREIGN)
    assert first.status_code == status
    assert problem_slug(first) == slug
    assert max_age(first) == bound
    second = resolve(regional, FOREIGN)
    assert second.status_code == status
    assert "age" in second.headers
    assert fake.calls == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, upstream_problem("internal-error", 500)),
        (404, upstream_problem("not-found", 404)),
        (200, {**upstream_record(), "identifier": "I44C3801D-NPU-00000002F"}),
        (200, {**upstream_record(), "state": "revoked"}),
        (200, {**upstream_record(), "unexpected": True}),
        (200, "not a record"),
    ],
)
def test_invalid_upstream_answers_are_502(
    regional: Any, upstream: Callable[..., Upstream], status: int, body: Any
) -> None:
    upstream(status, body, {"Cache-Control": "max-age=60"})
    response = resolve(regional, FOREIGN)
    assert response.status_code == 502
    assert problem_slug(response) == "upstream-unavailable"


def test_upstream_problems_raised_by_the_lookup_pass_through(
    regional: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def timeout(node: Any, identifier: str) -> Any:
        raise Problem("upstream-timeout", "no answer in 5 s")

    monkeypatch.setattr(identification, "resolve_remote", timeout)
    response = resolve(regional, FOREIGN)
    assert response.status_code == 504


def test_node_to_node_resolution_is_never_proxied(
    node_factory: Callable[..., Any], upstream: Callable[..., Upstream]
) -> None:
    """CPIN-ID-028: a resolution authenticated by another node's token is answered from the
    local registry only: 404 for what this node did not issue, and no onward call."""
    regional = node_factory(role="regional")
    industry = node_factory(role="industry")

    async def registry(node_code: str) -> dict[str, Any] | None:
        return {"jwks": industry.node.security.jwks(), "status": "active"}

    regional.node.security.lookup_node = registry
    fake = upstream(200, upstream_record(), {"Cache-Control": "max-age=60"})
    token = industry.node.security.node_assertion("R4400001E", {READ})
    headers = {"Authorization": f"Bearer {token}"}
    foreign = regional.client.get(f"/v1/identifiers/{FOREIGN}", headers=headers)
    assert foreign.status_code == 404
    assert problem_slug(foreign) == "unknown-identifier"
    assert fake.calls == 0
    own = register(regional).json()["identifier"]
    local = regional.client.get(f"/v1/identifiers/{own}", headers=headers)
    assert local.status_code == 200
    assert local.json()["source"] == "local"


def test_national_node_resolves_but_does_not_mint(node_factory: Callable[..., Any]) -> None:
    national = node_factory(role="national")
    response = resolve(national, "N0000001U-CLU-000000017")
    assert response.status_code == 404
    assert problem_slug(response) == "unknown-identifier"
    refused = register(national)
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET"


# -- updateIdentifier --------------------------------------------------------------------


def test_update_needs_if_match(regional: Any) -> None:
    registered = register(regional)
    identifier = registered.json()["identifier"]
    missing = patch(regional, identifier, {"description": "new"}, None)
    assert missing.status_code == 428
    stale = patch(regional, identifier, {"description": "new"}, '"stale"')
    assert stale.status_code == 412
    assert resolve(regional, identifier).json() == registered.json()
    assert len(audited(regional)) == 1


def test_update_merges_and_changes_the_etag(regional: Any) -> None:
    registered = register(regional, description="old", extensions={"x-a": 1, "x-b": 2})
    identifier, etag = registered.json()["identifier"], registered.headers["etag"]
    body = {"owner": {"name": "新名称"}, "description": None, "extensions": {"x-a": None}}
    response = patch(regional, identifier, body, etag)
    assert response.status_code == 200
    record = response.json()
    assert record["owner"] == {"uscc": OWNER["uscc"], "name": "新名称"}
    assert "description" not in record
    assert record["extensions"] == {"x-b": 2}
    assert record["createdAt"] == registered.json()["createdAt"]
    assert response.headers["etag"] != etag
    assert resolve(regional, identifier).headers["etag"] == response.headers["etag"]
    assert [e["action"] for e in audited(regional)] == [
        "identifier.registered",
        "identifier.updated",
    ]
    owner = patch(regional, identifier, {"owner": OTHER_OWNER}, response.headers["etag"])
    assert owner.json()["owner"] == OTHER_OWNER


@pytest.mark.parametrize(
    "body",
    [
        {"identifier": "R4400001E-GPU-00000009X"},
        {"resType": "CPU"},
        {"issuer": "R1100001E"},
        {"state": "revoked"},
        {"createdAt": "2020-01-01T00:00:00Z"},
        {"authority": "R11000018"},
    ],
)
def test_immutable_fields_are_400_and_change_nothing(regional: Any, body: Any) -> None:
    registered = register(regional)
    identifier = registered.json()["identifier"]
    response = patch(regional, identifier, body, registered.headers["etag"])
    assert response.status_code == 400
    assert resolve(regional, identifier).json() == registered.json()


def test_update_refuses_a_wrong_uscc(regional: Any) -> None:
    registered = register(regional)
    body = {"owner": {"uscc": "91110000802100433C"}}
    response = patch(regional, registered.json()["identifier"], body, registered.headers["etag"])
    assert response.status_code == 400
    assert problem_slug(response) == "invalid-request"


def test_update_and_revoke_order_prefix_then_state(regional: Any) -> None:
    """CPIN-ID-033: 403 foreign-prefix before 404/410, and 410 before the If-Match check."""
    for response in (
        patch(regional, FOREIGN, {"description": "x"}, '"any"'),
        revoke(regional, FOREIGN),
    ):
        assert response.status_code == 403
        assert problem_slug(response) == "foreign-prefix"
    unknown = "R4400001E-GPU-00000123K"
    assert patch(regional, unknown, {"description": "x"}, None).status_code == 404
    assert revoke(regional, unknown).status_code == 404
    identifier = register(regional).json()["identifier"]
    revoke(regional, identifier)
    gone = patch(regional, identifier, {"description": "x"}, None)
    assert gone.status_code == 410
    assert problem_slug(gone) == "identifier-revoked"


# -- revokeIdentifier --------------------------------------------------------------------


def test_revoke_is_final(regional: Any) -> None:
    registered = register(regional, description="to go")
    identifier = registered.json()["identifier"]
    response = revoke(regional, identifier)
    assert response.status_code == 200
    record = response.json()
    assert record["state"] == "revoked"
    assert record["revokedAt"] == record["updatedAt"]
    assert record["description"] == "to go"
    again = revoke(regional, identifier)
    assert again.status_code == 410
    assert problem_slug(again) == "identifier-revoked"
    assert [(e["action"], e["status"]) for e in audited(regional)] == [
        ("identifier.registered", 201),
        ("identifier.revoked", 200),
    ]


# -- listIdentifiers ---------------------------------------------------------------------


def listing(running: Any, **query: Any) -> Any:
    return running.client.get("/v1/identifiers", params=query, headers=running.auth(READ))


def test_list_filters_and_pages(regional: Any) -> None:
    gpus = [register(regional).json()["identifier"] for _ in range(3)]
    cpu = register(regional, resType="CPU", owner=OTHER_OWNER).json()["identifier"]
    revoke(regional, gpus[0])
    with regional.node.store.transaction() as db:
        store_reported(db, {**upstream_record(), "owner": OTHER_OWNER})

    everything = listing(regional).json()
    assert [r["identifier"] for r in everything["items"]] == sorted([*gpus, cpu, FOREIGN])
    assert "nextCursor" not in everything

    def ids(**query: Any) -> set[str]:
        return {r["identifier"] for r in listing(regional, **query).json()["items"]}

    assert ids(resType="GPU") == set(gpus)
    assert ids(state="revoked") == {gpus[0]}
    assert ids(issuer="I44C3801D") == {FOREIGN}
    assert ids(owner=OTHER_OWNER["uscc"]) == {cpu, FOREIGN}
    assert ids(owner=OTHER_OWNER["uscc"], resType="CPU", state="active") == {cpu}
    assert ids(issuer="R4400001E", state="revoked", resType="CPU") == set()

    seen: list[str] = []
    cursor = None
    while True:
        body = listing(regional, limit=2, **({"cursor": cursor} if cursor else {})).json()
        assert len(body["items"]) <= 2
        seen += [r["identifier"] for r in body["items"]]
        cursor = body.get("nextCursor")
        if cursor is None:
            break
    assert seen == [r["identifier"] for r in everything["items"]]
    reported = next(r for r in everything["items"] if r["identifier"] == FOREIGN)
    assert reported["authority"] == "I44C3801D"


@pytest.mark.parametrize(
    ("query", "slug"),
    [
        ({"issuer": "R4400001F"}, "check-character-mismatch"),
        ({"issuer": "R6600001Z"}, "malformed-identifier"),
        ({"owner": "9144030071526726X9"}, "invalid-request"),
        ({"cursor": "bm90LWFuLWlk"}, "invalid-request"),
        ({"cursor": "%%%"}, "invalid-request"),
    ],
)
def test_list_refuses_bad_filters(regional: Any, query: dict[str, str], slug: str) -> None:
    response = listing(regional, **query)
    assert response.status_code == 400
    assert problem_slug(response) == slug


# -- hooks for the federation layer ------------------------------------------------------


def test_reported_copies_keep_revocation_final(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.sqlite3")
    item = {
        k: v for k, v in upstream_record().items() if k not in {"issuer", "authority", "source"}
    }
    with store.transaction() as db:
        store_reported(db, item)
        store_reported(db, {**item, "state": "revoked", "updatedAt": "2026-03-04T08:00:00Z"})
        store_reported(db, {**item, "updatedAt": "2026-03-05T08:00:00Z"})
    record = json_record(store.row("SELECT record FROM identifiers"))
    assert record["state"] == "revoked"
    assert record["revokedAt"] == "2026-03-04T08:00:00Z"
    assert record["issuer"] == "I44C3801D"
    store.close()


def test_changed_since_lists_writes_in_order(regional: Any) -> None:
    first = register(regional).json()["identifier"]
    second = register(regional).json()["identifier"]
    revoke(regional, first)
    changes = changed_since(regional.node.store, 0, 100)
    assert [(item["identifier"], item["state"]) for _, item in changes] == [
        (second, "active"),
        (first, "revoked"),
    ]
    assert set(changes[0][1]) == {
        "identifier",
        "state",
        "resType",
        "owner",
        "createdAt",
        "updatedAt",
    }
    assert changed_since(regional.node.store, changes[0][0], 100) == changes[1:]


def test_merge_patch_follows_rfc_7396() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": [1]}, {"a": [2]}) == {"a": [2]}
    assert merge_patch({"a": "b"}, {"a": {"x": 1}}) == {"a": {"x": 1}}
    assert merge_patch(target, {}) == target
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}}


def test_caches_are_per_node(
    node_factory: Callable[..., Any], upstream: Callable[..., Upstream]
) -> None:
    first, second = node_factory(role="regional"), node_factory(role="regional")
    fake = upstream(200, upstream_record(), {"Cache-Control": "max-age=60"})
    resolve(first, FOREIGN)
    assert resolve(second, FOREIGN).json()["source"] == "proxied"
    assert fake.calls == 2
