"""Monitoring class: metric batches validated, the freshness rule, queries, the monitoring
status, the upward flow and the roll-up by precision.

pushMetrics, queryMetrics and getRollup are served by the national and regional nodes. A
regional node's own resources carry the suite's resource records; the national node holds no
resources, so its resource records are pushed at a regional peer and reach it upward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.identifiers import mod37_36
from conformance.provisioning import Provisioner
from conformance.session import Certifier, RequirementFailure
from conformance.suite._monitoring import (
    ARRIVAL_DEADLINE_S,
    figure_at,
    finding_ids,
    instant,
    l0,
    now_at,
    probe_name,
    push,
    push_accepted,
    query,
    rollup_findings,
    same_measurement,
    score,
    stored_copies,
    subject,
    wait_for,
    wait_until_stale,
)
from conformance.suite._scheduling import (
    Placement,
    own_placement,
    peer_placement,
    unknown_resource_id,
)
from spec import Spec

PUSH_RESULT = "schemas/metric-record.json#/$defs/MetricPushResult"
STATUS = "schemas/monitoring-status.json"


@pytest.fixture(scope="session")
def peer(
    node: NodeClient, role: str, service_info: dict[str, Any], certifier: Certifier
) -> Iterator[Placement]:
    with peer_placement(node, role, service_info["nodeCode"], certifier) as found:
        yield found


@pytest.fixture(scope="session")
def placement(
    request: pytest.FixtureRequest,
    node: NodeClient,
    role: str,
    provision: Provisioner,
    service_info: dict[str, Any],
) -> Placement:
    """Where the target runs tasks: its own catalogue, or (national) a regional peer's."""
    if role == "national":
        remote: Placement = request.getfixturevalue("peer")
        return remote
    return own_placement(node, provision, service_info)


@dataclass(frozen=True)
class ResourceSubject:
    """A resource the suite may report on: `pusher` takes its records (the target itself, or
    for the national node the regional peer it reaches through)."""

    pusher: NodeClient
    node_code: str
    resource_id: str
    upward: bool

    def about(self) -> dict[str, str]:
        return subject(self.node_code, self.resource_id)


@pytest.fixture(scope="session")
def metric_resource(placement: Placement, role: str) -> ResourceSubject:
    created = placement.resource(8)
    return ResourceSubject(placement.client, placement.node_code, created["resourceId"],
                           upward=role == "national")  # fmt: skip


@pytest.fixture(scope="session")
def own_code(service_info: dict[str, Any]) -> str:
    return str(service_info["nodeCode"])


def _held(node: NodeClient, record: dict[str, Any], via: ResourceSubject) -> None:
    """Wait until the node under test holds `record` (pushed upward first, for the national
    node)."""
    arrived = wait_for(lambda: bool(stored_copies(node, record)),
                       ARRIVAL_DEADLINE_S if via.upward else 0.0)  # fmt: skip
    precondition(arrived, f"the record pushed at {via.node_code} did not reach the node")


def _refused_whole(
    node: NodeClient, contract: Contract, records: list[dict[str, Any]], why: str
) -> None:
    response = push(node, records)
    assert response.status_code == 400, (
        f"pushMetrics answered {response.status_code} to a batch with {why}; the spec requires 400"
    )
    contract.expect_problem(response, 400)
    for record in records:
        if record.get("level") == "L0" and "name" in record:
            stored = stored_copies(node, record) if _queryable(record) else []
            assert not stored, f"a record of the refused batch ({why}) was stored anyway"


def _queryable(record: dict[str, Any]) -> bool:
    """Whether the harness can look the record up (its fields are valid query values)."""
    try:
        instant(record["timestamp"])
    except (KeyError, ValueError):
        return False
    return record["level"] in {"L0", "L1", "L2"}


