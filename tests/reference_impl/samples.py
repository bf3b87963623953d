"""Request bodies several node tests share; each test names the variant it relies on."""

from __future__ import annotations

from typing import Any

OWNER = {"uscc": "9144030071526726XG", "name": "广东粤算科技有限公司"}
Peak = tuple[str, float, str]


def gpu_pool(count: int, peaks: list[Peak], *, costed: bool = True) -> dict[str, Any]:
    """A registerResource body: `count` H20 GPUs in Shaoguan, Guangdong, with one peak figure
    per (precision, value, unit); `costed` adds energy figures and an hourly price."""
    body: dict[str, Any] = {
        "resType": "GPU",
        "name": {"zh": "韶关GPU训练资源池", "en": "Shaoguan GPU training pool"},
        "owner": dict(OWNER),
        "location": {"province": "44", "city": "韶关市"},
        "latencyClass": "5ms",
        "accelerators": [
            {
                "kind": "GPU",
                "model": "NVIDIA H20",
                "count": count,
                "memoryGiB": 96,
                "peak": [{"precision": p, "value": v, "unit": u} for p, v, u in peaks],
            }
        ],
        "servingState": "production",
        "healthState": "ok",
        "capacity": {"acceleratorsTotal": count},
    }
    if costed:
        body["energy"] = {"pue": 1.25, "renewableShare": 0.42}
        body["price"] = {"amount": 9.8, "currency": "CNY", "per": "h"}
    return body
