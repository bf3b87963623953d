"""reference_impl/api/registry.py over HTTP: applications, NodeCodes, node records, suspension.

The national node of these tests validates every answer against the spec (validate_responses),
so each 2xx body below is also a schema check.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reference_impl.api.registry import REFERENCE_OPERATOR, ensure_national_record
from reference_impl.calls import HANDLERS, Call, Principal, Reply
from reference_impl.node import Node, NodeConfig
from reference_impl.registry import node_code
from spec import default
from tests.reference_impl.conftest import RunningNode

SPEC = default()
APPLY, READ, WRITE, ADMIN = "registry:apply", "registry:read", "registry:write", "registry:admin"
ALL = f"{APPLY} {READ} {WRITE} {ADMIN} audit:read"
REASON = {"zh": "连续7日未上报监测数据。", "en": "No monitoring data reported for 7 days."}


@pytest.fixture
def national(node_factory: Callable[..., RunningNode]) -> RunningNode:
    return node_factory(role="national")


def example(role: str) -> dict[str, Any]:
    inputs = SPEC.load("schemas/node-application.json")["$defs"]["NodeApplicationInput"]
    found: dict[str, Any] = next(e for e in inputs["examples"] if e["role"] == role)
    return copy.deepcopy(found)


def regional(province: str = "44", **changes: Any) -> dict[str, Any]:
    application = example("regional")
    application["province"] = province
    application["applicant"] |= changes
    return application


def industry(parent: str = "R4400001E", industry_code: str = "C38") -> dict[str, Any]:
    application = example("industry")
    application["parentNodeCode"] = parent
    application["industry"] = industry_code
    application["province"] = parent[1:3]
    return application


def submit(national: RunningNode, application: dict[str, Any]) -> httpx.Response:
    return national.client.post(
        "/v1/node-applications", json=application, headers=national.auth(APPLY)
    )


def approved(national: RunningNode, application: dict[str, Any]) -> str:
    response = submit(national, application)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "approved", body
    code: str = body["nodeCode"]
    return code


def get_node(national: RunningNode, code: str) -> httpx.Response:
    return national.client.get(f"/v1/nodes/{code}", headers=national.auth(READ))


def list_nodes(national: RunningNode, **params: Any) -> list[str]:
    response = national.client.get("/v1/nodes", params=params, headers=national.auth(READ))
    assert response.status_code == 200, response.text
    return [item["nodeCode"] for item in response.json()["items"]]


def recorded(national: RunningNode, table: str) -> int:
    row = national.node.store.row(f"SELECT count(*) AS n FROM {table}")
    assert row is not None
    return int(row["n"])


def audit_actions(national: RunningNode) -> list[str]:
    rows = national.node.store.rows("SELECT action FROM audit_events ORDER BY seq")
    return [row["action"] for row in rows]


def set_status(national: RunningNode, code: str, status: str) -> None:
    """Suspension through the interface; revocation, which no operation performs, in place."""
    if status == "suspended":
        assert suspend(national, code).status_code == 200
        return
    row = national.node.store.row("SELECT record FROM nodes WHERE node_code = ?", (code,))
    assert row is not None
    record = json.loads(row["record"]) | {"status": status}
    record.pop("suspension", None)
    with national.node.store.transaction() as db:
        db.execute(
            "UPDATE nodes SET status = ?, record = ? WHERE node_code = ?",
            (status, json.dumps(record), code),
        )


# --- submitNodeApplication, getNodeApplication ------------------------------------------------


def test_approval_issues_a_node_code_and_creates_the_node(national: RunningNode) -> None:
    response = submit(national, regional())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "approved"
    assert body["nodeCode"] == "R4400001E"
    assert "violations" not in body
    assert response.headers["location"] == f"/v1/node-applications/{body['applicationId']}"
    again = national.client.get(response.headers["location"], headers=national.auth(READ))
    assert again.status_code == 200
    assert again.json() == body
    node = get_node(national, "R4400001E")
    assert node.status_code == 200
    record = node.json()
    assert record["status"] == "active"
    assert record["parentNodeCode"] == "N0000001U"
    assert record["jwks"] == regional()["jwks"]
    assert node.headers["etag"].startswith('"')
    assert audit_actions(national) == ["node.application.submitted"]


def test_rejection_lists_every_violated_rule_and_stays_retrievable(
    national: RunningNode,
) -> None:
    operation = SPEC.openapi["paths"]["/v1/node-applications"]["post"]
    fails = operation["requestBody"]["content"]["application/json"]["examples"]["failsRules"]
    response = submit(national, fails["value"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "rejected"
    assert [v["rule"] for v in body["violations"]] == ["CPIN-REG-002", "CPIN-REG-003"]
    assert "nodeCode" not in body
    again = national.client.get(
        f"/v1/node-applications/{body['applicationId']}", headers=national.auth(READ)
    )
    assert again.json() == body
    assert recorded(national, "nodes") == 1  # the national node's own record only


@pytest.mark.parametrize(
    ("capital", "status"), [(50_000_000, "approved"), (49_999_999, "rejected")]
)
def test_capital_boundary(national: RunningNode, capital: int, status: str) -> None:
    response = submit(national, regional(registeredCapitalCny=capital))
    assert response.json()["status"] == status


def test_unknown_application_is_404(national: RunningNode) -> None:
    response = national.client.get(
        "/v1/node-applications/5d2c8e1f-7a3b-4c9d-8e0f-1a2b3c4d5e6f", headers=national.auth(READ)
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("/not-found")


def _private_key(application: dict[str, Any]) -> None:
    application["jwks"]["keys"][0]["d"] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"


def _symmetric_key(application: dict[str, Any]) -> None:
    application["jwks"]["keys"] = [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1", "alg": "HS256"}]


def _bad_uscc(application: dict[str, Any]) -> None:
    application["applicant"]["uscc"] = "9144030071526726X0"


def _national_role(application: dict[str, Any]) -> None:
    application["role"] = "national"


def _province_00(application: dict[str, Any]) -> None:
    application["province"] = "00"


def _province_66(application: dict[str, Any]) -> None:
    application["province"] = "66"


@pytest.mark.parametrize(
    "defect",
    [_private_key, _symmetric_key, _bad_uscc, _national_role, _province_00, _province_66],
)
def test_invalid_application_is_400_and_records_nothing(
    national: RunningNode, defect: Callable[[dict[str, Any]], None]
) -> None:
    application = regional()
    defect(application)
    response = submit(national, application)
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("/invalid-request")
    assert recorded(national, "node_applications") == 0
    assert audit_actions(national) == []


@pytest.mark.parametrize(
    ("changes", "slug"),
    [
        ({"industry": "I38"}, "invalid-request"),
        ({"parentNodeCode": "R4400001F"}, "check-character-mismatch"),
    ],
)
def test_invalid_industry_application_is_400(
    national: RunningNode, changes: dict[str, str], slug: str
) -> None:
    response = submit(national, industry() | changes)
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith(f"/{slug}")
    assert recorded(national, "node_applications") == 0


def test_one_regional_node_per_province(national: RunningNode) -> None:
    assert approved(national, regional()) == "R4400001E"
    second = submit(national, regional()).json()
    assert second["status"] == "rejected"
    assert [v["rule"] for v in second["violations"]] == ["CPIN-REG-006"]
    set_status(national, "R4400001E", "suspended")
    assert submit(national, regional()).json()["violations"][0]["rule"] == "CPIN-REG-006"
    set_status(national, "R4400001E", "revoked")
    assert approved(national, regional()) == node_code("R44000", 2)  # a successor: next Seq
    assert approved(national, regional("65")) == "R6500001R"


def test_concurrent_regional_applications_for_one_province(national: RunningNode) -> None:
    results: list[dict[str, Any]] = []
    start = threading.Barrier(8)

    def apply() -> None:
        start.wait()
        results.append(submit(national, regional()).json())

    threads = [threading.Thread(target=apply) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r["status"] for r in results)
    assert statuses == ["approved"] + ["rejected"] * 7
    assert list_nodes(national, role="regional", province="44") == ["R4400001E"]


def test_two_processes_sharing_the_registry_approve_one_regional_node(tmp_path: Path) -> None:
    """Two stores over one database file: only SQLite's BEGIN IMMEDIATE lock serialises them."""
    config = NodeConfig(role="national", data_dir=tmp_path, node_code="N0000001U")
    nodes = [Node(config, SPEC), Node(config, SPEC)]
    handler = HANDLERS["submitNodeApplication"]
    replies: list[Reply] = []
    start = threading.Barrier(len(nodes) * 4)

    def apply(node: Node, n: int) -> None:
        call = Call(
            operation_id="submitNodeApplication",
            request=None,  # type: ignore[arg-type]
            node=node,
            request_id=f"r{n}",
            principal=Principal("applicant", frozenset({APPLY})),
            body=regional(),
        )
        start.wait()
        replies.append(asyncio.run(handler(call)))

    threads = [threading.Thread(target=apply, args=(node, i)) for i in range(4) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for node in nodes:
        node.close()
    assert sorted(r.body["status"] for r in replies) == ["approved"] + ["rejected"] * 7


def test_industry_node_under_its_regional_parent(national: RunningNode) -> None:
    parent = approved(national, regional())
    assert approved(national, industry(parent)) == "I44C3801D"
    assert approved(national, industry(parent)) == node_code("I44C38", 2)  # same triple: next Seq
    assert approved(national, industry(parent, "I65")) == node_code("I44I65", 1)
    record = get_node(national, "I44C3801D").json()
    assert (record["industry"], record["parentNodeCode"]) == ("C38", parent)


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_industry_parent_must_be_active(national: RunningNode, status: str) -> None:
    parent = approved(national, regional())
    set_status(national, parent, status)
    body = submit(national, industry(parent)).json()
    assert [v["rule"] for v in body["violations"]] == ["CPIN-REG-007"]


def test_industry_parent_must_be_registered(national: RunningNode) -> None:
    body = submit(national, industry("R4400001E")).json()
    assert [v["rule"] for v in body["violations"]] == ["CPIN-REG-007"]


def test_seq_is_never_allocated_twice_and_runs_out(national: RunningNode) -> None:
    """Regional Seqs of one province: each successor takes the next; after 99, no more."""
    for seq in range(1, 100):
        code = approved(national, regional("11"))
        assert code[6:8] == f"{seq:02d}"
        set_status(national, code, "revoked")
    body = submit(national, regional("11")).json()
    assert [v["rule"] for v in body["violations"]] == ["CPIN-REG-014"]


# --- listNodes, getNode ---------------------------------------------------------------------


def test_list_filters_and_pages(national: RunningNode) -> None:
    ensure_national_record(national.node)
    r44 = approved(national, regional())
    r65 = approved(national, regional("65"))
    i1 = approved(national, industry(r44))
    i2 = approved(national, industry(r44, "I65"))
    i3 = approved(national, industry(r65, "A01"))
    set_status(national, i2, "suspended")
    assert list_nodes(national) == sorted(["N0000001U", r44, r65, i1, i2, i3])
    assert list_nodes(national, role="industry") == sorted([i1, i2, i3])
    assert list_nodes(national, province="44") == sorted([r44, i1, i2])
    assert list_nodes(national, industry="C38") == [i1]
    assert list_nodes(national, status="suspended") == [i2]
    assert list_nodes(national, parent=r44) == sorted([i1, i2])
    assert list_nodes(national, parent="N0000001U") == sorted([r44, r65])
    assert list_nodes(national, role="industry", province="44", status="active") == [i1]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = national.client.get("/v1/nodes", params=params, headers=national.auth(READ))
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [item["nodeCode"] for item in page["items"]]
        if "nextCursor" not in page:
            break
        params["cursor"] = page["nextCursor"]
    assert seen == sorted(["N0000001U", r44, r65, i1, i2, i3])


def test_list_refuses_a_cursor_it_did_not_issue(national: RunningNode) -> None:
    response = national.client.get(
        "/v1/nodes", params={"cursor": "bm90LWEtY29kZQ"}, headers=national.auth(READ)
    )
    assert response.status_code == 400


def test_unknown_node_is_404(national: RunningNode) -> None:
    response = get_node(national, "R4400001E")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/not-found")


def test_national_record_exists_and_follows_the_node(national: RunningNode) -> None:
    ensure_national_record(national.node)
    first = get_node(national, "N0000001U")
    assert first.status_code == 200, first.text
    record = first.json()
    assert record["role"] == "national"
    assert record["jwks"] == national.node.security.jwks()
    assert record["endpoint"] == national.node.config.base_url
    assert record["operator"] == REFERENCE_OPERATOR
    ensure_national_record(national.node)
    assert get_node(national, "N0000001U").json() == record  # idempotent
    national.node.config.port += 1
    ensure_national_record(national.node)
    moved = get_node(national, "N0000001U").json()
    assert moved["endpoint"] == national.node.config.base_url
    assert moved["createdAt"] == record["createdAt"]


# --- updateNode -----------------------------------------------------------------------------


def patch(national: RunningNode, code: str, body: Any, **headers: str) -> httpx.Response:
    return national.client.patch(
        f"/v1/nodes/{code}",
        content=json.dumps(body),
        headers={
            **national.auth(WRITE),
            "Content-Type": "application/merge-patch+json",
            **headers,
        },
    )


def test_update_needs_if_match(national: RunningNode) -> None:
    code = approved(national, regional())
    before = get_node(national, code)
    missing = patch(national, code, {"endpoint": "https://cpn2.gd.example.cn/"})
    assert missing.status_code == 428
    assert missing.json()["type"].endswith("/precondition-required")
    stale = patch(national, code, {"endpoint": "https://x.example.cn/"}, **{"If-Match": '"0"'})
    assert stale.status_code == 412
    assert stale.json()["type"].endswith("/precondition-failed")
    assert get_node(national, code).json() == before.json()
    assert audit_actions(national) == ["node.application.submitted"]


def test_update_merges_the_patch(national: RunningNode) -> None:
    code = approved(national, regional())
    before = get_node(national, code)
    body = {"endpoint": "https://cpn2.gd.example.cn/", "name": {"en": "GBA platform"}}
    response = patch(national, code, body, **{"If-Match": before.headers["etag"]})
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["endpoint"] == body["endpoint"]
    assert record["name"] == {"zh": before.json()["name"]["zh"], "en": "GBA platform"}
    assert response.headers["etag"] != before.headers["etag"]
    assert get_node(national, code).json() == record
    assert audit_actions(national)[-1] == "node.updated"
    reused = patch(national, code, body, **{"If-Match": before.headers["etag"]})
    assert reused.status_code == 412


@pytest.mark.parametrize(
    "field",
    [
        {"nodeCode": "R4400002C"},
        {"role": "industry"},
        {"province": "45"},
        {"industry": "C38"},
        {"status": "revoked"},
        {"parentNodeCode": "N0000001U"},
    ],
)
def test_identity_fields_are_immutable(national: RunningNode, field: dict[str, str]) -> None:
    code = approved(national, regional())
    before = get_node(national, code)
    response = patch(national, code, field, **{"If-Match": before.headers["etag"]})
    assert response.status_code == 400
    assert get_node(national, code).json() == before.json()


# --- suspendNode, reinstateNode -------------------------------------------------------------


def suspend(national: RunningNode, code: str, reason: dict[str, str] = REASON) -> httpx.Response:
    return national.client.put(
        f"/v1/nodes/{code}/suspension", json={"reason": reason}, headers=national.auth(ADMIN)
    )


def reinstate(national: RunningNode, code: str) -> httpx.Response:
    return national.client.delete(f"/v1/nodes/{code}/suspension", headers=national.auth(ADMIN))


def test_suspension_and_reinstatement(national: RunningNode) -> None:
    code = approved(national, regional())
    first = suspend(national, code)
    assert first.status_code == 200, first.text
    record = first.json()
    assert (record["nodeCode"], record["status"]) == (code, "suspended")
    assert record["suspension"]["reason"] == REASON
    assert get_node(national, code).json() == record
    assert list_nodes(national, status="suspended") == [code]
    again = suspend(national, code)
    assert again.status_code == 200
    assert again.json() == record  # idempotent: first suspension time kept
    other = {"zh": "申报不实。", "en": "False declaration."}
    changed = suspend(national, code, other).json()
    assert changed["suspension"] == {"reason": other, "since": record["suspension"]["since"]}
    back = reinstate(national, code)
    assert back.status_code == 200, back.text
    assert (back.json()["nodeCode"], back.json()["status"]) == (code, "active")
    assert "suspension" not in back.json()
    assert list_nodes(national, status="active") == ["N0000001U", code]  # national is active too
    assert reinstate(national, code).json() == back.json()  # idempotent
    assert audit_actions(national) == [
        "node.application.submitted",
        *["node.suspended"] * 3,
        *["node.reinstated"] * 2,
    ]


def test_revoked_node_is_neither_suspended_nor_reinstated(national: RunningNode) -> None:
    code = approved(national, regional())
    set_status(national, code, "revoked")
    for response in (suspend(national, code), reinstate(national, code)):
        assert response.status_code == 409
        assert response.json()["type"].endswith("/illegal-state-transition")
    assert get_node(national, code).json()["status"] == "revoked"


def test_national_node_cannot_suspend_itself(national: RunningNode) -> None:
    ensure_national_record(national.node)
    response = suspend(national, "N0000001U")
    assert response.status_code == 403
    assert get_node(national, "N0000001U").json()["status"] == "active"


def test_unknown_node_cannot_be_suspended(national: RunningNode) -> None:
    assert suspend(national, "R4400001E").status_code == 404
    assert reinstate(national, "R4400001E").status_code == 404
