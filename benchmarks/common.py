"""What the benchmarks measure with: the machine, timing, confidence intervals,
snapshots against the clock, plots, the language-model corpus and configs."""

from __future__ import annotations

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
from harness import ROOT

import lrne

CONFIGS = ROOT / "configs"


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


def timed(fn: Callable, *args: Any) -> tuple[Any, float]:
    """``fn(*args)``, waited for until its arrays are ready, and the seconds it took."""
    tick = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - tick


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
        states[name], first[name] = timed(step, states[name], key)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for k in jax.random.split(key, repetitions):
        for name, (step, _) in runs.items():
            states[name], seconds = timed(step, states[name], k)
            times[name].append(seconds)
    return times, first


def median(values: list[float]) -> float:
    return statistics.median(values)


def mean_ci95(values: list[float]) -> dict[str, float]:
    """Mean and half-width of its 95% confidence interval: Student t with n − 1
    degrees of freedom, t × std / √n (NaN for fewer than two values)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": math.nan}
    quantile = float(stats.t.ppf(0.975, len(values) - 1))
    return {"mean": mean, "ci95": quantile * statistics.stdev(values) / math.sqrt(len(values))}


class Snapshots(lrne.Callback):
    """Takes ``answer(state)`` at intervals of ``clock``'s time, off the clock.

    With ``score(params) -> scalar`` (jitted here), each snapshot is scored at
    once; without it, a host copy is kept in ``policies`` to score later.
    ``rows`` hold each snapshot's seconds, generation, steps so far (the rows'
    tokens or env steps) and score. The gap after a snapshot at t seconds is
    ``every``, or, ``growing``, 0.25·t, at least 0.5 s and at most ``every``:
    dense early, where the fast methods reach a threshold. The last is taken
    when the clock runs out. ``compile_seconds``: the first generation's
    seconds, compiling included.
    """

    def __init__(
        self,
        clock: lrne.callbacks.TimeLimit,
        answer: Callable[[Any], Any],
        every: float,
        score: Callable | None = None,
        growing: bool = False,
    ) -> None:
        self.clock, self.answer, self.every, self.growing = clock, answer, every, growing
        self.score = None if score is None else jax.jit(score)
        self.rows: list[dict[str, float]] = []
        self.policies: list[Any] = []
        self.steps, self.generations, self.compile_seconds = 0, 0, math.nan

    def on_generation(self, generation: int, row: dict, state: Any) -> None:
        self.steps += int(row.get("tokens", row.get("env_steps", 0)))
        self.generations = generation + 1
        if generation == 0:
            self.compile_seconds = float(row["seconds"])
        last = self.rows[-1]["seconds"] if self.rows else (0.0 if self.growing else -math.inf)
        gap = min(self.every, max(0.5, 0.25 * last)) if self.growing else self.every
        elapsed = self.clock.elapsed
        if elapsed - last < gap and elapsed < self.clock.seconds:
            return
        tick = time.perf_counter()
        snapshot = {"seconds": round(elapsed, 2), "generation": generation + 1, "steps": self.steps}
        if self.score is None:
            self.policies.append(jax.device_get(self.answer(state)))
        else:
            snapshot["score"] = float(self.score(self.answer(state)))
            print(f"  {elapsed:7.1f} s gen {generation + 1} score {snapshot['score']:.4f}")
            sys.stdout.flush()
        self.rows.append(snapshot)
        self.clock.start += time.perf_counter() - tick  # off the clock


def train_loop(step: Callable, state: Any, key: jax.Array, snapshots: Snapshots) -> Any:
    """Call ``step(state, key_g) -> (state, row)`` until ``snapshots.clock`` runs out.

    Each generation's row, with its ``seconds``, goes to the clock and the
    snapshots as :func:`lrne.run` passes it to its callbacks. The caller starts
    the clock. Returns the last state.
    """
    generation = 0
    while True:
        (state, row), seconds = timed(step, state, jax.random.fold_in(key, generation))
        row = {**row, "seconds": seconds}
        stop = snapshots.clock.on_generation(generation, row, state)
        snapshots.on_generation(generation, row, state)
        generation += 1
        if stop:
            return state


def band_plot(path: Path, panels: list[dict], title: str | None = None, size=(6, 4)) -> None:
    """Line plots with 95% CI bands, one axes per panel side by side, into a PNG.

    Each panel: ``lines``, dicts of ``x``, ``y``, an optional ``band`` (the
    half-widths), an optional ``style`` (a format string such as ``"C0--"``) and
    other ``Axes.plot`` keywords (``label``, ``color``, ...); ``hlines``, (y,
    label, line style) each; ``xlabel``, ``ylabel``, ``title``, ``xscale`` and
    ``yscale``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=size, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for line in panel.get("lines", ()):
            line = dict(line)
            x, y, band = (
                np.asarray(line.pop("x")),
                np.asarray(line.pop("y")),
                line.pop("band", None),
            )
            (drawn,) = ax.plot(x, y, line.pop("style", "-"), **line)
            if band is not None:
                band = np.asarray(band)
                ax.fill_between(x, y - band, y + band, color=drawn.get_color(), alpha=0.2)
        for y, label, style in panel.get("hlines", ()):
            ax.axhline(y, color="gray", ls=style, lw=1, label=label)
        ax.set_xscale(panel.get("xscale", "linear"))
        ax.set_yscale(panel.get("yscale", "linear"))
        ax.set_xlabel(panel.get("xlabel", ""))
        ax.set_ylabel(panel.get("ylabel", ""))
        ax.set_title(panel.get("title", ""))
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
# Tiny Shakespeare's 65 characters: a generated stand-in over the same alphabet
# gives a model the same vocabulary, so the same output layer.
ALPHABET = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
QUICK_CHARS = 20_000


def tinyshakespeare(path: str | os.PathLike | None = None) -> str:
    """Tiny Shakespeare from ``path``, else ../shared/data, else the loader's cache or download."""
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
    return str(path.relative_to(ROOT))
