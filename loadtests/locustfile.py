"""The locust side of `cpin load`: simulated clients of one CPIN node.

Run only by locust (`python -m locust -f loadtests/locustfile.py ...`, started by
loadtests.run): importing locust monkey-patches the whole process with gevent, so nothing else
may import this module.

Each locust process that runs users (the local runner, or every worker) first registers its own
data through the API under a namespace of its own, discovers records other nodes issued, and
removes what it created when it quits. Each simulated client holds its own OAuth2 token,
renewed before it expires. Every request is named by its operationId; the scenario's failure
rule (mix.yaml) decides what counts as failed. The process that holds the totals (local runner
or master) writes them as a results file when it quits, and gates its exit code on the SLOs.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import gevent
from gevent.event import Event
from gevent.pool import Pool
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import RequestStats

from loadtests import slo
from loadtests.mix import (
    Plan,
    mix,
    query_variants,
    request_examples,
    request_line,
    success_statuses,
)
from spec import Spec, default

log = logging.getLogger("cpin.load")
_Snapshot = dict[tuple[str, str], tuple[int, int, dict[int, int]]]


@events.init_command_line_parser.add_listener
def _arguments(parser: LocustArgumentParser) -> None:
    """The run's settings; a master forwards them to its workers with the first spawn."""
    add = parser.add_argument
    add("--cpin-role", default="regional", include_in_web_ui=False)
    add("--cpin-options", default="", include_in_web_ui=False, help="declared options, a,b")
    add("--cpin-scenario", default="standard", include_in_web_ui=False)
    add("--cpin-client-id", default="", include_in_web_ui=False)
    add("--cpin-secret-env", default="", include_in_web_ui=False, help="variable with the secret")
    add("--cpin-token-url", default="", include_in_web_ui=False)
    add("--cpin-upstream", default="", include_in_web_ui=False, help="upstream base URL")
    add("--cpin-upstream-client-id", default="", include_in_web_ui=False)
    add("--cpin-upstream-secret-env", default="", include_in_web_ui=False)
    add("--cpin-namespace", default="cpin-load", include_in_web_ui=False)
    add("--cpin-user-rps", type=float, default=None, include_in_web_ui=False)
    add("--cpin-capacity", default="", include_in_web_ui=False, help="declared capacity, JSON")
    add("--cpin-results", default="", include_in_web_ui=False, help="results file to write")


# -- the process's view of the node ------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """A record the mix can address; `foreign` when another node issued it."""

    key: str
    foreign: bool


@dataclass
class Records:
    """Records of one kind, own and foreign apart, so picking stays cheap as they grow."""

    own: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def add(self, key: str, foreign: bool = False) -> None:
        (self.foreign if foreign else self.own).append(key)

    def __contains__(self, key: str) -> bool:
        return key in self.own or key in self.foreign

    def __len__(self) -> int:
        return len(self.own) + len(self.foreign)

    def pick(self) -> Record | None:
        """A foreign record with the mix's share when there are both kinds."""
        if self.own and self.foreign:
            foreign = random.random() < float(mix()["foreignShare"])
        elif self.own or self.foreign:
            foreign = bool(self.foreign)
        else:
            return None
        return Record(random.choice(self.foreign if foreign else self.own), foreign)


