"""Load tests of a CPIN node: locust scenarios judged by the PERF requirements of spec/.

```
cpin load / certification report
   │  run_load(target, users=..., duration=..., workers=K, find_capacity=...)     run.py
   │    pre-flight: service-info, role, one token (LoadError: exit 2, no load sent)
   │    per scenario (mix.yaml: standard; overload at 2x the declared capacity;
   │    or the capacity search) one subprocess tree, bounded in time:
   ▼
python -m locust -f locustfile.py [--master + K x --worker]            gevent lives only here
   NodeClient (FastHttpUser): own OAuth2 token (HTTP Basic, renewed before expiry),
   one request per tick from the weighted mix, each named by its operationId;
   per process: seed data through the API (namespaced), discover records other nodes
   issued, remove what it created when it quits.
   locustfile_capacity.py: StepLoad shape, each step judged, stop at the first broken SLO.
   The totals side writes results.json (raw windows: requests, failures, histograms).
   ▼
slo.py: judge(plan, scenario, window, capacity) -> SloResult[]            no locust
   thresholds and operations from spec/requirements.yaml (`slo`), levels from
   spec/certification.yaml; perf_outcomes(perf) maps SloResults to test outcomes.
   ▼
<out>/perf.json (report.json#/$defs/Perf), timeseries.json, capacity.json, run.json,
      mix.yaml, <scenario>/locust_*.csv, report.html, logs
```

mix.py reads mix.yaml (the load mix, which spec/ does not define) and selects from spec/ what
applies to a role. stub_node.py answers every operation with the spec's examples: the load
generator's ceiling is measured against it. Nothing here imports locust except the two
locustfiles, which only locust imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtests.run import Client, LoadError, LoadTarget, run_load
    from loadtests.slo import perf_outcomes

__all__ = ["Client", "LoadError", "LoadTarget", "perf_outcomes", "run_load"]


def __getattr__(name: str) -> Any:
    """Lazy: a locust process imports loadtests.slo without the orchestration's imports."""
    if name in {"Client", "LoadError", "LoadTarget", "run_load"}:
        from loadtests import run

        return getattr(run, name)
    if name == "perf_outcomes":
        from loadtests.slo import perf_outcomes

        return perf_outcomes
    raise AttributeError(name)
