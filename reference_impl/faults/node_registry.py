"""Faults of the node-registry class (national node): applications judged wrongly, NodeCodes
issued wrongly, node records, list filters, guarded updates and suspension."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from reference_impl.calls import Call, Handler, Reply, etag_of
from reference_impl.faults import FaultSite, fault
from reference_impl.faults._node_registry_tools import (
    rewrite_call,
    rewrite_reply,
    rewrite_request_json,
)
from reference_impl.ids import IdentifierRules, mod37_36, uscc_check
from reference_impl.problems import Problem
from reference_impl.registry import MIN_REGISTERED_CAPITAL_CNY

NATIONAL = ["national"]
APPLICATIONS = "/v1/node-applications"
PARTIES = ("applicant", "operator")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "r", "t", "k")


def _application(rewrite: Callable[[dict[str, Any]], None]) -> Callable[[Call], None]:
    """A call rewrite that changes the submitted application in place."""

    def change(call: Call) -> None:
        rewrite(call.body)

    return change


def _parties(application: dict[str, Any]) -> list[dict[str, Any]]:
    return [application[p] for p in PARTIES if isinstance(application.get(p), dict)]


@fault(
    "unknown-application-members-ignored",
    breaks=["CPIN-REG-001"],
    roles=NATIONAL,
    summary="a lenient front end drops unknown members of an application instead of "
    "refusing it with 400",
)
def unknown_members_ignored(site: FaultSite) -> None:
    known = set(
        site.node.spec.load("schemas/node-application.json")["$defs"]["NodeApplicationInput"][
            "properties"
        ]
    )

    def drop(body: Any) -> Any:
        return {k: v for k, v in body.items() if k in known} if isinstance(body, dict) else body

    site.wrap_app(rewrite_request_json("POST", APPLICATIONS, drop))


@fault(
    "capital-threshold-exclusive",
    breaks=["CPIN-REG-002"],
    roles=NATIONAL,
    summary="the capital rule compares with > instead of >=: exactly RMB 50 000 000 is rejected",
)
def capital_threshold_exclusive(site: FaultSite) -> None:
    def exclusive(application: dict[str, Any]) -> None:
        builder = application["applicant"]
        if builder["registeredCapitalCny"] == MIN_REGISTERED_CAPITAL_CNY:
            builder["registeredCapitalCny"] -= 1

    site.wrap_handler("submitNodeApplication", rewrite_call(_application(exclusive)))


@fault(
    "low-capital-approved",
    breaks=["CPIN-REG-002"],
    roles=NATIONAL,
    summary="registered capital is read in units of 10 000 yuan: every capital passes",
)
def low_capital_approved(site: FaultSite) -> None:
    def scaled(application: dict[str, Any]) -> None:
        builder = application["applicant"]
        builder["registeredCapitalCny"] = max(
            builder["registeredCapitalCny"], MIN_REGISTERED_CAPITAL_CNY
        )

    site.wrap_handler("submitNodeApplication", rewrite_call(_application(scaled)))


@fault(
    "missing-licence-approved",
    breaks=["CPIN-REG-003"],
    roles=NATIONAL,
    summary="the telecom licence rule is not applied: an unlicensed company is approved",
)
def missing_licence_approved(site: FaultSite) -> None:
    def exempt(application: dict[str, Any]) -> None:
        for party in _parties(application):
            if "telecomLicence" not in party:
                party["publicInstitution"] = True

    site.wrap_handler("submitNodeApplication", rewrite_call(_application(exempt)))


@fault(
    "public-institution-not-exempt",
    breaks=["CPIN-REG-003"],
    roles=NATIONAL,
    summary="the licence rule ignores the public-institution exemption",
)
def public_institution_not_exempt(site: FaultSite) -> None:
    def no_exemption(application: dict[str, Any]) -> None:
        for party in _parties(application):
            party["publicInstitution"] = False

    site.wrap_handler("submitNodeApplication", rewrite_call(_application(no_exemption)))


@fault(
    "dishonesty-record-ignored",
    breaks=["CPIN-REG-004"],
    roles=NATIONAL,
    summary="a declared major dishonesty record does not stop an approval",
)
def dishonesty_record_ignored(site: FaultSite) -> None:
    def honest(application: dict[str, Any]) -> None:
        for party in _parties(application):
            party["dishonestyRecordLast3Years"] = False

    site.wrap_handler("submitNodeApplication", rewrite_call(_application(honest)))


@fault(
    "second-regional-node-per-province-approved",
    breaks=["CPIN-REG-006"],
    roles=NATIONAL,
    summary="the one-regional-node-per-province rule is not applied",
)
def second_regional_node_approved(site: FaultSite) -> None:
    """The rule reads which node statuses hold a province from the node-status code list;
    this node's copy of the list marks every status terminal, so none holds one."""
    spec = site.node.spec

    class NoStatusHoldsAProvince:
        def __getattr__(self, name: str) -> Any:
            return getattr(spec, name)

        def codelist(self, name: str) -> Any:
            entries = spec.codelist(name)
            if name != "node-status":
                return entries
            return [{**entry, "x-terminal": True} for entry in entries]

    site.node.spec = NoStatusHoldsAProvince()  # type: ignore[assignment]


