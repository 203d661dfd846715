"""Shared benchmark plumbing: machine line, interleaved warm timing, JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """CPU model, core count, backend and JAX version: the context for any timing."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = jax.devices()[0]
    return (
        f"{model}, {os.cpu_count()} cores, {device.platform} ({device.device_kind}), "
        f"jax {jax.__version__}, python {platform.python_version()}"
    )


def time_interleaved(
    runs: dict[str, tuple[Callable[[Any, jax.Array], Any], Any]],
    repetitions: int,
    key: jax.Array,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Warm each ``step(state, key) -> state`` once, then time them in turn.

    Returns per-name lists of seconds per call, and the first (compiling) call's
    seconds. Interleaving spreads any drift of the machine over all methods.
    """
    states = {name: state for name, (_, state) in runs.items()}
    first: dict[str, float] = {}
    for name, (step, _) in runs.items():
        tick = time.perf_counter()
        states[name] = jax.block_until_ready(step(states[name], key))
        first[name] = time.perf_counter() - tick
    times: dict[str, list[float]] = {name: [] for name in runs}
    for k in jax.random.split(key, repetitions):
        for name, (step, _) in runs.items():
            tick = time.perf_counter()
            states[name] = jax.block_until_ready(step(states[name], k))
            times[name].append(time.perf_counter() - tick)
    return times, first


CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def tinyshakespeare() -> str:
    """The corpus from ../shared/data when present, else the loader's cache or download."""
    import lrne

    return lrne.tasks.load_tinyshakespeare(CORPUS if CORPUS.exists() else None)


def median(values: list[float]) -> float:
    return statistics.median(values)


def write(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


# Two-sided 95% Student-t quantiles by degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci95(values: list[float]) -> dict[str, float]:
    """Mean and half-width of the 95% confidence interval (Student t)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": math.nan}
    quantile = T975.get(len(values) - 1, 1.96)
    return {"mean": mean, "ci95": quantile * statistics.stdev(values) / math.sqrt(len(values))}
