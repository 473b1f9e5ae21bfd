"""Summary figures for repeated, noisy measurements: min/median/max and percentiles."""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: p99 of 30 samples is the largest, never an invented value."""
    if not values:
        raise ValueError("percentile of no samples")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict:
    """min/median/max plus p50/p99 and the raw samples, for the JSON and the table."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "samples": list(values),
    }
