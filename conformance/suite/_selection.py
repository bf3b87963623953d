"""Helpers of the selection tests: the demand, resources that each fail exactly one of its
constraints, and the harness's own judgement of whether a record meets a constraint."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from conformance.suite._aggregation import Bodies
from spec import Spec

Record = Mapping[str, Any]
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def demand(bodies: Bodies) -> dict[str, Any]:
    """What the tests ask for: every constraint set, weights that need normalising."""
    return {
        "acceleratorType": bodies.accelerator_types[0],
        "precision": "FP16",
        "minPeak": {"value": 150, "unit": bodies.units["FP16"]},
        "minAcceleratorMemoryGiB": 88,
        "acceleratorCount": 8,
        "regions": [bodies.provinces[0]],
        "latencyClass": "5ms",
        "maxPrice": {"amount": 12, "currency": "CNY", "per": "h"},
        "minRenewableShare": 0.5,
        "limit": 50,
        "weights": {"performance": 0.8, "price": 0.6, "green": 0.4, "latency": 0.2,
                    "availability": 0.2},
    }  # fmt: skip


def impossible(bodies: Bodies) -> dict[str, Any]:
    """A valid demand no real resource meets."""
    return {**demand(bodies), "minPeak": {"value": 999999999, "unit": bodies.units["FP16"]},
            "minAcceleratorMemoryGiB": 65536}  # fmt: skip


def seed_bodies(bodies: Bodies) -> dict[str, dict[str, Any]]:
    """`good`, `tie` (the same figures) and `best` meet the demand; each other body fails
    exactly the constraint it is named after; `withdrawn` meets it but is withdrawn."""
    here, there = bodies.provinces[:2]
    other_type = bodies.accelerator_types[1]

    def pool(what: str, **changes: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"province": here, "peaks": (("FP16", 200.0), ("FP32", 50.0))}
        return bodies.resource(f"selection {what}", **{**base, **changes})

    return {
        "good": pool("good"),
        "tie": pool("tie"),
        "best": pool("best", peaks=(("FP16", 300.0), ("FP32", 75.0))),
        "withdrawn": pool("withdrawn"),
        "acceleratorType": pool("type", res_type=other_type, peaks=(("FP16", 400.0),)),
        "precision": pool("precision", peaks=(("BF16", 400.0), ("FP32", 100.0))),
        "minPeak": pool("peak", peaks=(("FP16", 100.0), ("FP8", 400.0), ("INT8", 900.0))),
        "minAcceleratorMemoryGiB": pool("memory", memory=40.0),
        "acceleratorCount": pool("count", count=4),
        "regions": pool("region", province=there),
        "latencyClass": pool("latency", latency="20ms"),
        "maxPrice": pool("price", price=(20.0, "h")),
        "maxPrice/per": pool("price unit", price=(0.001, "s")),
        "maxPrice/none": pool("unpriced", price=None),
        "minRenewableShare": pool("green", energy=(1.2, 0.2)),
        "servingState": pool("serving", serving="draining"),
        "healthState": pool("health", health="warning"),
    }


MEETING = ("good", "tie", "best")


class Judge:
    """Whether a record meets one constraint of a demand, by the spec's rules."""

    def __init__(self, spec: Spec) -> None:
        self.rtt = {e["const"]: float(e["x-max-rtt-ms"]) for e in spec.codelist("latency-class")}

    @staticmethod
    def figures(wanted: Record, record: Record) -> list[tuple[Record, Record]]:
        """(group, peak) of the demanded type at the demanded precision."""
        return [
            (group, peak)
            for group in record.get("accelerators", [])
            if group["kind"] == wanted["acceleratorType"]
            for peak in group["peak"]
            if peak["precision"] == wanted["precision"]
        ]

    def type_and_precision(self, wanted: Record, record: Record) -> bool:
        return bool(self.figures(wanted, record))

    def peak(self, wanted: Record, record: Record) -> bool:
        floor = wanted["minPeak"]
        return any(p["unit"] == floor["unit"] and p["value"] >= floor["value"]
                   for _, p in self.figures(wanted, record))  # fmt: skip

    def memory(self, wanted: Record, record: Record) -> bool:
        floor = wanted["minAcceleratorMemoryGiB"]
        return any(g["memoryGiB"] >= floor for g, _ in self.figures(wanted, record))

    def count(self, wanted: Record, record: Record) -> bool:
        groups = [
            g for g in record.get("accelerators", []) if g["kind"] == wanted["acceleratorType"]
        ]
        return sum(int(g["count"]) for g in groups) >= int(wanted["acceleratorCount"])

    @staticmethod
    def region(wanted: Record, record: Record) -> bool:
        return bool(record["location"]["province"] in wanted["regions"])

    def latency(self, wanted: Record, record: Record) -> bool:
        return self.rtt[record["latencyClass"]] <= self.rtt[wanted["latencyClass"]]

    @staticmethod
    def price(wanted: Record, record: Record) -> bool:
        cap, price = wanted["maxPrice"], record.get("price")
        return (
            price is not None
            and price["currency"] == cap["currency"]
            and price["per"] == cap["per"]
            and price["amount"] <= cap["amount"]
        )

    @staticmethod
    def green(wanted: Record, record: Record) -> bool:
        energy = record.get("energy")
        return energy is not None and energy["renewableShare"] >= wanted["minRenewableShare"]

    @staticmethod
    def available(wanted: Record, record: Record) -> bool:
        return bool(record["servingState"] == "production" and record["healthState"] == "ok")

    def rule(self, name: str) -> Callable[[Record, Record], bool]:
        return {
            "type_and_precision": self.type_and_precision,
            "peak": self.peak,
            "memory": self.memory,
            "count": self.count,
            "region": self.region,
            "latency": self.latency,
            "price": self.price,
            "green": self.green,
            "available": self.available,
        }[name]


def numbers(text: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(text)]


def mentions(reason: Mapping[str, str], *figures: float) -> bool:
    """Whether the reason (in either language) states one of the figures."""
    said = numbers(reason.get("en", "")) + numbers(reason.get("zh", ""))
    return any(abs(s - f) < 1e-9 for s in said for f in figures)
