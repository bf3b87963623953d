"""identification: mint, list, resolve, update and revoke resource identifiers.

A node mints only under its own NodeCode, from a per-type counter that only grows (a serial is
never handed out twice, revoked or not). It answers resolutions of its own identifiers from its
registry and resolves every other identifier through the issuing node (`resolve_remote`, wired
by the federation layer), caching those answers within the bounds of identification.md §10.
Reported copies of other nodes' identifiers (`store_reported`) serve listing only, never
resolution (§8.2, §9).
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from reference_impl.calls import Call, Reply, decode_cursor, etag_of, handles, page
from reference_impl.ids import IdentifierRules, mint_resource_id
from reference_impl.node import Node, json_record, timestamp
from reference_impl.problems import Problem
from reference_impl.store import Store, schema, upgrade
from spec import ID_BASE, Spec

schema("""
CREATE TABLE IF NOT EXISTS identifiers (
  identifier TEXT PRIMARY KEY,
  issuer TEXT NOT NULL,
  res_type TEXT NOT NULL,
  state TEXT NOT NULL,
  owner_uscc TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  seq INTEGER NOT NULL UNIQUE,
  record TEXT NOT NULL,
  etag TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS identifiers_issuer ON identifiers(issuer, identifier);
CREATE INDEX IF NOT EXISTS identifiers_owner ON identifiers(owner_uscc, identifier);
CREATE TABLE IF NOT EXISTS identifier_serials (
  node_code TEXT NOT NULL,
  res_type TEXT NOT NULL,
  last_serial INTEGER NOT NULL,
  PRIMARY KEY (node_code, res_type)
);
""")


@upgrade
def _stored_etags(db: sqlite3.Connection) -> None:
    """Records written before their ETag was stored with them (resolution read it per request
    from the record's canonical JSON, its costliest step) get it now, once."""
    columns = {row["name"] for row in db.execute("PRAGMA table_info(identifiers)")}
    if "etag" in columns:
        return
    db.execute("ALTER TABLE identifiers ADD COLUMN etag TEXT NOT NULL DEFAULT ''")
    rows = db.execute("SELECT identifier, record FROM identifiers").fetchall()
    db.executemany(
        "UPDATE identifiers SET etag = ? WHERE identifier = ?",
        [(etag_of(json_record(row)), row["identifier"]) for row in rows],
    )


# identification.md §10: the longest a resolution answer may be cached, by status ...
_MAX_AGE_BOUND = {200: 300, 410: 300, 404: 60}
# ... and what this node, as the issuing node, sends: revocation is final, so a 410 can live
# for the whole bound; a 200 is kept short so owner changes travel fast; a 404 short so a new
# identifier resolves everywhere soon after it is minted.
_OWN_MAX_AGE = {200: 60, 410: 300, 404: 30}
_RELAYED_PROBLEMS = {404: "unknown-identifier", 410: "identifier-revoked"}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*([0-9]+)\s*(?:,|$)", re.IGNORECASE)

RemoteAnswer = tuple[int, Any, Mapping[str, str]]
RemoteResolver = Callable[[Node, str], Awaitable[RemoteAnswer]]


async def no_peer_lookup(node: Node, identifier: str) -> RemoteAnswer:
    """The resolver until the federation layer is wired: no way to reach the issuing node."""
    raise Problem(
        "upstream-unavailable",
        f"{identifier} was issued by {identifier[:9]}, and this node has no peer lookup.",
    )


resolve_remote: RemoteResolver = no_peer_lookup
"""§9 steps 4-5: find the issuing node in the national registry and call its
resolveIdentifier with a node-to-node token; return its (status, body, headers) as received.
Raise Problem for what the registry answers itself (404 no such node, 410 node revoked) and
for 502 upstream-unavailable / 504 upstream-timeout. Replaced by the federation layer."""


@cache
def rules(spec: Spec) -> IdentifierRules:
    return IdentifierRules.from_spec(spec)


@handles("registerIdentifier")
async def register_identifier(call: Call) -> Reply:
    node = call.node
    _check_owner(node.spec, call.body.get("owner"))
    node_code = _own_code(node)
    now = timestamp(node.now())
    with node.store.transaction() as db:
        identifier = allocate(db, node_code, call.body["resType"])
        record = {
            "identifier": identifier,
            "resType": call.body["resType"],
            "issuer": node_code,
            "owner": call.body["owner"],
            "state": "active",
            **{
                k: call.body[k]
                for k in ("description", "resourceRef", "extensions")
                if k in call.body
            },
            "createdAt": now,
            "updatedAt": now,
        }
        write_record(db, record)
        node.audit(db, call, "identifier.registered", identifier, status=201)
    headers = {"Location": f"/v1/identifiers/{identifier}", "ETag": etag_of(record)}
    return Reply(201, _answer(record, "local"), headers)


@handles("listIdentifiers")
async def list_identifiers(call: Call) -> Reply:
    spec, query = call.node.spec, call.query
    if "issuer" in query and (flaw := rules(spec).node_code_flaw(query["issuer"])):
        raise Problem(flaw[0], flaw[1])
    if "owner" in query and (flaw := rules(spec).uscc_flaw(query["owner"])):
        raise Problem(
            flaw[0], f"owner: {flaw[1]}.", errors=[{"parameter": "owner", "message": flaw[1]}]
        )
    after = decode_cursor(query.get("cursor"))
    if after is not None and not rules(spec).resource_id_pattern.fullmatch(after):
        raise Problem("invalid-request", "The cursor is not one this node issued.")
    clauses, params = ["identifier > ?"], [after or ""]
    for name, column in (
        ("issuer", "issuer"),
        ("resType", "res_type"),
        ("state", "state"),
        ("owner", "owner_uscc"),
    ):
        if name in query:
            clauses.append(f"{column} = ?")
            params.append(query[name])
    limit = int(query["limit"])
    rows = call.node.store.rows(
        f"SELECT record FROM identifiers WHERE {' AND '.join(clauses)} ORDER BY identifier LIMIT ?",
        (*params, limit + 1),
    )
    return Reply(200, page([_answer(json_record(r), "local") for r in rows], limit, "identifier"))


@handles("resolveIdentifier")
async def resolve_identifier(call: Call) -> Reply:
    node, identifier = call.node, call.path["identifier"]
    if identifier[:9] == node.node_code:
        return _resolve_local(node, identifier)
    if call.principal.node_code is not None:  # CPIN-ID-028: one hop only, never onward
        raise Problem(
            "unknown-identifier",
            f"{identifier} was not issued by {node.node_code}; node-to-node resolutions"
            " are answered from the local registry only.",
            headers=_cache_control(_OWN_MAX_AGE[404]),
        )
    cached = _cache(node).fresh(identifier, _seconds(node))
    if cached is not None:
        return cached
    status, body, headers = await resolve_remote(node, identifier)
    return _relay(node, identifier, status, body, headers)


@handles("updateIdentifier")
async def update_identifier(call: Call) -> Reply:
    node, identifier, patch = call.node, call.path["identifier"], call.body
    _check_owner(node.spec, patch.get("owner"))
    _check_prefix(node, identifier, "update")
    with node.store.transaction() as db:
        record = _current(db, identifier)
        call.require_match(etag_of(record))
        updated = merge_patch(record, patch)
        updated["updatedAt"] = timestamp(node.now())
        write_record(db, updated)
        node.audit(db, call, "identifier.updated", identifier, status=200)
    return Reply(200, _answer(updated, "local"), {"ETag": etag_of(updated)})


@handles("revokeIdentifier")
async def revoke_identifier(call: Call) -> Reply:
    node, identifier = call.node, call.path["identifier"]
    _check_prefix(node, identifier, "revoke")
    now = timestamp(node.now())
    with node.store.transaction() as db:
        record = _current(db, identifier)
        record.update(state="revoked", revokedAt=now, updatedAt=now)
        write_record(db, record)
        node.audit(db, call, "identifier.revoked", identifier, status=200)
    return Reply(200, _answer(record, "local"))


def allocate(db: sqlite3.Connection, node_code: str, res_type: str) -> str:
    """The next ResourceId of this type, inside the caller's write transaction.

    The counter only grows and lives in the same transaction as the record, so concurrent
    registrations (serialised by BEGIN IMMEDIATE) never share a serial, and a revoked
    identifier's serial is never handed out again (CPIN-ID-007, CPIN-ID-008).
    """
    row = db.execute(
        "INSERT INTO identifier_serials (node_code, res_type, last_serial) VALUES (?, ?, 1)"
        " ON CONFLICT (node_code, res_type) DO UPDATE SET last_serial = last_serial + 1"
        " RETURNING last_serial",
        (node_code, res_type),
    ).fetchone()
    return mint_resource_id(node_code, res_type, int(row[0]))


def store_reported(db: sqlite3.Connection, item: Mapping[str, Any]) -> None:
    """Keep a reported copy (reportIdentifiers item) in the registry of record (CPIN-ID-024,
    CPIN-ID-031), inside the caller's transaction; prefix containment is the caller's check.

    A reporter sends its changes in the order they happened, so the latest report wins;
    only a revoked copy stays revoked, whatever arrives after it (revocation is final).
    """
    existing = db.execute(
        "SELECT state FROM identifiers WHERE identifier = ?", (item["identifier"],)
    ).fetchone()
    if existing is not None and existing["state"] == "revoked":
        return
    record = {
        "identifier": item["identifier"],
        "resType": item["resType"],
        "issuer": item["identifier"][:9],
        "owner": item["owner"],
        "state": item["state"],
        "createdAt": item["createdAt"],
        "updatedAt": item["updatedAt"],
    }
    if item["state"] == "revoked":
        record["revokedAt"] = item["updatedAt"]
    write_record(db, record)


def changed_since(store: Store, after_seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """(seq, reportIdentifiers item) of every record written after `after_seq`, oldest first:
    what the federation layer reports upward (CPIN-ID-022, CPIN-ID-023, CPIN-ID-030)."""
    rows = store.rows(
        "SELECT seq, record FROM identifiers WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    )
    keys = ("identifier", "state", "resType", "owner", "createdAt", "updatedAt")
    return [(int(r["seq"]), {k: json_record(r)[k] for k in keys}) for r in rows]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge member by member, null removes a member."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _resolve_local(node: Node, identifier: str) -> Reply:
    row = node.store.row("SELECT record, etag FROM identifiers WHERE identifier = ?", (identifier,))
    if row is None:
        raise Problem(
            "unknown-identifier",
            f"{identifier} was never registered by {node.node_code}.",
            headers=_cache_control(_OWN_MAX_AGE[404]),
        )
    record = json_record(row)
    if record["state"] == "revoked":
        raise Problem(
            "identifier-revoked",
            f"{identifier} was revoked at {record['revokedAt']}.",
            headers=_cache_control(_OWN_MAX_AGE[410]),
        )
    headers = {"ETag": row["etag"], **_cache_control(_OWN_MAX_AGE[200])}
    return Reply(200, _answer(record, "local"), headers)


def _relay(
    node: Node, identifier: str, status: int, body: Any, headers: Mapping[str, str]
) -> Reply:
    """§9 step 5: pass on the issuing node's 200, 404 or 410 (anything else is 502), with its
    max-age capped by §10, and cache what it allows."""
    given = {k.lower(): v for k, v in headers.items()}
    if not _valid_answer(node.spec, identifier, status, body):
        raise Problem(
            "upstream-unavailable",
            f"{identifier[:9]} did not give a valid answer for {identifier} (status {status}).",
        )
    lifetime = _lifetime(status, given.get("cache-control", ""))
    cached = _Cached(status, body, given.get("etag"), _seconds(node), lifetime or 0)
    if lifetime is not None:
        _cache(node).entries[identifier] = cached
    return cached.reply("proxied", age=None, remaining=lifetime)


@dataclass(frozen=True)
class _Cached:
    """An answer of the issuing node, as received, and how long it may be served."""

    status: int
    body: Any
    etag: str | None
    received: float
    lifetime: int

    def reply(self, source: str, *, age: int | None, remaining: int | None) -> Reply:
        """The answer to send: a 200 record, or the relayed 404/410 raised as a Problem."""
        headers = {"Cache-Control": f"max-age={remaining}" if remaining is not None else "no-store"}
        if age is not None:
            headers["Age"] = str(age)
        if self.status != 200:
            raise Problem(_RELAYED_PROBLEMS[self.status], str(self.body["detail"]), headers=headers)
        if self.etag:
            headers["ETag"] = self.etag
        return Reply(200, _answer(self.body, source), headers)


class _ResolutionCache:
    def __init__(self) -> None:
        self.entries: dict[str, _Cached] = {}

    def fresh(self, identifier: str, now: float) -> Reply | None:
        """§10: a cached answer within its lifetime, with Age and its remaining max-age."""
        entry = self.entries.get(identifier)
        if entry is None:
            return None
        elapsed = max(0.0, now - entry.received)
        if elapsed >= entry.lifetime:
            del self.entries[identifier]
            return None
        age = math.floor(elapsed)
        return entry.reply("cache", age=age, remaining=entry.lifetime - age)


_CACHES: weakref.WeakKeyDictionary[Node, _ResolutionCache] = weakref.WeakKeyDictionary()


def _cache(node: Node) -> _ResolutionCache:
    """Each node's own resolution cache, in memory: answers live at most 300 s anyway."""
    if node not in _CACHES:
        _CACHES[node] = _ResolutionCache()
    return _CACHES[node]


def _lifetime(status: int, cache_control: str) -> int | None:
    """How long an answer may be cached: its max-age capped by §10, None if not at all."""
    if "no-store" in cache_control.lower():
        return None
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return None
    return min(int(match.group(1)), _MAX_AGE_BOUND[status])


def _valid_answer(spec: Spec, identifier: str, status: int, body: Any) -> bool:
    if status == 200:
        return (
            isinstance(body, dict)
            and body.get("identifier") == identifier
            and body.get("state") == "active"
            and _record_validator(spec).is_valid(body)
        )
    if status in _RELAYED_PROBLEMS:
        return (
            isinstance(body, dict)
            and body.get("type") == f"{ID_BASE}problems/{_RELAYED_PROBLEMS[status]}"
            and isinstance(body.get("detail"), str)
        )
    return False


@cache
def _record_validator(spec: Spec) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": spec.uri("schemas/identifier-record.json")}, registry=spec.registry()
    )


def _check_owner(spec: Spec, owner: Mapping[str, Any] | None) -> None:
    """§7, CPIN-ID-010: a body's owner USCC needs a correct check character too."""
    if owner is None or "uscc" not in owner:
        return
    if flaw := rules(spec).uscc_flaw(owner["uscc"]):
        raise Problem(
            "invalid-request",
            f"owner.uscc is not a valid unified social credit code: {flaw[1]}.",
            errors=[{"pointer": "/owner/uscc", "message": flaw[1], "rule": "CPIN-ID-010"}],
        )


def _check_prefix(node: Node, identifier: str, verb: str) -> None:
    """§8.2, CPIN-ID-005: only the issuing node changes an identifier; writes never proxy."""
    if identifier[:9] != node.node_code:
        raise Problem(
            "foreign-prefix",
            f"{node.node_code} may not {verb} {identifier}: it was issued by {identifier[:9]}.",
        )


def _current(db: sqlite3.Connection, identifier: str) -> dict[str, Any]:
    """The record a write applies to: 404 if never minted, 410 if revoked (CPIN-ID-021)."""
    row = db.execute("SELECT record FROM identifiers WHERE identifier = ?", (identifier,))
    found = row.fetchone()
    if found is None:
        raise Problem("unknown-identifier", f"{identifier} was never registered here.")
    record = json_record(found)
    if record["state"] == "revoked":
        raise Problem("identifier-revoked", f"{identifier} was revoked at {record['revokedAt']}.")
    return record


def write_record(db: sqlite3.Connection, record: dict[str, Any]) -> None:
    """Insert or replace a record; `seq` orders every write for the upward reports. Its ETag
    is stored with it, so a resolution does not compute it again."""
    db.execute(
        "INSERT OR REPLACE INTO identifiers (identifier, issuer, res_type, state, owner_uscc,"
        " created_at, updated_at, seq, record, etag) VALUES (?, ?, ?, ?, ?, ?, ?,"
        " (SELECT COALESCE(MAX(seq), 0) + 1 FROM identifiers), ?, ?)",
        (
            record["identifier"],
            record["issuer"],
            record["resType"],
            record["state"],
            record["owner"]["uscc"],
            record["createdAt"],
            record["updatedAt"],
            json.dumps(record, ensure_ascii=False),
            etag_of(record),
        ),
    )


def _answer(record: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A record as answered: `authority` is always the issuing node (CPIN-ID-013)."""
    return {**record, "authority": record["identifier"][:9], "source": source}


def _own_code(node: Node) -> str:
    if node.node_code is None:
        raise Problem(
            "service-unavailable", "This node has no NodeCode yet, so it cannot mint identifiers."
        )
    return node.node_code


def _cache_control(max_age: int) -> dict[str, str]:
    return {"Cache-Control": f"max-age={max_age}"}


def _seconds(node: Node) -> float:
    return node.now().timestamp()
