"""Faults of the identification class: minting, validation, prefix containment, revocation,
resolution by proxy, caching, listing and upward reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import Scope

from reference_impl.api.identification import changed_since, write_record
from reference_impl.calls import Call, Handler, Reply, etag_of
from reference_impl.faults import FaultSite, fault
from reference_impl.faults._identification_tools import (
    IDENTIFIER_PATHS,
    rewrite_identifier_headers,
    rewrite_problems,
    rewrite_requests,
)
from reference_impl.ids import mint_resource_id, mod37_36, uscc_check
from reference_impl.node import Node, json_record
from reference_impl.problems import Problem

_FEDERATION_PUSH = "/v1/federation/identifiers"
_IMMUTABLE = ("identifier", "resType", "issuer", "state", "createdAt", "updatedAt", "revokedAt")
_MAX_AGE = re.compile(rb"max-age=([0-9]+)")

Rewrite = Callable[[Call, Handler], Awaitable[Reply]]


def _record(node: Node, identifier: str) -> dict[str, Any] | None:
    row = node.store.row("SELECT record FROM identifiers WHERE identifier = ?", (identifier,))
    return None if row is None else json_record(row)


def _rename(node: Node, old: str, new: str) -> dict[str, Any]:
    """Store the record minted as `old` under `new` (replacing whatever `new` held)."""
    with node.store.transaction() as db:
        row = db.execute("SELECT record FROM identifiers WHERE identifier = ?", (old,)).fetchone()
        record = {**json_record(row), "identifier": new}
        db.execute("DELETE FROM identifiers WHERE identifier = ?", (old,))
        write_record(db, record)
    return record


def _as_minted(reply: Reply, record: dict[str, Any]) -> Reply:
    identifier = record["identifier"]
    body = {**record, "authority": identifier[:9], "source": "local"}
    headers = {**reply.headers, "Location": f"{IDENTIFIER_PATHS}/{identifier}",
               "ETag": etag_of(record)}  # fmt: skip
    return Reply(reply.status, body, headers)


def _on_registration(site: FaultSite, rewrite: Rewrite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def registering(call: Call) -> Reply:
            return await rewrite(call, handler)

        return registering

    site.wrap_handler("registerIdentifier", wrap)


@fault(
    "minted-check-over-serial-only",
    breaks=["CPIN-ID-006"],
    summary="mints identifiers whose check character is computed over the Serial alone",
    roles=["regional", "industry"],
)
def minted_check_over_serial_only(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        reply = await handler(call)
        good = str(reply.body["identifier"])
        bad = good[:22] + mod37_36(good[14:22])
        return reply if bad == good else _as_minted(reply, _rename(site.node, good, bad))

    _on_registration(site, rewrite)


@fault(
    "minted-serial-lower-case",
    breaks=["CPIN-ID-006", "CPIN-ID-009"],
    summary="answers a registration with the identifier's Serial in lower case",
    roles=["regional", "industry"],
)
def minted_serial_lower_case(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        reply = await handler(call)
        identifier = str(reply.body["identifier"])
        shown = identifier[:14] + identifier[14:].lower()
        return Reply(reply.status, {**reply.body, "identifier": shown}, reply.headers)

    _on_registration(site, rewrite)


@fault(
    "serials-reused-after-revocation",
    breaks=["CPIN-ID-008"],
    summary="allocates the Serial after the highest active one, so a revoked one comes back",
    roles=["regional", "industry"],
)
def serials_reused_after_revocation(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        reply = await handler(call)
        minted = str(reply.body["identifier"])
        rows = site.node.store.rows(
            "SELECT identifier FROM identifiers WHERE issuer = ? AND res_type = ?"
            " AND state = 'active' AND identifier != ?",
            (minted[:9], minted[10:13], minted),
        )
        highest = max((int(str(r["identifier"])[14:22], 36) for r in rows), default=0)
        wanted = mint_resource_id(minted[:9], minted[10:13], highest + 1)
        return reply if wanted == minted else _as_minted(reply, _rename(site.node, minted, wanted))

    _on_registration(site, rewrite)


@fault(
    "serials-race-under-concurrency",
    breaks=["CPIN-ID-007"],
    summary="reads the serial counter, then mints later: concurrent registrations collide",
    roles=["regional", "industry"],
)
def serials_race_under_concurrency(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        node_code, res_type = str(site.node.node_code), str(call.body["resType"])
        row = site.node.store.row(
            "SELECT last_serial FROM identifier_serials WHERE node_code = ? AND res_type = ?",
            (node_code, res_type),
        )
        guess = mint_resource_id(node_code, res_type, (int(row[0]) if row else 0) + 1)
        await asyncio.sleep(0.2)
        reply = await handler(call)
        minted = str(reply.body["identifier"])
        return reply if guess == minted else _as_minted(reply, _rename(site.node, minted, guess))

    _on_registration(site, rewrite)


@fault(
    "issuer-field-wrong",
    breaks=["CPIN-ID-009"],
    summary="registration records name the parent node as issuer instead of the minting node",
    roles=["regional", "industry"],
)
def issuer_field_wrong(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        reply = await handler(call)
        parent = str(site.node.federation.parent.get("nodeCode", "N0000001U"))
        return Reply(reply.status, {**reply.body, "issuer": parent}, reply.headers)

    _on_registration(site, rewrite)


@fault(
    "owner-check-character-corrected",
    breaks=["CPIN-ID-010"],
    summary="silently corrects a wrong USCC check character instead of refusing the body",
    roles=["regional", "industry"],
)
def owner_check_character_corrected(site: FaultSite) -> None:
    def correcting(handler: Handler) -> Handler:
        async def corrected(call: Call) -> Reply:
            owner = call.body.get("owner") if isinstance(call.body, dict) else None
            uscc = owner.get("uscc") if isinstance(owner, dict) else None
            if isinstance(owner, dict) and isinstance(uscc, str) and len(uscc) == 18:
                with contextlib.suppress(ValueError):
                    owner["uscc"] = uscc[:17] + uscc_check(uscc[:17])
            return await handler(call)

        return corrected

    site.wrap_handler("registerIdentifier", correcting)
    site.wrap_handler("updateIdentifier", correcting)


@fault(
    "foreign-prefix-looked-up",
    breaks=["CPIN-ID-005", "CPIN-ID-033"],
    summary="looks a foreign identifier up before checking its prefix: 404 instead of 403",
    roles=["regional", "industry"],
)
def foreign_prefix_looked_up(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def writing(call: Call) -> Reply:
            identifier = call.path["identifier"]
            if identifier[:9] != site.node.node_code and _record(site.node, identifier) is None:
                raise Problem("unknown-identifier", f"{identifier} is not registered here.")
            return await handler(call)

        return writing

    site.wrap_handler("updateIdentifier", wrap)
    site.wrap_handler("revokeIdentifier", wrap)


def _own_record_reply(node: Node, identifier: str, source: str) -> Reply:
    record = _record(node, identifier) or {}
    return Reply(200, {**record, "authority": identifier[:9], "source": source},
                 {"Cache-Control": "max-age=60", "ETag": etag_of(record)})  # fmt: skip


@fault(
    "revoked-identifier-answers-200",
    breaks=["CPIN-ID-014"],
    summary="resolves its own revoked identifiers with 200 and the revoked record",
    roles=["regional", "industry"],
)
def revoked_identifier_answers_200(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def resolving(call: Call) -> Reply:
            try:
                return await handler(call)
            except Problem as problem:
                identifier = call.path["identifier"]
                if problem.slug == "identifier-revoked" and identifier[:9] == site.node.node_code:
                    return _own_record_reply(site.node, identifier, "local")
                raise

        return resolving

    site.wrap_handler("resolveIdentifier", wrap)


@fault(
    "revocation-repeatable",
    breaks=["CPIN-ID-021"],
    summary="revoking a revoked identifier answers 200 again (idempotent delete)",
    roles=["regional", "industry"],
)
def revocation_repeatable(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def revoking(call: Call) -> Reply:
            record = _record(site.node, call.path["identifier"])
            if record is not None and record["state"] == "revoked":
                return Reply(200, {**record, "authority": record["identifier"][:9],
                                   "source": "local"})  # fmt: skip
            return await handler(call)

        return revoking

    site.wrap_handler("revokeIdentifier", wrap)


@fault(
    "if-match-ignored",
    breaks=["CPIN-ID-019"],
    summary="updates identifiers without checking If-Match (last writer wins)",
    roles=["regional", "industry"],
)
def if_match_ignored(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def updating(call: Call) -> Reply:
            record = _record(site.node, call.path["identifier"])
            if record is not None:
                call.headers = {**call.headers, "if-match": etag_of(record)}
            return await handler(call)

        return updating

    site.wrap_handler("updateIdentifier", wrap)


@fault(
    "immutable-fields-ignored",
    breaks=["CPIN-ID-020"],
    summary="a patch of the identifier, type, issuer, state or timestamps is ignored, not 400",
    roles=["regional", "industry"],
)
def immutable_fields_ignored(site: FaultSite) -> None:
    def strip(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
        if scope["method"] != "PATCH" or not body:
            return scope, body
        try:
            patch = json.loads(body)
        except ValueError:
            return scope, body
        if not isinstance(patch, dict):
            return scope, body
        kept = {k: v for k, v in patch.items() if k not in _IMMUTABLE}
        if kept == patch:
            return scope, body
        return scope, json.dumps(kept or {"extensions": None}).encode()

    site.wrap_app(rewrite_requests(strip))


@fault(
    "malformed-identifier-answers-404",
    breaks=["CPIN-ID-001"],
    summary="looks malformed identifiers up instead of refusing them: 404 for a bad string",
)
def malformed_identifier_answers_404(site: FaultSite) -> None:
    def change(scope: Scope, status: int, slug: str) -> tuple[int, str] | None:
        return (404, "unknown-identifier") if slug == "malformed-identifier" else None

    site.wrap_app(rewrite_problems(site.node.spec, change))


@fault(
    "check-mismatch-reported-as-malformed",
    breaks=["CPIN-ID-002"],
    summary="a wrong check character is answered with problem type malformed-identifier",
)
def check_mismatch_reported_as_malformed(site: FaultSite) -> None:
    def change(scope: Scope, status: int, slug: str) -> tuple[int, str] | None:
        return (400, "malformed-identifier") if slug == "check-character-mismatch" else None

    site.wrap_app(rewrite_problems(site.node.spec, change))


@fault(
    "unknown-identifier-answers-not-found",
    breaks=["CPIN-ID-017"],
    summary="a never-registered identifier is answered 404 with problem type not-found",
)
def unknown_identifier_answers_not_found(site: FaultSite) -> None:
    def change(scope: Scope, status: int, slug: str) -> tuple[int, str] | None:
        return (404, "not-found") if slug == "unknown-identifier" else None

    site.wrap_app(rewrite_problems(site.node.spec, change))


@fault(
    "identifier-case-folded",
    breaks=["CPIN-ID-003"],
    summary="upper-cases identifiers and NodeCodes it receives instead of refusing lower case",
)
def identifier_case_folded(site: FaultSite) -> None:
    def fold(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
        path = str(scope["path"])
        if path.startswith(IDENTIFIER_PATHS + "/"):
            path = IDENTIFIER_PATHS + path.removeprefix(IDENTIFIER_PATHS).upper()
        query = [(k, v.upper() if k == "issuer" else v)
                 for k, v in parse_qsl(scope.get("query_string", b"").decode())]  # fmt: skip
        return {**scope, "path": path, "raw_path": path.encode(),
                "query_string": urlencode(query).encode()}, body  # fmt: skip

    site.wrap_app(rewrite_requests(fold))


@fault(
    "resource-type-not-checked",
    breaks=["CPIN-ID-004"],
    summary="takes any three letters as ResType: an unlisted type is looked up, 404",
)
def resource_type_not_checked(site: FaultSite) -> None:
    types = set(site.node.spec.codes("resource-type"))

    def change(scope: Scope, status: int, slug: str) -> tuple[int, str] | None:
        identifier = str(scope["path"]).removeprefix(IDENTIFIER_PATHS + "/")
        res_type = identifier[10:13]
        unlisted = len(identifier) == 23 and res_type.isalpha() and res_type.isupper()
        if slug == "malformed-identifier" and unlisted and res_type not in types:
            return 404, "unknown-identifier"
        return None

    site.wrap_app(rewrite_problems(site.node.spec, change))


@fault(
    "resolution-max-age-too-long",
    breaks=["CPIN-ID-016"],
    summary="resolution answers carry Cache-Control max-age=3600",
)
def resolution_max_age_too_long(site: FaultSite) -> None:
    def change(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> list[Any]:
        return [(k, _MAX_AGE.sub(b"max-age=3600", v) if k == b"cache-control" else v)
                for k, v in headers]  # fmt: skip

    site.wrap_app(rewrite_identifier_headers(change))


@fault(
    "cached-answers-keep-the-original-max-age",
    breaks=["CPIN-ID-032"],
    summary="a cached resolution repeats the issuer's max-age instead of its remaining lifetime",
)
def cached_answers_keep_the_original_max_age(site: FaultSite) -> None:
    def change(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> list[Any]:
        age = next((int(v) for k, v in headers if k == b"age"), 0)
        if not age:
            return headers
        return [(k, _MAX_AGE.sub(lambda m: b"max-age=%d" % (int(m.group(1)) + age), v)
                 if k == b"cache-control" else v) for k, v in headers]  # fmt: skip

    site.wrap_app(rewrite_identifier_headers(change))


@fault(
    "national-allow-lists-writes",
    breaks=["CPIN-ID-025"],
    summary="the national node's 405 on identifier writes lists the write methods in Allow",
    roles=["national"],
)
def national_allow_lists_writes(site: FaultSite) -> None:
    def change(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> list[Any]:
        if status != 405:
            return headers
        return [(k, b"GET, POST, PATCH, DELETE" if k == b"allow" else v) for k, v in headers]

    site.wrap_app(rewrite_identifier_headers(change))


def _wrap_resolution(site: FaultSite, rewrite: Rewrite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def resolving(call: Call) -> Reply:
            return await rewrite(call, handler)

        return resolving

    site.wrap_handler("resolveIdentifier", wrap)


@fault(
    "registration-not-resolvable-at-once",
    breaks=["CPIN-ID-027"],
    summary="a replica lag: identifiers younger than 3 s resolve 404 at the issuing node",
    roles=["regional", "industry"],
)
def registration_not_resolvable_at_once(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        record = _record(site.node, call.path["identifier"])
        if record is not None:
            created = datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))
            if site.node.now() - created < timedelta(seconds=3):
                raise Problem("unknown-identifier", "not registered (yet).")
        return await handler(call)

    _wrap_resolution(site, rewrite)


@fault(
    "local-resolution-says-proxied",
    breaks=["CPIN-ID-011"],
    summary="the issuing node answers its own identifiers with source proxied",
    roles=["regional", "industry"],
)
def local_resolution_says_proxied(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        reply = await handler(call)
        if reply.status == 200 and reply.body.get("source") == "local":
            return Reply(200, {**reply.body, "source": "proxied"}, reply.headers)
        return reply

    _wrap_resolution(site, rewrite)


@fault(
    "proxied-authority-is-the-answering-node",
    breaks=["CPIN-ID-013"],
    summary="a proxied or cached record names the answering node as its authority",
    roles=["industry", "national"],
)
def proxied_authority_is_the_answering_node(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        reply = await handler(call)
        if reply.status == 200 and reply.body.get("source") != "local":
            return Reply(200, {**reply.body, "authority": site.node.node_code}, reply.headers)
        return reply

    _wrap_resolution(site, rewrite)


@fault(
    "resolution-not-proxied",
    breaks=["CPIN-ID-012"],
    summary="resolves only its own identifiers: any other is 404 unknown-identifier",
    roles=["industry", "national"],
)
def resolution_not_proxied(site: FaultSite) -> None:
    async def local_only(identifier: str) -> tuple[int, Any, dict[str, str]]:
        raise Problem("unknown-identifier", f"{identifier} is not registered here.")

    site.node.federation.resolve = local_only  # type: ignore[method-assign]


@fault(
    "relayed-revocation-as-404",
    breaks=["CPIN-ID-015"],
    summary="relays the issuing node's 410 identifier-revoked as 404 unknown-identifier",
    roles=["industry", "national"],
)
def relayed_revocation_as_404(site: FaultSite) -> None:
    async def rewrite(call: Call, handler: Handler) -> Reply:
        try:
            return await handler(call)
        except Problem as problem:
            foreign = call.path["identifier"][:9] != site.node.node_code
            if foreign and problem.slug == "identifier-revoked":
                raise Problem("unknown-identifier", problem.detail) from None
            raise

    _wrap_resolution(site, rewrite)


@fault(
    "unregistered-node-answers-502",
    breaks=["CPIN-ID-018"],
    summary="an identifier whose NodeCode the registry lacks is answered 502, not 404",
)
def unregistered_node_answers_502(site: FaultSite) -> None:
    federation = site.node.federation
    original = federation.resolve

    async def resolve(identifier: str) -> tuple[int, Any, dict[str, str]]:
        if await federation.lookup(identifier[:9]) is None:
            raise Problem("upstream-unavailable", f"no answer for {identifier[:9]}")
        return await original(identifier)

    federation.resolve = resolve  # type: ignore[method-assign]


@fault(
    "list-hides-revoked",
    breaks=["CPIN-ID-024", "CPIN-ID-026"],
    summary="listIdentifiers without a state filter leaves revoked identifiers out",
)
def list_hides_revoked(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def listing(call: Call) -> Reply:
            reply = await handler(call)
            if "state" in call.query:
                return reply
            items = [i for i in reply.body["items"] if i["state"] != "revoked"]
            return Reply(reply.status, {**reply.body, "items": items}, reply.headers)

        return listing

    site.wrap_handler("listIdentifiers", wrap)


@fault(
    "list-state-filter-ignored",
    breaks=["CPIN-ID-026"],
    summary="listIdentifiers ignores its state filter",
)
def list_state_filter_ignored(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def listing(call: Call) -> Reply:
            call.query = {k: v for k, v in call.query.items() if k != "state"}
            return await handler(call)

        return listing

    site.wrap_handler("listIdentifiers", wrap)


def _skip_reports(site: FaultSite, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Upward identifier reports that send only the items `keep` allows (and move on)."""
    federation = site.node.federation

    async def report() -> int:
        after = int(federation.remembered("reported.identifiers") or 0)
        changes = changed_since(site.node.store, after, 200)
        if not changes:
            return 0
        items = [item for _, item in changes if keep(item)]
        if items:
            body = {"reporter": site.node.node_code, "identifiers": items}
            await federation._push(_FEDERATION_PUSH, "federation", body)
        federation.remember("reported.identifiers", str(changes[-1][0]))
        return len(changes)

    federation.report_identifiers = report  # type: ignore[method-assign]


@fault(
    "industry-identifiers-not-reported",
    breaks=["CPIN-ID-022"],
    summary="the industry node never reports the identifiers it mints",
    roles=["industry"],
)
def industry_identifiers_not_reported(site: FaultSite) -> None:
    _skip_reports(site, lambda item: False)


@fault(
    "industry-revocations-not-reported",
    breaks=["CPIN-ID-023"],
    summary="the industry node reports registrations but not revocations",
    roles=["industry"],
)
def industry_revocations_not_reported(site: FaultSite) -> None:
    _skip_reports(site, lambda item: item["state"] != "revoked")


@fault(
    "regional-identifiers-not-reported",
    breaks=["CPIN-ID-030"],
    summary="the regional node never reports identifiers to the national node",
    roles=["regional"],
)
def regional_identifiers_not_reported(site: FaultSite) -> None:
    _skip_reports(site, lambda item: False)
