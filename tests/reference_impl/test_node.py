"""json_record reads stored records exactly as the standard library does: a faster reader
(orjson reads integers beyond 64 bits as floats) must not change a single value."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from reference_impl.node import json_record

EDGES = [
    {"n": 2**63 - 1, "m": -(2**63)},  # 19 digits: the standard library reads these
    {"n": 2**64 + 1, "x-big": -(2**70)},  # beyond 64 bits: orjson would read floats
    {"n": 999_999_999_999_999_999},  # the largest 18-digit integer
    {"f": 0.1, "g": 1.5e300, "h": -0.0, "i": 5e-324},
    {"s": "1234567890123456789012", "t": "广东", "u": None, "v": True},
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["int", "bigint", "float", "str", "list", "dict"] if depth < 3 else ["int"])
    if kind == "int":
        return rng.randint(-(10**18), 10**18)
    if kind == "bigint":
        return rng.choice([-1, 1]) * rng.randint(10**18, 10**30)
    if kind == "float":
        return rng.uniform(-1e20, 1e20)
    if kind == "str":
        return "".join(rng.choice("0123456789aé广") for _ in range(rng.randint(0, 30)))
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


@pytest.mark.parametrize("record", EDGES)
def test_edge_records_read_exactly(record: dict[str, Any]) -> None:
    text = json.dumps(record, ensure_ascii=False)
    read = json_record({"record": text})
    assert read == json.loads(text)
    assert [type(v) for v in read.values()] == [type(v) for v in record.values()]


def test_random_records_read_as_the_standard_library_reads_them() -> None:
    rng = random.Random(20261206)
    for _ in range(2_000):
        text = json.dumps({"v": _random_value(rng)}, ensure_ascii=False)
        assert json.dumps(json_record({"record": text})) == json.dumps(json.loads(text)), text