@pytest.mark.requirement("CPIN-MON-001")
def test_invalid_batch_is_refused_and_nothing_stored(
    node: NodeClient, contract: Contract, own_code: str, certifier: Certifier
) -> None:
    me = subject(own_code)
    good = l0(me, probe_name(certifier.run_id, "valid"), 12.5)
    backwards = l0(me, probe_name(certifier.run_id, "window"), 40.0)
    backwards["window"] = {"start": now_at(-10), "end": now_at(-70)}
    _refused_whole(node, contract, [good, backwards], "a window that ends before it starts")
    incomplete = l0(me, probe_name(certifier.run_id, "novalidity"), 3.0)
    del incomplete["validitySeconds"]
    good = l0(me, probe_name(certifier.run_id, "valid"), 13.5)
    _refused_whole(node, contract, [good, incomplete], "a record without validitySeconds")


@pytest.mark.requirement("CPIN-MON-002")
def test_unit_outside_the_code_list_is_refused(
    node: NodeClient, contract: Contract, own_code: str, certifier: Certifier, spec: Spec
) -> None:
    units = {entry["const"] for entry in spec.codelist("unit")}
    unknown = next(u for u in ("furlong", "degC", "TFLOP") if u not in units)
    record = l0(subject(own_code), probe_name(certifier.run_id, "unit"), 5.0, unknown)
    _refused_whole(node, contract, [record], f"unit {unknown!r}")


@pytest.mark.requirement("CPIN-MON-003")
def test_scores_outside_0_to_10_or_not_in_score_are_refused(
    node: NodeClient, contract: Contract, own_code: str
) -> None:
    me = subject(own_code)
    cases = [
        (score(me, "L1", 10.5, category="compute"), "an L1 score of 10.5"),
        (score(me, "L2", -0.5), "an L2 score of -0.5"),
        ({**score(me, "L1", 5.0, category="compute"), "unit": "percent"}, "an L1 in percent"),
    ]
    for record, why in cases:
        _refused_whole(node, contract, [record], why)


@pytest.mark.requirement("CPIN-MON-004")
def test_levels_and_categories_outside_the_code_lists_are_refused(
    node: NodeClient, contract: Contract, own_code: str
) -> None:
    me = subject(own_code)
    cases = [
        ({**score(me, "L2", 5.0), "level": "L3"}, "level L3"),
        (score(me, "L1", 5.0), "an L1 record without a category"),
        (score(me, "L1", 5.0, category="weather"), "category 'weather'"),
        (score(me, "L2", 5.0, category="compute"), "an L2 record with a category"),
    ]
    for record, why in cases:
        _refused_whole(node, contract, [record], why)


def _rejections(response: Any, contract: Contract) -> dict[int, str]:
    expect_status(response, 200)
    result = contract.expect_json(response, PUSH_RESULT)
    return {
        item["index"]: str(item["problem"]["type"]).rsplit("/", 1)[-1]
        for item in result["rejected"]
    }


@pytest.mark.requirement("CPIN-MON-005")
def test_record_from_the_future_is_rejected_as_stale_metric(
    node: NodeClient, contract: Contract, own_code: str, certifier: Certifier
) -> None:
    me = subject(own_code)
    ahead = l0(me, probe_name(certifier.run_id, "future"), 7.0, timestamp=now_at(120))
    current = l0(me, probe_name(certifier.run_id, "present"), 7.0)
    rejected = _rejections(push(node, [ahead, current]), contract)
    assert rejected.get(0) == "stale-metric", (
        f"a record 120 s in the future was not rejected as stale-metric: rejected {rejected}"
    )
    assert 1 not in rejected, f"a current record in the same batch was rejected: {rejected}"
    assert not stored_copies(node, ahead), "the record from the future was stored"


@pytest.mark.requirement("CPIN-MON-007")
def test_record_older_than_its_validity_is_rejected_as_stale_metric(
    node: NodeClient, contract: Contract, own_code: str, certifier: Certifier
) -> None:
    me = subject(own_code)
    old = l0(me, probe_name(certifier.run_id, "old"), 8.0, timestamp=now_at(-120), validity_s=60)
    recent = l0(me, probe_name(certifier.run_id, "recent"), 8.0, timestamp=now_at(-5),
                validity_s=60)  # fmt: skip
    rejected = _rejections(push(node, [old, recent]), contract)
    assert rejected.get(0) == "stale-metric", (
        f"a record 120 s old with validitySeconds 60 was not rejected as stale-metric: {rejected}"
    )
    assert 1 not in rejected, f"a record 5 s old with validitySeconds 60 was rejected: {rejected}"
    stored = stored_copies(node, old)
    assert not stored, f"the stale record was stored, with timestamp {stored[0]['timestamp']}"


