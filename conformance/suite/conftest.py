"""Fixtures every class of the suite shares: the run, the spec, clients of the node under test
and of its federation, the node's own service-info, and data provisioning."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conformance.checks import Contract, precondition
from conformance.http import NodeClient
from conformance.ics import ClientCredentials, Ics, IcsError
from conformance.identifiers import IdentifierRules
from conformance.plugin import CERTIFIER
from conformance.provisioning import Provisioner
from conformance.session import Certifier
from spec import Spec


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The rate-limit burst leaves the limited client refused for up to a minute, and judging
    Retry-After means waiting that long (test_security_ratelimit.py). So the run is ordered
    around it, each group keeping its order: the modules that use the limited client, the
    burst, everything else while a timer waits, and the `runs_last` tests.

    Within "everything else", the `made_up_codes` tests (fuzzing) come after the tests that
    register nodes: a node may remember for up to 300 s that the registry did not know a code
    (CPIN-FED-013), and the registry hands out codes in sequence, so a made-up code named
    first could be the one a test node then gets, whose tokens the target would refuse."""
    users = {_module(item) for item in items if _fixtures(item) >= {"limited_node"}
             and "rate_limited" not in _fixtures(item)}  # fmt: skip

    def group(item: pytest.Item) -> int:
        if item.get_closest_marker("runs_last"):
            return 4
        if "rate_limited" in _fixtures(item):
            return 1
        if _module(item) in users:
            return 0
        return 3 if item.get_closest_marker("made_up_codes") else 2

    items.sort(key=group)


def _fixtures(item: pytest.Item) -> set[str]:
    return set(getattr(item, "fixturenames", ()))


def _module(item: pytest.Item) -> Any:
    return getattr(item, "module", None)


@pytest.fixture(scope="session")
def certifier(pytestconfig: pytest.Config) -> Certifier:
    return pytestconfig.stash[CERTIFIER]


@pytest.fixture(scope="session")
def spec(certifier: Certifier) -> Spec:
    return certifier.spec


@pytest.fixture(scope="session")
def contract(spec: Spec) -> Contract:
    return Contract(spec)


@pytest.fixture(scope="session")
def ics(certifier: Certifier) -> Ics:
    return certifier.ics


@pytest.fixture(scope="session")
def role(ics: Ics) -> str:
    return ics.role


@pytest.fixture(scope="session")
def identifier_rules(spec: Spec) -> IdentifierRules:
    return IdentifierRules.from_spec(spec)


def _client(certifier: Certifier, base_url: str, credentials: ClientCredentials | None) -> Any:
    return NodeClient(base_url, credentials, certifier.recorder,
                      timeout=float(certifier.budget["requestTimeoutS"]))  # fmt: skip


@pytest.fixture(scope="session")
def node(certifier: Certifier) -> Iterator[NodeClient]:
    """The node under test, as the ICS's main client (every scope the role needs)."""
    client = _client(certifier, certifier.ics.base_url, certifier.ics.credentials())
    yield client
    client.close()


@pytest.fixture(scope="session")
def limited_node(certifier: Certifier) -> Iterator[NodeClient]:
    """The node as the ICS's limited client; tests that need it skip when it is not declared."""
    try:
        credentials = certifier.ics.limited_credentials()
    except IcsError as exc:
        pytest.skip(f"precondition failed: {exc}")
    precondition(credentials is not None, "the ICS declares no limitedClient")
    client = _client(certifier, certifier.ics.base_url, credentials)
    yield client
    client.close()


@pytest.fixture(scope="session")
def upstream(certifier: Certifier) -> Iterator[NodeClient]:
    """The target's upstream node (federation.upstreamUrl), to see upward flows arrive."""
    federation = certifier.ics.federation
    precondition("upstreamUrl" in federation, "the ICS names no federation.upstreamUrl")
    try:
        credentials = certifier.ics.upstream_credentials()
    except IcsError as exc:
        pytest.skip(f"precondition failed: {exc}")
    precondition(credentials is not None, "the ICS gives no federation.upstreamCredentials")
    client = _client(certifier, federation["upstreamUrl"], credentials)
    yield client
    client.close()


@pytest.fixture(scope="session")
def service_info(node: NodeClient, contract: Contract, certifier: Certifier) -> dict[str, Any]:
    """The node's own service-info (the report's target shows it); tests that need it skip
    if it cannot be read."""
    response = node.get("/v1/service-info", authenticated=False)
    body = _json(response)
    problems = contract.errors(body, "schemas/service-info.json") if body is not None else []
    if response.status_code != 200 or body is None or problems:
        message = f"service-info answered {response.status_code}" + (
            f"; not valid against service-info.json: {problems[0]}" if problems else ""
        )
        certifier.extras["_serviceInfoProblem"] = {
            "httpStatus": response.status_code,
            "message": {"en": message},
            **({"body": body} if body is not None else {}),
        }
        pytest.skip(f"precondition failed: {message}")
    certifier.extras["_serviceInfo"] = body
    return dict(body)


@pytest.fixture(scope="session")
def declared_rate(service_info: dict[str, Any]) -> int:
    """The rate limit per client the node declares (service-info `limits.rateLimitPerMinute`)."""
    return int(service_info["limits"]["rateLimitPerMinute"])


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@pytest.fixture(scope="session")
def provision(node: NodeClient, certifier: Certifier) -> Iterator[Provisioner]:
    provisioner = Provisioner(node, f"cpin-conformance-{certifier.run_id[:8]}")
    yield provisioner
    provisioner.clean_up()
    for failure in provisioner.cleanup_failures:
        certifier.log(f"cleanup refused: {failure}")