@fault(
    "industry-parent-not-checked",
    breaks=["CPIN-REG-007"],
    roles=NATIONAL,
    summary="an industry node is attached to its province's regional node whatever parent it names",
)
def industry_parent_not_checked(site: FaultSite) -> None:
    def attach(application: dict[str, Any]) -> None:
        if application["role"] != "industry":
            return
        row = site.node.store.row(
            "SELECT node_code FROM nodes WHERE role = 'regional' AND status = 'active'"
            " AND province = ? ORDER BY node_code",
            (application["province"],),
        )
        if row is not None:
            application["parentNodeCode"] = row["node_code"]

    site.wrap_handler("submitNodeApplication", rewrite_call(_application(attach)))


@fault(
    "invalid-uscc-accepted",
    breaks=["CPIN-REG-008"],
    roles=NATIONAL,
    summary="the USCC check character is not verified (it is recomputed instead)",
)
def invalid_uscc_accepted(site: FaultSite) -> None:
    def recomputed(application: dict[str, Any]) -> None:
        for party in _parties(application):
            code = party.get("uscc", "")
            if len(code) == 18:
                party["uscc"] = code[:17] + uscc_check(code[:17])

    site.wrap_handler("submitNodeApplication", rewrite_call(_application(recomputed)))


@fault(
    "industry-code-not-checked",
    breaks=["CPIN-REG-009"],
    roles=NATIONAL,
    summary="an industry that is no GB/T 4754-2017 division is taken as division 38 of C",
)
def industry_code_not_checked(site: FaultSite) -> None:
    divisions = IdentifierRules.from_spec(site.node.spec).division_section

    def defaulted(application: dict[str, Any]) -> None:
        industry = application.get("industry")
        if industry and divisions.get(industry[1:]) != industry[0]:
            application["industry"] = "C38"

    site.wrap_handler("submitNodeApplication", rewrite_call(_application(defaulted)))


@fault(
    "rejection-lists-first-violation-only",
    breaks=["CPIN-REG-010"],
    roles=NATIONAL,
    summary="a rejected application names only the first rule it fails",
)
def first_violation_only(site: FaultSite) -> None:
    def first(call: Call, reply: Reply) -> Reply:
        if isinstance(reply.body, dict) and reply.body.get("violations"):
            reply.body["violations"] = reply.body["violations"][:1]
        return reply

    site.wrap_handler("submitNodeApplication", rewrite_reply(first))
    site.wrap_handler("getNodeApplication", rewrite_reply(first))


@fault(
    "node-code-wrong-check-character",
    breaks=["CPIN-REG-012"],
    roles=NATIONAL,
    summary="the check character of an issued NodeCode is computed over 7 characters",
)
def node_code_wrong_check(site: FaultSite) -> None:
    def short(call: Call, reply: Reply) -> Reply:
        code = reply.body.get("nodeCode") if isinstance(reply.body, dict) else None
        if code:
            wrong = mod37_36(code[:7])
            reply.body["nodeCode"] = code[:8] + (wrong if wrong != code[8] else "0")
        return reply

    site.wrap_handler("submitNodeApplication", rewrite_reply(short))


@fault(
    "duplicate-node-code-under-concurrency",
    breaks=["CPIN-REG-013"],
    roles=NATIONAL,
    summary="two approvals of the same type, province and industry within a second are "
    "told the same NodeCode (Seq read outside the transaction)",
)
def duplicate_node_code(site: FaultSite) -> None:
    issued: dict[str, tuple[float, str]] = {}

    def stale(call: Call, reply: Reply) -> Reply:
        code = reply.body.get("nodeCode") if isinstance(reply.body, dict) else None
        if code:
            now = time.monotonic()
            earlier = issued.get(code[:6])
            if earlier is not None and now - earlier[0] < 1.0:
                reply.body["nodeCode"] = earlier[1]
            else:
                issued[code[:6]] = (now, code)
        return reply

    site.wrap_handler("submitNodeApplication", rewrite_reply(stale))


@fault(
    "node-record-without-operator",
    breaks=["CPIN-REG-015"],
    roles=NATIONAL,
    summary="getNode leaves out the node's operator",
)
def node_record_without_operator(site: FaultSite) -> None:
    def anonymous(call: Call, reply: Reply) -> Reply:
        if isinstance(reply.body, dict):
            reply.body.pop("operator", None)
        return reply

    site.wrap_handler("getNode", rewrite_reply(anonymous))


