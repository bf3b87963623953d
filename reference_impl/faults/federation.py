"""Faults of the federation class: registration, registered keys, peers, upward reports and
answers relayed from other nodes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from reference_impl.api.federation import _child_caller
from reference_impl.api.identification import store_reported
from reference_impl.calls import Call, Handler, Principal, Reply
from reference_impl.faults import FaultSite, fault
from reference_impl.faults._node_registry_tools import rewrite_call, rewrite_reply
from reference_impl.ids import mod37_36
from reference_impl.problems import Problem
from reference_impl.security import _b64url

BELOW_NATIONAL = ["regional", "industry"]


@fault(
    "served-node-code-unregistered",
    breaks=["CPIN-FED-001"],
    roles=BELOW_NATIONAL,
    summary="service-info names a NodeCode the national node never issued (the next Seq)",
)
def served_code_unregistered(site: FaultSite) -> None:
    def next_seq(call: Call, reply: Reply) -> Reply:
        code = reply.body.get("nodeCode") if isinstance(reply.body, dict) else None
        if code:
            data = f"{code[:6]}{int(code[6:8]) % 99 + 1:02d}"
            reply.body["nodeCode"] = data + mod37_36(data)
        return reply

    site.wrap_handler("getServiceInfo", rewrite_reply(next_seq))


@fault(
    "signing-key-not-registered",
    breaks=["CPIN-FED-002"],
    roles=BELOW_NATIONAL,
    summary="a key rotated in locally is served at /v1/jwks but never sent to the registry",
)
def signing_key_not_registered(site: FaultSite) -> None:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    rotated = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(raw),
        "kid": "rotated-locally",
        "use": "sig",
        "alg": "EdDSA",
    }

    def with_rotated(call: Call, reply: Reply) -> Reply:
        if isinstance(reply.body, dict):
            reply.body = {**reply.body, "keys": [*reply.body.get("keys", []), rotated]}
        return reply

    site.wrap_handler("getJwks", rewrite_reply(with_rotated))


@fault(
    "reporter-field-trusted",
    breaks=["CPIN-FED-004"],
    roles=["national", "regional"],
    summary="reportIdentifiers takes the caller from the body's reporter, not from the "
    "token: any client may report as a child",
)
def reporter_field_trusted(site: FaultSite) -> None:
    def as_reporter(call: Call) -> None:
        if call.principal.node_code is None:
            call.principal = replace(call.principal, node_code=call.body.get("reporter"))

    site.wrap_handler("reportIdentifiers", rewrite_call(as_reporter))


@fault(
    "foreign-prefix-reported-identifiers-applied",
    breaks=["CPIN-FED-005"],
    roles=["regional", "national"],
    summary="identifiers reported by a child are applied without the subtree check",
)
def foreign_prefix_applied(site: FaultSite) -> None:
    def unchecked(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            caller = await _child_caller(call)
            items = call.body["identifiers"]
            with call.node.store.transaction() as db:
                for item in items:
                    store_reported(db, item)
                call.node.audit(db, call, "federation.identifiers.reported", caller, status=200)
            return Reply(200, {"accepted": len(items), "rejected": []})

        return wrapped

    site.wrap_handler("reportIdentifiers", unchecked)


@fault(
    "parent-listed-as-national-peer",
    breaks=["CPIN-FED-006"],
    roles=BELOW_NATIONAL,
    summary="listPeers gives the national node relation 'national' also where it is the parent",
)
def parent_listed_as_national(site: FaultSite) -> None:
    def national_first(call: Call, reply: Reply) -> Reply:
        national = site.node.federation.national.get("nodeCode")
        for item in reply.body.get("items", []) if isinstance(reply.body, dict) else []:
            if item.get("nodeCode") == national:
                item["relation"] = "national"
        return reply

    site.wrap_handler("listPeers", rewrite_reply(national_first))


@fault(
    "authority-answers-become-502",
    breaks=["CPIN-FED-007"],
    roles=BELOW_NATIONAL,
    summary="a proxied resolution maps every non-200 answer of the issuing node to 502",
)
def authority_answers_become_502(site: FaultSite) -> None:
    federation = site.node.federation
    resolve = federation.resolve

    async def only_200(identifier: str) -> tuple[int, Any, dict[str, str]]:
        status, body, headers = await resolve(identifier)
        if status != 200:
            raise Problem("upstream-unavailable", f"the issuing node answered {status}")
        return status, body, headers

    federation.resolve = only_200  # type: ignore[method-assign]


@fault(
    "unreachable-issuer-answers-404",
    breaks=["CPIN-FED-008"],
    roles=BELOW_NATIONAL,
    summary="an issuing node that cannot be reached is taken to know no such identifier",
)
def unreachable_issuer_404(site: FaultSite) -> None:
    federation = site.node.federation
    resolve = federation.resolve

    async def unknown_when_down(identifier: str) -> tuple[int, Any, dict[str, str]]:
        try:
            return await resolve(identifier)
        except Problem as problem:
            if problem.slug not in {"upstream-unavailable", "upstream-timeout"}:
                raise
            raise Problem("unknown-identifier", f"{identifier} is not known") from None

    federation.resolve = unknown_when_down  # type: ignore[method-assign]


@fault(
    "node-to-node-resolution-proxied",
    breaks=["CPIN-ID-028"],
    summary="a resolution another node asks for is proxied onward like a client's",
)
def node_to_node_resolution_proxied(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def resolve(call: Call) -> Reply:
            if call.principal.node_code is not None:
                principal = Principal(call.principal.subject, call.principal.scopes)
                call = replace(call, principal=principal)
            return await handler(call)

        return resolve

    site.wrap_handler("resolveIdentifier", wrap)
