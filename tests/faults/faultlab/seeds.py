"""Seeded randomness for randomised scenarios: the seed is printed, HAMQ_FAULT_SEED replays it."""

from __future__ import annotations

import os
import random


def seed_for(name: str) -> int:
    """HAMQ_FAULT_SEED if set, else a fresh random seed; printed (pytest shows it with the failure)."""
    raw = os.environ.get("HAMQ_FAULT_SEED")
    value = int(raw) if raw else random.SystemRandom().randrange(1 << 31)
    print(f"{name}: seed {value} (replay with HAMQ_FAULT_SEED={value})", flush=True)
    return value


def rng_for(name: str) -> random.Random:
    seed = seed_for(name)
    rng = random.Random(seed)
    rng.seed_value = seed  # type: ignore[attr-defined]
    return rng