@dataclass
class Node:
    """What one locust process knows and created at the node under test."""

    options: Any
    spec: Spec
    plan: Plan
    base_url: str
    code: str = ""
    token_url: str = ""
    identifiers: Records = field(default_factory=Records)
    resources: Records = field(default_factory=Records)
    task_pools: Records = field(default_factory=Records)  # seeded resources with accelerators
    created: list[tuple[str, str]] = field(default_factory=list)  # (operationId, key) undoing it
    live_tasks: set[str] = field(default_factory=set)
    ready: Event = field(default_factory=Event)
    started: bool = False
    failed: str = ""
    namespace: str = ""
    success: dict[str, frozenset[int]] = field(default_factory=dict)

    def failure(self, operation: str, status: int, error: object) -> str | None:
        """Why a request failed under the scenario's rule, or None when it did not."""
        if status == 0:
            return f"transport: {type(error).__name__}"
        rule = mix()["scenarios"][self.options.cpin_scenario]["failures"]
        if rule == "server-fault":
            return f"HTTP {status}" if status >= 500 and status != 503 else None
        return None if status in self.success[operation] else f"HTTP {status}"

    def start(self) -> None:
        """Prepare once per process; every client waits until it is done (or has failed)."""
        if not self.started:
            self.started = True  # no switch between test and set: greenlets are cooperative
            try:
                _prepare(self)
            except Exception as exc:  # every client of the process reports it as its failure
                log.error("%s: preparing the data failed: %s", self.namespace, exc)
                self.failed = f"preparing the data failed: {exc}"
            finally:
                self.ready.set()
        self.ready.wait()


def _problem_type(response: Any) -> str:
    """` (upstream-unavailable)`: the slug of a problem answer's type, so a failure says which
    refusal it was (a bounded set: locust groups failures by their message)."""
    try:
        kind = response.json().get("type", "") if response.content else ""
    except (ValueError, AttributeError):
        return ""
    return f" ({kind.rsplit('/', 1)[-1][:60]})" if isinstance(kind, str) and kind else ""


_node: Node | None = None


def _the_node(environment: Environment) -> Node:
    """The process's Node, made from the (possibly forwarded) options on first use."""
    global _node
    if _node is None:
        options = environment.parsed_options
        assert options is not None, "locust parses the options before any event fires"
        spec = default()
        plan = Plan.of(spec, options.cpin_role, list(filter(None, options.cpin_options.split(","))))
        namespace = f"{options.cpin_namespace}-{uuid.uuid4().hex[:6]}"
        _node = Node(options, spec, plan, str(environment.host).rstrip("/"),
                     namespace=namespace, success=success_statuses(spec))  # fmt: skip
    return _node


# -- plain HTTP for setup and cleanup: not in locust's statistics -------------------------------


def _http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    basic: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    data = None
    if basic is not None:
        pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = b"grant_type=client_credentials"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=mix()["requestTimeoutS"]) as answer:
            text = answer.read()
            return answer.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError as exc:
        log.warning("%s %s: %s", method, url, exc)
        return 0, None


def _call(
    node: Node, operation: str, key: str = "", *, token: str | None, body: Any = None
) -> tuple[int, Any]:
    method, path = request_line(node.spec, operation, key)
    return _http(method, node.base_url + path, token=token, body=body)


def _token(token_url: str, client_id: str, secret_env: str) -> str | None:
    status, answer = _http("POST", token_url, basic=(client_id, os.environ.get(secret_env, "")))
    return str(answer["access_token"]) if status == 200 else None


def _prepare(node: Node) -> None:
    """Learn the node's code, register this process's data, find records other nodes issued."""
    status, info = _http("GET", f"{node.base_url}/v1/service-info")
    if status != 200:
        raise RuntimeError(f"service-info answered {status}")
    node.code = str(info["nodeCode"])
    options = node.options
    node.token_url = options.cpin_token_url or f"{node.base_url}/v1/oauth/token"
    token = _token(node.token_url, options.cpin_client_id, options.cpin_secret_env)
    if token is None:
        raise RuntimeError("the token endpoint refused the client")
    _seed(node, token)
    _discover(node, node.base_url, token)
    if options.cpin_upstream and options.cpin_upstream_client_id:
        upstream = options.cpin_upstream.rstrip("/")
        upstream_token = _token(f"{upstream}/v1/oauth/token", options.cpin_upstream_client_id,
                                options.cpin_upstream_secret_env)  # fmt: skip
        if upstream_token:
            _discover(node, upstream, upstream_token, foreign_only=True)
    log.info("%s: %d identifiers, %d resources (%d for tasks)", node.namespace,
             len(node.identifiers), len(node.resources), len(node.task_pools))  # fmt: skip