@pytest.mark.requirement("CPIN-MON-006")
def test_record_pushed_twice_is_stored_and_counted_once(
    node: NodeClient,
    contract: Contract,
    spec: Spec,
    own_code: str,
    metric_resource: ResourceSubject,
    certifier: Certifier,
) -> None:
    about_node = l0(subject(own_code), probe_name(certifier.run_id, "twice"), 0.5)
    for _ in range(2):
        push_accepted(node, contract, [about_node])
    copies = stored_copies(node, about_node)
    assert len(copies) == 1, f"a record pushed twice is stored {len(copies)} times"
    about_resource = l0(metric_resource.about(), probe_name(certifier.run_id, "twice"), 0.25,
                        "PFLOPS", precision="FP64")  # fmt: skip
    for _ in range(2):
        push_accepted(metric_resource.pusher, contract, [about_resource])
    _held(node, about_resource, metric_resource)
    copies = stored_copies(node, about_resource)
    assert len(copies) == 1, f"a resource record pushed twice is held {len(copies)} times"
    _, findings = rollup_findings(node, contract, spec)
    assert not findings, f"after a duplicate push: {findings[0]}"


@pytest.mark.requirement("CPIN-MON-008")
def test_stale_record_is_left_out_and_not_reported_fresh(
    node: NodeClient,
    contract: Contract,
    spec: Spec,
    role: str,
    metric_resource: ResourceSubject,
    certifier: Certifier,
) -> None:
    validity = 4 if metric_resource.upward else 2  # long enough to arrive (and travel up) fresh
    record = l0(metric_resource.about(), probe_name(certifier.run_id, "shortlived"), 4.0,
                "TFLOPS", precision="FP64", validity_s=validity)  # fmt: skip
    push_accepted(metric_resource.pusher, contract, [record])
    _held(node, record, metric_resource)
    wait_until_stale(record)
    fresh = [r for r in query(node, {"resourceId": metric_resource.resource_id, "fresh": "true"})
             if same_measurement(r, record)]  # fmt: skip
    assert not fresh, "queryMetrics?fresh=true still returns a record whose validity is over"
    rollup, findings = rollup_findings(node, contract, spec)
    assert not findings, f"with a stale record stored: {findings[0]}"
    figure = figure_at(rollup, "FP64")
    assert figure is not None and figure["staleRecords"] >= 1, (
        f"the roll-up counts no stale FP64 record: {figure}"
    )
    if role == "national":
        return
    status = node.get("/v1/monitoring/status")
    expect_status(status, 200)
    body = contract.expect_json(status, STATUS)
    entry = next((r for r in body["resources"] if r["resourceId"] == metric_resource.resource_id),
                 None)  # fmt: skip
    assert entry is not None, f"getMonitoringStatus omits {metric_resource.resource_id}"
    newest = next(query(node, {"resourceId": metric_resource.resource_id}), None)
    assert newest is not None, "queryMetrics gives no record of the resource"
    age = (instant(body["time"]) - instant(newest["timestamp"])).total_seconds()
    if age > newest["validitySeconds"]:
        assert entry["fresh"] is False, (
            f"getMonitoringStatus reports {metric_resource.resource_id} fresh, but its newest "
            f"record is {age:.1f} s old with validitySeconds {newest['validitySeconds']}"
        )


def _matches(record: dict[str, Any], params: dict[str, Any]) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "nodeCode": lambda v: record["subject"]["nodeCode"] == v,
        "resourceId": lambda v: record["subject"].get("resourceId") == v,
        "level": lambda v: record["level"] == v,
        "category": lambda v: record.get("category") == v,
        "since": lambda v: instant(record["timestamp"]) >= instant(v),
    }
    return all(checks[name](value) for name, value in params.items())


