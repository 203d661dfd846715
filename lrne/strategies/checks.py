"""Construction-time checks shared by strategies: clear messages, never trace errors."""

from __future__ import annotations

import math
from typing import Any

import jax


def check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_fitness(fitness: jax.Array, population_size: int) -> None:
    if fitness.shape != (population_size,):
        raise ValueError(f"fitness must have shape ({population_size},), got {fitness.shape}")