def _seed(node: Node, token: str) -> None:
    seed = mix()["seed"]
    if "registerResource" in node.plan.operations:
        examples = request_examples(node.spec, "registerResource")
        for name in seed["resources"]:
            body = _labelled(examples[name], node.namespace)
            status, record = _call(node, "registerResource", token=token, body=body)
            if status != 201:
                log.warning("registerResource %s answered %s", name, status)
                continue
            key = record["resourceId"]
            node.resources.add(key)
            node.identifiers.add(key)
            if record.get("accelerators"):
                node.task_pools.add(key)
            node.created += [("withdrawResource", key), ("revokeIdentifier", key)]
    if "registerIdentifier" in node.plan.operations:
        registrations = list(request_examples(node.spec, "registerIdentifier").values())
        for index in range(seed["identifiers"]):
            body = _labelled(registrations[index % len(registrations)], node.namespace)
            status, record = _call(node, "registerIdentifier", token=token, body=body)
            if status == 201:
                node.identifiers.add(record["identifier"])
                node.created.append(("revokeIdentifier", record["identifier"]))


def _discover(node: Node, base_url: str, token: str, foreign_only: bool = False) -> None:
    """Records of the catalogue and the identifier registry, own and foreign."""
    live = {e["const"] for e in node.spec.codelist("identifier-state") if not e["x-terminal"]}
    queries = [
        ("listIdentifiers", "identifier", node.identifiers, f"&state={state}")
        for state in sorted(live)
    ]  # a revoked identifier answers 410: not resolvable
    queries.append(("listResources", "resourceId", node.resources, ""))
    for operation, key, pool, query in queries:
        if operation not in node.plan.operations:
            continue
        url = f"{base_url}{request_line(node.spec, operation)[1]}?limit=100{query}"
        status, page = _http("GET", url, token=token)
        for item in page.get("items", []) if status == 200 else []:
            foreign = item.get("issuer") != node.code
            if item[key] in pool or (foreign_only and not foreign) or _transient(item):
                continue
            if operation == "listResources" and foreign_only:
                # the upstream's index also holds siblings' resources, which the target need
                # not serve (only the nodes above an issuer hold copies): resolution only
                if item[key] not in node.identifiers:
                    node.identifiers.add(item[key], foreign)
                continue
            pool.add(item[key], foreign)
            if operation == "listResources" and item[key] not in node.identifiers:
                node.identifiers.add(item[key], foreign)  # a resource id is an identifier


TRANSIENT_MARKS = ("cpin-conformance-", "[cpin-load-")  # the suite's and load runs' namespaces


def _transient(item: dict[str, Any]) -> bool:
    """A record another test run made for itself and will remove: aiming at it would measure
    that run's cleanup (a 404 the node rightly answers), not the node."""
    text = json.dumps(item, ensure_ascii=False)
    return any(mark in text for mark in TRANSIENT_MARKS)