@pytest.mark.requirement("CPIN-MON-009")
def test_metric_query_returns_exactly_the_records_matching_every_filter(
    node: NodeClient,
    contract: Contract,
    metric_resource: ResourceSubject,
    certifier: Certifier,
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=2)
    at = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    earlier = (start - timedelta(seconds=30)).isoformat(timespec="milliseconds")
    earlier = earlier.replace("+00:00", "Z")
    res, run = metric_resource.about(), certifier.run_id
    mine = [
        l0(subject(metric_resource.node_code), probe_name(run, "nodewide"), 20.0, timestamp=at),
        l0(res, probe_name(run, "util"), 30.0, timestamp=at),
        l0(res, probe_name(run, "disk"), 40.0, timestamp=at, category="storage"),
        score(res, "L1", 6.0, category="compute", timestamp=at),
        score(res, "L1", 7.0, category="storage", timestamp=at),
        l0(res, probe_name(run, "before"), 50.0, timestamp=earlier),
    ]
    push_accepted(metric_resource.pusher, contract, mine)
    for record in mine:
        _held(node, record, metric_resource)
    code, rid = metric_resource.node_code, metric_resource.resource_id
    for params in (
        {"nodeCode": code, "since": at},
        {"resourceId": rid, "since": at},
        {"resourceId": rid, "level": "L1", "since": at},
        {"resourceId": rid, "category": "storage", "since": earlier},
        {"nodeCode": code, "level": "L0", "category": "compute", "since": earlier},
    ):
        found = list(query(node, params))
        wrong = [r for r in found if not _matches(r, params)]
        assert not wrong, f"queryMetrics {params} returned a record that does not match: {wrong[0]}"
        for record in mine:
            if _matches(record, params):
                assert any(same_measurement(r, record) for r in found), (
                    f"queryMetrics {params} misses a stored record that matches"
                )


@pytest.mark.requirement("CPIN-MON-010")
def test_status_reports_health_of_node_resources_and_children(
    node: NodeClient,
    contract: Contract,
    role: str,
    own_code: str,
    placement: Placement,
    request: pytest.FixtureRequest,
) -> None:
    resource = None
    if role != "national":
        resource = placement.resource(1)
    response = node.get("/v1/monitoring/status")
    expect_status(response, 200)
    status = contract.expect_json(response, STATUS)
    assert status["nodeCode"] == own_code, f"the status is about {status['nodeCode']}"
    if resource is not None:
        listed = {r["resourceId"]: r for r in status["resources"]}
        entry = listed.get(resource["resourceId"])
        assert entry is not None, f"the status omits the node's resource {resource['resourceId']}"
        assert entry["healthState"] == resource["healthState"], (
            f"the status gives {entry['healthState']} for a resource whose catalogue entry says "
            f"{resource['healthState']}"
        )
    if role == "industry":
        return
    registry = node if role == "national" else request.getfixturevalue("upstream")
    below = registry.get("/v1/nodes", params={"parent": own_code, "status": "active"})
    precondition(below.status_code == 200, f"listNodes at the national node: {below.status_code}")
    children = {c["nodeCode"] for c in status["children"]}
    for record in body_of(below)["items"]:
        assert record["nodeCode"] in children, (
            f"the status omits {record['nodeCode']}, a node registered below this one"
        )


@pytest.mark.requirement("CPIN-MON-011")
def test_records_reach_the_node_above_within_the_deadline(
    node: NodeClient,
    contract: Contract,
    role: str,
    own_code: str,
    certifier: Certifier,
    request: pytest.FixtureRequest,
) -> None:
    if role == "industry":
        upstream: NodeClient = request.getfixturevalue("upstream")
        newest = next(query(upstream, {"nodeCode": own_code, "level": "L2"}), None)
        assert newest is not None, "the regional node holds no L2 record about this node"
        age = (datetime.now(UTC) - instant(newest["timestamp"])).total_seconds()
        assert age <= 60 + 2, (
            f"the newest record about this node at its regional node is {age:.0f} s old"
        )
        return
    if role == "national":
        resource: ResourceSubject = request.getfixturevalue("metric_resource")
        pusher, about, receiver = resource.pusher, resource.about(), node
    else:
        pusher, about = node, subject(own_code)
        receiver = request.getfixturevalue("upstream")
    record = l0(about, probe_name(certifier.run_id, "upward"), 9.0)
    push_accepted(pusher, contract, [record])
    arrived = wait_for(lambda: bool(stored_copies(receiver, record)), ARRIVAL_DEADLINE_S)
    assert arrived, f"a record measured now is not at the node above after {ARRIVAL_DEADLINE_S} s"


