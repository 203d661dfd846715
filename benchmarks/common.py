"""Shared benchmark plumbing: machine line, interleaved warm timing, JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = RESULTS.parents[1] / "configs"


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
# Tiny Shakespeare's 65 characters: a generated stand-in over the same alphabet
# gives a model the same vocabulary, so the same output layer.
ALPHABET = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
QUICK_CHARS = 20_000


def tinyshakespeare(path: str | os.PathLike | None = None) -> str:
    """Tiny Shakespeare from ``path``, else ../shared/data, else the loader's cache or download."""
    import lrne

    if path is None and CORPUS.exists():
        path = CORPUS
    return lrne.tasks.load_tinyshakespeare(path)


def generated_text(num_chars: int = QUICK_CHARS, seed: int = 0) -> str:
    """Deterministic pseudo-text over :data:`ALPHABET`: words, capitals, punctuation, lines.

    Every character of the alphabet occurs, so a quick run needs no file outside
    the repository and its model has the vocabulary of a full run's.
    """
    rng = np.random.default_rng(seed)
    lower = list("abcdefghijklmnopqrstuvwxyz")
    words = ["".join(rng.choice(lower, rng.integers(1, 9))) for _ in range(400)]
    punctuation = list("!$&',-.3:;?")
    parts = [ALPHABET]
    size = len(ALPHABET)
    while size < num_chars:
        word = str(rng.choice(words))
        if rng.random() < 0.15:
            word = word.capitalize() if rng.random() < 0.8 else word.upper()
        if rng.random() < 0.1:
            word += str(rng.choice(punctuation))
        word += "\n" if rng.random() < 0.08 else " "
        parts.append(word)
        size += len(word)
    return "".join(parts)[:num_chars]


def corpus(quick: bool, path: str | os.PathLike | None = None) -> str:
    """The text of the language-model benchmarks.

    Full runs: tiny Shakespeare (:func:`tinyshakespeare`; ``path`` must be a copy
    of it). Quick runs: the first 20,000 characters of ``path`` (any text), or
    without it :func:`generated_text`, so that the test suite reads nothing
    outside the repository.
    """
    if not quick:
        return tinyshakespeare(path)
    if path is not None:
        return Path(path).read_text(encoding="utf-8")[:QUICK_CHARS]
    return generated_text(QUICK_CHARS)


def median(values: list[float]) -> float:
    return statistics.median(values)


def write(name: str, result: dict[str, Any]) -> Path:
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
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


class PeriodicScore:
    """A :class:`lrne.Callback` scoring ``answer(state)`` every ``every`` seconds of ``clock``.

    ``score(params) -> scalar`` (jitted here) runs off the clock: its time is
    added to ``clock.start``. ``rows`` holds (seconds, generation, tokens or env
    steps so far, score); the last row is taken when the clock runs out.
    """

    def __init__(self, score: Callable, answer: Callable, clock: Any, every: float) -> None:
        self.score, self.answer = jax.jit(score), answer
        self.clock, self.every = clock, every
        self.rows: list[dict[str, float]] = []
        self.count = 0

    def on_start(self, generation: int, state: Any) -> None:
        pass

    def on_end(self, result: Any) -> None:
        pass

    def on_generation(self, generation: int, row: dict, state: Any) -> None:
        self.count += int(row.get("tokens", row.get("env_steps", 0)))
        last = self.rows[-1]["seconds"] if self.rows else -math.inf
        if self.clock.elapsed - last >= self.every or self.clock.elapsed >= self.clock.seconds:
            tick = time.perf_counter()
            value = float(self.score(self.answer(state)))
            self.rows.append(
                {
                    "seconds": round(self.clock.elapsed, 2),
                    "generation": generation + 1,
                    "steps": self.count,
                    "score": value,
                }
            )
            print(f"  {self.clock.elapsed:7.1f} s gen {generation + 1} score {value:.4f}")
            sys.stdout.flush()
            self.clock.start += time.perf_counter() - tick  # scoring is off the clock


def write_config(config: Any, name: str, header: str, output: str) -> str:
    """``config`` as ``configs/<name>.toml``, runnable from a fresh clone's root.

    A loaded config holds its paths resolved; the file gets ``run.output =
    output`` (relative to where ``lrne train`` runs) and, for a language
    model, the downloaded corpus. Returns the path relative to the repository.
    """
    from lrne.config import Config, as_toml

    data = config.to_dict()
    data["run"]["output"] = output
    if "text" in data["task"]:
        data["task"]["text"] = "tinyshakespeare"
    Config.from_dict(data)  # still a valid config
    path = CONFIGS / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {header}\n" + as_toml(data))
    return str(path.relative_to(CONFIGS.parent))