def _labelled(example: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A request example marked with the run's namespace in its name (catalogue entries) or
    its description (identifiers), so an operator can tell it apart."""
    body = copy.deepcopy(example)
    if isinstance(body.get("name"), dict):
        body["name"] = {lang: f"[{namespace}] {text}" for lang, text in body["name"].items()}
    else:
        body["description"] = f"[{namespace}] {body.get('description', 'load test record')}"
    return body


def _clean_up(node: Node) -> None:
    """Cancel the tasks still live, then undo every registration, newest first, in bounded
    time; what is left is logged with its path."""
    token = _token(node.token_url, node.options.cpin_client_id, node.options.cpin_secret_env)
    undo = [("cancelTask", task_id) for task_id in node.live_tasks]
    pool = Pool(8)
    failed: list[str] = []

    def run(step: tuple[str, str]) -> None:
        status, _ = _call(node, step[0], step[1], token=token)
        if status == 0 or (status >= 300 and status not in (404, 409, 410)):
            failed.append(f"{step[0]} {step[1]} -> {status}")

    deadline = time.monotonic() + mix()["seed"]["cleanupS"]
    created = list(reversed(node.created))
    resources = [step for step in created if step[0] == "withdrawResource"]
    for batch in (undo, resources, [step for step in created if step not in resources]):
        pool.map(run, batch)
        pool.join(timeout=max(0.0, deadline - time.monotonic()))
    pool.kill()
    if failed:
        log.warning("%s: %d records left behind: %s", node.namespace, len(failed), failed[:5])


# -- the simulated client --------------------------------------------------------------------


class NodeClient(FastHttpUser):
    """One client of the node: its own token and its own tasks, one request per tick."""

    network_timeout = float(mix()["requestTimeoutS"])
    connection_timeout = float(mix()["requestTimeoutS"])
    wait_time = constant_throughput(float(mix()["userRps"]))

    def on_start(self) -> None:
        self.node = _the_node(self.environment)
        self.node.start()
        if self.node.failed:
            raise RuntimeError(self.node.failed)
        self.bearer = ""
        self.renew_at = 0.0
        self.tasks_live: list[Record] = []
        weights = self.node.plan.weights
        self.actions = [self.ACTIONS[op] for op in weights]
        self.weights = list(weights.values())
        self.basic = base64.b64encode(
            f"{self.node.options.cpin_client_id}:"
            f"{os.environ.get(self.node.options.cpin_secret_env, '')}".encode()
        ).decode()

    @task
    def next_request(self) -> None:
        random.choices(self.actions, self.weights)[0](self)

    # -- plumbing

    def call(
        self,
        operation: str,
        key: str = "",
        *,
        query: dict[str, str] | None = None,
        foreign: bool = False,
        anonymous: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One request named by its operationId, judged by the scenario's rule; the JSON
        answer when it succeeded, else None."""
        method, path = request_line(self.node.spec, operation, key)
        if query:
            path += f"?{urllib.parse.urlencode(query)}"
        headers = {} if anonymous else {"Authorization": f"Bearer {self.token()}"}
        with self.client.request(method, path, name=operation, headers=headers,
                                 catch_response=True, **kwargs) as response:  # fmt: skip
            response.request_meta["request_type"] = slo.request_type(method, foreign)
            why = self.node.failure(
                operation, response.status_code or 0, getattr(response, "error", None)
            )
            if why:
                response.failure(f"{why}{_problem_type(response)}")
                return None
            response.success()
            try:
                return response.json() if response.content else None
            except ValueError:
                return None

    def token(self) -> str:
        if time.monotonic() >= self.renew_at:
            self.issue_token()
        return self.bearer

    def issue_token(self) -> None:
        """client-credentials grant, HTTP Basic; renewed at 80 % of its lifetime."""
        with self.client.post(self.node.token_url, name="issueToken", catch_response=True,
                              headers={"Authorization": f"Basic {self.basic}",
                                       "Content-Type": "application/x-www-form-urlencoded"},
                              data="grant_type=client_credentials") as response:  # fmt: skip
            why = self.node.failure(
                "issueToken", response.status_code or 0, getattr(response, "error", None)
            )
            if why:
                response.failure(why)
                self.renew_at = 0.0
                return
            response.success()
            answer = response.json()
            self.bearer = answer["access_token"]
            self.renew_at = time.monotonic() + 0.8 * float(answer["expires_in"])

    # -- one method per operation of the mix

    def resolve_identifier(self) -> None:
        if record := self.node.identifiers.pick():
            self.call("resolveIdentifier", record.key, foreign=record.foreign)

    def list_resources(self) -> None:
        query = random.choice(query_variants(self.node.spec, "listResources"))
        self.call("listResources", query=query)

    def get_resource(self) -> None:
        if record := self.node.resources.pick():
            self.call("getResource", record.key, foreign=record.foreign)

    def create_selection(self) -> None:
        demand = random.choice(list(request_examples(self.node.spec, "createSelection").values()))
        self.call("createSelection", json=demand)

    def create_task(self) -> None:
        pool = self.node.task_pools.pick()
        if pool is None:
            return
        body = copy.deepcopy(request_examples(self.node.spec, "createTask")["training"])
        body.pop("selectionId", None)
        body["resourceId"] = pool.key
        body["resources"] = {"acceleratorCount": mix()["task"]["acceleratorCount"]}
        body["name"] = f"[{self.node.namespace}] {body['name']}"
        answer = self.call("createTask", json=body, foreign=pool.foreign)
        if answer and "taskId" in answer:
            task_record = Record(answer["taskId"], pool.foreign)
            self.tasks_live.append(task_record)
            self.node.live_tasks.add(task_record.key)

    def get_task(self) -> None:
        """Poll one of the client's tasks; a client with none submits one (every tick sends a
        request, so the offered load is users x userRps)."""
        if not self.tasks_live:
            self.create_task()
        else:
            record = random.choice(self.tasks_live)
            self.call("getTask", record.key, foreign=record.foreign)

    def cancel_task(self) -> None:
        """Cancel the client's oldest task; a client with none submits one."""
        if not self.tasks_live:
            self.create_task()
            return
        record = self.tasks_live.pop(0)
        if self.call("cancelTask", record.key, foreign=record.foreign):
            self.node.live_tasks.discard(record.key)

    def register_identifier(self) -> None:
        examples = list(request_examples(self.node.spec, "registerIdentifier").values())
        body = _labelled(random.choice(examples), self.node.namespace)
        answer = self.call("registerIdentifier", json=body)
        if answer and "identifier" in answer:
            self.node.identifiers.add(answer["identifier"])
            self.node.created.append(("revokeIdentifier", answer["identifier"]))

    def push_metrics(self) -> None:
        self.call("pushMetrics", json=_metric_batch(self.node))

    def get_health(self) -> None:
        self.call("getHealth", anonymous=True)

    def renew_token(self) -> None:
        self.issue_token()

    ACTIONS: ClassVar[dict[str, Callable[[NodeClient], None]]] = {
        "resolveIdentifier": resolve_identifier,
        "listResources": list_resources,
        "getResource": get_resource,
        "createSelection": create_selection,
        "createTask": create_task,
        "getTask": get_task,
        "cancelTask": cancel_task,
        "registerIdentifier": register_identifier,
        "pushMetrics": push_metrics,
        "getHealth": get_health,
        "issueToken": renew_token,
    }


def _metric_batch(node: Node) -> dict[str, Any]:
    """The spec's example batch, re-addressed: about this node and a resource it holds (records
    about a resource are left out where it holds none), measured now."""
    batch = copy.deepcopy(request_examples(node.spec, "pushMetrics")["batch"])
    held = node.resources.own
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    records = []
    for record in batch["records"]:
        record["subject"]["nodeCode"] = node.code
        if "resourceId" in record["subject"]:
            if not held:
                continue
            record["subject"]["resourceId"] = random.choice(held)
        record["timestamp"] = stamp
        if "window" in record:
            start = now - timedelta(seconds=float(record.get("validitySeconds", 300)))
            begin = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            record["window"] = {"start": begin, "end": stamp}
        records.append(record)
    return {"records": records}


# -- measurement: windows of locust's statistics ----------------------------------------------


def snapshot(stats: RequestStats) -> _Snapshot:
    return {
        key: (entry.num_requests, entry.num_failures, dict(entry.response_times))
        for key, entry in stats.entries.items()
    }


def window(later: _Snapshot, earlier: _Snapshot, seconds: float, users: int) -> slo.Window:
    samples = []
    for (name, request_type), (requests, failures, histogram) in sorted(later.items()):
        before = earlier.get((name, request_type), (0, 0, {}))
        delta = {ms: n - before[2].get(ms, 0) for ms, n in histogram.items()}
        kept = {ms: n for ms, n in delta.items() if n}
        samples.append(
            slo.Sample(name, request_type, requests - before[0], failures - before[1], kept)
        )
    return slo.Window(seconds, users, tuple(s for s in samples if s.requests))


@dataclass
class Run:
    """The totals side (local runner or master): when steady load began, per-worker counts."""

    started: float = field(default_factory=time.time)
    steady_from: float = field(default_factory=time.time)
    stopped: float | None = None
    users: int = 0
    workers: dict[str, int] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    environment: Environment | None = None


_run = Run()


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    """Pace the clients, and prepare the data before any client starts (processes with
    clients only)."""
    node = _the_node(environment)
    rate = node.options.cpin_user_rps
    if rate is not None:
        NodeClient.wait_time = constant_throughput(rate) if rate > 0 else constant(0)
    _run.started = _run.steady_from = time.time()
    _run.environment = environment
    if not isinstance(environment.runner, MasterRunner):
        node.start()


@events.spawning_complete.add_listener
def _on_spawned(user_count: int, **_: Any) -> None:
    """Every side resets its statistics once the warm-up after the ramp is over: the steady
    state starts then (a shape run keeps counting: it measures its steps itself)."""
    _run.users = user_count
    environment = _run.environment
    if environment is not None and environment.shape_class is None:
        gevent.spawn_later(float(mix()["warmupS"]), _steady, environment)


def _steady(environment: Environment) -> None:
    environment.stats.reset_all()
    _run.steady_from = time.time()
    _run.workers = dict.fromkeys(_run.workers, 0)


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    _run.workers[client_id] = _run.workers.get(client_id, 0) + data["stats_total"]["num_requests"]


@events.test_stopping.add_listener
def _on_stopping(environment: Environment, **_: Any) -> None:
    if _run.stopped is None:
        _run.stopped = time.time()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    """Totals side: write the results and gate the exit code on the SLOs. Every side with
    users: remove what this process created."""
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        _write_results(environment)
    if not isinstance(runner, MasterRunner) and _node is not None and _node.ready.is_set():
        _clean_up(_node)


def _write_results(environment: Environment) -> None:
    node = _the_node(environment)
    options = node.options
    stopped = _run.stopped or time.time()
    steady = window(snapshot(environment.stats), {}, stopped - _run.steady_from,
                    _run.users or int(options.num_users or 0))  # fmt: skip
    capacity = json.loads(options.cpin_capacity) if options.cpin_capacity else None
    verdicts = slo.judge(node.plan, options.cpin_scenario, steady, capacity)
    runner = environment.runner
    exceptions = [
        f"{e['msg']} ({e['count']}x)" for e in (runner.exceptions.values() if runner else [])
    ]
    results = {
        "scenario": options.cpin_scenario,
        "users": steady.users,
        "spawnRate": options.spawn_rate,
        "startedAt": _run.started,
        "steadyFrom": _run.steady_from,
        "stoppedAt": stopped,
        "window": steady.to_json(),
        "steps": _run.steps,
        "workers": _run.workers,
        "errors": [
            {
                "operation": e.name,
                "requestType": e.method,
                "error": str(e.error),
                "occurrences": e.occurrences,
            }
            for e in environment.stats.errors.values()
        ],
        "exceptions": exceptions,
    }
    if options.cpin_results:
        with open(options.cpin_results, "w", encoding="utf-8") as file:  # noqa: PTH123
            json.dump(results, file, indent=1)
    failed = slo.broken(verdicts) or exceptions
    environment.process_exit_code = 1 if failed else 0