@pytest.mark.requirement("CPIN-MON-012")
def test_fresh_l2_score_of_the_node_reaches_its_parent(upstream: NodeClient, own_code: str) -> None:
    newest = next(query(upstream, {"nodeCode": own_code, "level": "L2"}), None)
    assert newest is not None, "the parent holds no L2 score of this node"
    age = (datetime.now(UTC) - instant(newest["timestamp"])).total_seconds()
    assert age <= 60 + 2, f"the newest L2 score of this node at its parent is {age:.0f} s old"


def _foreign_node_code(node: NodeClient, role: str, service_info: dict[str, Any]) -> str:
    """A node that is not below the target: its parent, or (national) a code no node holds."""
    if role != "national":
        parent = service_info.get("parent")
        precondition(parent, "service-info names no parent")
        return str(parent)
    stem = "R6500099"
    code = stem + mod37_36(stem)
    precondition(node.get(f"/v1/nodes/{code}").status_code == 404, f"{code} is registered")
    return code


@pytest.mark.requirement("CPIN-MON-013")
def test_records_about_foreign_subjects_are_rejected_as_forbidden(
    node: NodeClient,
    contract: Contract,
    role: str,
    own_code: str,
    service_info: dict[str, Any],
    certifier: Certifier,
) -> None:
    foreign = _foreign_node_code(node, role, service_info)
    records = [
        l0(subject(foreign), probe_name(certifier.run_id, "foreign"), 1.0),
        l0(
            subject(own_code, unknown_resource_id(foreign)),
            probe_name(certifier.run_id, "res"),
            1.0,
        ),
        l0(subject(own_code), probe_name(certifier.run_id, "own"), 1.0),
    ]
    rejected = _rejections(push(node, records), contract)
    for index, what in ((0, f"node {foreign}"), (1, f"a resource of {foreign}")):
        assert rejected.get(index) == "forbidden", (
            f"a record about {what} was not rejected as forbidden: rejected {rejected}"
        )
        assert not stored_copies(node, records[index]), f"the record about {what} was stored"
    assert 2 not in rejected, f"a record about the node itself was rejected: {rejected}"


@pytest.mark.requirement("CPIN-MON-014", "CPIN-MON-015")
def test_rollup_gives_each_precision_from_the_newest_fresh_record_per_resource(
    node: NodeClient,
    contract: Contract,
    spec: Spec,
    metric_resource: ResourceSubject,
    certifier: Certifier,
) -> None:
    about, run = metric_resource.about(), certifier.run_id
    name = probe_name(run, "peak")
    records = [
        l0(about, name, 1.5, "PFLOPS", precision="FP64", timestamp=now_at(-3)),
        l0(about, name, 2.0, "TFLOPS", precision="FP64", timestamp=now_at(-2)),
        l0(about, name, 0.5, "POPS", precision="INT8", timestamp=now_at(-2)),
        l0(about, name, 3.0, "TFLOPS", precision="FP32", timestamp=now_at(-2)),
    ]
    push_accepted(metric_resource.pusher, contract, records)
    for record in records:
        _held(node, record, metric_resource)
    rollup, findings = rollup_findings(node, contract, spec)
    if findings:
        raise RequirementFailure("; ".join(findings[:3]), finding_ids(findings))
    for precision in ("FP64", "INT8", "FP32"):
        assert figure_at(rollup, precision) is not None, f"the roll-up has no {precision} figure"
