"""On-demand prices of the GPU types people train on, for price/h and cost so far.

Source: the AWS EC2 On-Demand pricing page, Linux, us-east-1, read 2025-11.
Prices differ by region and change: override them in trainbox.toml:

    [prices]
    "g4dn.xlarge" = 0.526
"""

from __future__ import annotations

SOURCE = "AWS EC2 On-Demand pricing, Linux, us-east-1, read 2025-11"

PRICES_PER_HOUR = {
    "p2.xlarge": 0.90,
    "p3.2xlarge": 3.06,
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.12xlarge": 3.912,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.12xlarge": 5.672,
    "g6.xlarge": 0.805,
    "g6.2xlarge": 0.978,
    "g6.12xlarge": 4.602,
    "g6e.xlarge": 1.861,
    "g6e.2xlarge": 2.242,
    "p4d.24xlarge": 21.958,
    "p5.48xlarge": 55.04,
}


def price_per_hour(instance_type: str, overrides: dict | None = None) -> float | None:
    table = {**PRICES_PER_HOUR, **(overrides or {})}
    value = table.get(instance_type)
    return float(value) if value is not None else None


def cost(price: float | None, seconds: float) -> float | None:
    return None if price is None else price * seconds / 3600.0