@fault(
    "node-list-parent-filter-ignored",
    breaks=["CPIN-REG-016"],
    roles=NATIONAL,
    summary="listNodes ignores the parent filter",
)
def parent_filter_ignored(site: FaultSite) -> None:
    def unfiltered(call: Call) -> None:
        call.query.pop("parent", None)

    site.wrap_handler("listNodes", rewrite_call(unfiltered))


@fault(
    "node-update-without-if-match",
    breaks=["CPIN-REG-017"],
    roles=NATIONAL,
    summary="updateNode applies a patch that carries no If-Match",
)
def update_without_if_match(site: FaultSite) -> None:
    def current(call: Call) -> None:
        if "if-match" not in call.headers:
            record = site.node.store.row(
                "SELECT record FROM nodes WHERE node_code = ?", (call.path["nodeCode"],)
            )
            if record is not None:
                call.headers = {**call.headers, "if-match": etag_of(json.loads(record["record"]))}

    site.wrap_handler("updateNode", rewrite_call(current))


@fault(
    "suspended-node-still-listed-active",
    breaks=["CPIN-REG-018"],
    roles=NATIONAL,
    summary="listNodes shows suspended nodes as active (a stale list cache)",
)
def suspended_listed_active(site: FaultSite) -> None:
    def stale(call: Call, reply: Reply) -> Reply:
        for item in reply.body.get("items", []) if isinstance(reply.body, dict) else []:
            if item.get("status") == "suspended":
                item["status"] = "active"
                item.pop("suspension", None)
        return reply

    site.wrap_handler("listNodes", rewrite_reply(stale))


@fault(
    "reinstating-active-node-conflicts",
    breaks=["CPIN-REG-019"],
    roles=NATIONAL,
    summary="reinstateNode on an active node answers 409 instead of succeeding",
)
def reinstate_not_idempotent(site: FaultSite) -> None:
    def strict(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            row = site.node.store.row(
                "SELECT status FROM nodes WHERE node_code = ?", (call.path["nodeCode"],)
            )
            if row is not None and row["status"] == "active":
                raise Problem("illegal-state-transition", "The node is not suspended.")
            return await handler(call)

        return wrapped

    site.wrap_handler("reinstateNode", strict)


@fault(
    "suspended-node-assertions-accepted",
    breaks=["CPIN-REG-020"],
    roles=NATIONAL,
    summary="the national node checks a node assertion's signature but not the caller's status",
)
def suspended_assertions_accepted(site: FaultSite) -> None:
    security = site.node.security
    lookup = security.lookup_node

    async def as_active(node_code: str) -> dict[str, Any] | None:
        record = await lookup(node_code)
        if record is not None and record.get("status") == "suspended":
            return {**record, "status": "active"}
        return record

    security.lookup_node = as_active


@fault(
    "unknown-application-answers-400",
    breaks=["CPIN-REG-022"],
    roles=NATIONAL,
    summary="getNodeApplication answers an unknown id with 400 invalid-request",
)
def unknown_application_400(site: FaultSite) -> None:
    def wrap(handler: Handler) -> Handler:
        async def wrapped(call: Call) -> Reply:
            try:
                return await handler(call)
            except Problem as problem:
                if problem.slug != "not-found":
                    raise
                raise Problem("invalid-request", "No such application.") from None

        return wrapped

    site.wrap_handler("getNodeApplication", wrap)


@fault(
    "private-key-members-stripped",
    breaks=["CPIN-REG-021"],
    roles=NATIONAL,
    summary="private members of application keys are dropped instead of refused, and "
    "symmetric keys pass",
)
def private_keys_stripped(site: FaultSite) -> None:
    def public(body: Any) -> Any:
        keys = body.get("jwks", {}).get("keys", []) if isinstance(body, dict) else []
        for index, key in enumerate(keys):
            if isinstance(key, dict):
                if key.get("kty") != "OKP":
                    keys[index] = {
                        "kty": "OKP",
                        "crv": "Ed25519",
                        "alg": "EdDSA",
                        "use": "sig",
                        "kid": key.get("kid", "k"),
                        "x": "A" * 43,
                    }
                for member in PRIVATE_MEMBERS:
                    keys[index].pop(member, None)
        return body

    site.wrap_app(rewrite_request_json("POST", APPLICATIONS, public))


@fault(
    "national-role-application-accepted",
    breaks=["CPIN-REG-023"],
    roles=NATIONAL,
    summary="an application for the national role is judged as a regional one",
)
def national_role_accepted(site: FaultSite) -> None:
    def regional(body: Any) -> Any:
        if isinstance(body, dict) and body.get("role") == "national":
            body["role"] = "regional"
        return body

    site.wrap_app(rewrite_request_json("POST", APPLICATIONS, regional))
