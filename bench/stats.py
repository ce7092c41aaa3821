"""Small numeric helpers shared by the benchmark modes."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(seconds: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds, rounded to 0.01 ms."""
    ordered = sorted(seconds)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        f"{prefix}p50_ms": ms(percentile(ordered, 0.50)),
        f"{prefix}p95_ms": ms(percentile(ordered, 0.95)),
        f"{prefix}p99_ms": ms(percentile(ordered, 0.99)),
        f"{prefix}max_ms": ms(ordered[-1] if ordered else None),
    }


def ratio(value: float | None, ceiling: float | None) -> float | None:
    if value is None or not ceiling:
        return None
    return round(value / ceiling, 3)


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0
