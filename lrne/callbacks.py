"""Callbacks for :func:`lrne.run`: a progress bar, a metrics file and a time limit.

The impure shell around the loop (terminal output, files), kept out of the
library's pure modules. Write your own by subclassing :class:`lrne.Callback`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lrne.runner import Callback, Row, RunResult


def describe(row: Row) -> str:
    """``best … mean …``; for RL tasks, env steps per second of the generation; with
    gradient diagnostics (:mod:`lrne.diagnostics`), the estimate's cosine to backprop."""
    text = f"best {row['best_fitness']:.4g}  mean {row['fitness_mean']:.4g}"
    if "env_steps" in row:
        text += f"  {row['env_steps'] / row['seconds']:,.0f} env steps/s"
    if "grad/cos" in row:
        text += f"  cos(ĝ, −∇L) {row['grad/cos']:.3f} (gen {row['generation']})"
    return text


class ProgressBar(Callback):
    """A rich progress bar: generations done of ``total``, the latest row, elapsed time.

    Use it as a context manager around :func:`lrne.run`, so that the terminal
    is restored however the run ends.

    Args:
        total: the run's ``generations``.
        describe: the text shown for the latest row.
    """

    def __init__(self, total: int, describe: Callable[[Row], str] = describe) -> None:
        self.describe = describe
        self.progress = Progress(
            TextColumn("[bold]gen"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        self.bar = self.progress.add_task("run", total=total, info="")
        self._diagnostics: dict[str, Any] = {}

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def on_start(self, generation: int, state: Any) -> None:
        self.progress.update(self.bar, completed=generation, info="compiling…")

    def on_generation(self, generation: int, row: Row, state: Any) -> None:
        # Diagnostics, measured every K generations, stay shown in between.
        if any(name.startswith("grad/") for name in row):
            self._diagnostics = {k: v for k, v in row.items() if k.startswith("grad/")}
            self._diagnostics["generation"] = generation
        shown = {**row, **self._diagnostics}
        self.progress.update(self.bar, completed=generation + 1, info=self.describe(shown))

    def on_end(self, result: RunResult) -> None:
        self.progress.refresh()


class MetricsLog(Callback):
    """Appends each row to a JSON-lines file; ``rows`` holds the whole run's rows.

    On start it keeps the rows of the generations before the one the run starts
    at (a resumed run recomputes those after its checkpoint; a killed run may
    have written more, or a cut line) and drops the others.

    Args:
        path: the ``.jsonl`` file, rewritten on start.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[Row] = []

    def on_start(self, generation: int, state: Any) -> None:
        self.rows = [row for row in self._read() if row.get("generation", generation) < generation]
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text("".join(json.dumps(row) + "\n" for row in self.rows))
        os.replace(partial, self.path)  # atomic: a kill now loses no kept row

    def _read(self) -> list[Row]:
        rows = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:  # a line cut by a kill
                    continue
        return rows

    def on_generation(self, generation: int, row: Row, state: Any) -> None:
        self.rows.append(row)
        with self.path.open("a") as file:
            file.write(json.dumps(row) + "\n")


class TimeLimit(Callback):
    """Stops the run once ``seconds`` of wall-clock have passed since it started.

    The clock starts in ``on_start``, before the first generation, so the
    first generation's compiling counts. ``elapsed`` is the time at the latest
    generation's end.

    Args:
        seconds: the budget, > 0.
    """

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds!r}")
        self.seconds = float(seconds)
        self.start = math.nan
        self.elapsed = 0.0

    def on_start(self, generation: int, state: Any) -> None:
        self.start = time.perf_counter()

    def on_generation(self, generation: int, row: Row, state: Any) -> bool:
        self.elapsed = time.perf_counter() - self.start
        return self.elapsed >= self.seconds
