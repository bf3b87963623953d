"""`cpin load --find-capacity`: the clients of locustfile.py under a rising step load.

Users rise by mix.yaml's `capacity.stepUsers` each `stepS` seconds. Each step is judged on its
last `stepS - settleS` seconds (the ramp and the queues it built are left out) against every
numeric SLO of the standard scenario that saw `minSamples` requests; the run stops at the
first step that breaks one, or after `maxSteps`. The steps are kept with the run's results:
the highest step that held is the measured capacity, and the list of steps is the curve. Run
only by locust, like locustfile.py.
"""

from __future__ import annotations

import time
from typing import Any

from locust import LoadTestShape

from loadtests import slo
from loadtests.locustfile import NodeClient, _run, _the_node, snapshot, window
from loadtests.mix import mix

__all__ = ["NodeClient", "StepLoad"]


class StepLoad(LoadTestShape):
    """Step load, judged step by step on the side that holds the totals."""

    def __init__(self) -> None:
        super().__init__()
        settings = mix()["capacity"]
        self.step_users = int(settings["stepUsers"])
        self.step_s = float(settings["stepS"])
        self.settle_s = float(settings["settleS"])
        self.max_steps = int(settings["maxSteps"])
        self.min_samples = int(settings["minSamples"])
        self.step = 0
        self.step_began = 0.0
        self.mark: tuple[float, Any] | None = None

    def tick(self) -> tuple[int, float] | None:
        if self.runner is None:
            return None
        run_time: float = self.get_run_time()
        elapsed = run_time - self.step_began
        stats = self.runner.environment.stats
        if self.mark is None and elapsed >= self.settle_s:
            self.mark = (time.time(), snapshot(stats))
        if elapsed >= self.step_s and self.mark is not None:
            if self._judge_step(snapshot(stats)) or self.step + 1 >= self.max_steps:
                return None
            self.step += 1
            self.step_began = run_time
            self.mark = None
        users = self.step_users * (self.step + 1)
        return users, float(self.step_users)

    def _judge_step(self, now: Any) -> bool:
        """Record the step that just ended; True when it broke an SLO."""
        assert self.mark is not None and self.runner is not None
        began, before = self.mark
        users = self.step_users * (self.step + 1)
        measured = window(now, before, time.time() - began, users)
        node = _the_node(self.runner.environment)
        results = slo.judge(node.plan, "standard", measured, None, self.min_samples)
        broken = slo.broken(results)
        _run.steps.append({"users": users, "window": measured.to_json(), "broken": broken})
        return bool(broken)
