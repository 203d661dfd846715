"""Log a run to TensorBoard, Weights & Biases or a CSV file with a small ``lrne.Callback``.

``lrne.run`` calls each callback's ``on_start`` before the first generation,
``on_generation`` after each one with its metrics as Python numbers (return
True there to stop the run), and ``on_end`` with the result. A logger is a
few lines on top, and lrne depends on none: the TensorBoard and W&B imports
below are tried only when those loggers are made, and by default the example
logs to TensorBoard if tensorboardX (or torch with tensorboard) is installed,
otherwise to a CSV file, which needs nothing.

    python examples/logger_callback.py                       # runs/logger_example/, ~10 s
    python examples/logger_callback.py --logger csv          # metrics.csv only
    python examples/logger_callback.py --logger wandb        # needs wandb (offline run)
    python examples/logger_callback.py --quick               # toy sizes, seconds
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import jax

import lrne


class CSVLogger(lrne.Callback):
    """One row per generation in ``directory/metrics.csv``, and the answer's score at the end."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "metrics.csv"

    def on_start(self, generation: int, state: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w", newline="")
        self.writer = None  # columns are known at the first row

    def on_generation(self, generation: int, row: dict, state: Any) -> None:
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(row))
            self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()  # a killed run keeps its rows

    def on_end(self, result: lrne.RunResult) -> None:
        self.file.close()
        print(f"wrote {len(result.history)} rows to {self.path}")


class TensorBoardLogger(lrne.Callback):
    """Each metric as a scalar curve (tag = metric name, step = generation)."""

    def __init__(self, directory: str | Path) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            from torch.utils.tensorboard import SummaryWriter  # ImportError if neither
        self.writer = SummaryWriter(str(directory))

    def on_start(self, generation: int, state: Any) -> None:
        self.writer.add_text("run", f"started at generation {generation}")

    def on_generation(self, generation: int, row: dict, state: Any) -> None:
        for name, value in row.items():
            self.writer.add_scalar(name, value, generation)

    def on_end(self, result: lrne.RunResult) -> None:
        self.writer.close()


class WandbLogger(lrne.Callback):
    """One W&B step per generation; ``mode="offline"`` needs no account (sync later)."""

    def __init__(self, directory: str | Path, config: dict, mode: str = "offline") -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project="lrne", dir=str(directory), config=config, mode=mode)

    def on_start(self, generation: int, state: Any) -> None:
        self.run.summary["start_generation"] = generation

    def on_generation(self, generation: int, row: dict, state: Any) -> None:
        self.run.log(row, step=generation)

    def on_end(self, result: lrne.RunResult) -> None:
        self.run.summary["generations"] = result.generation
        self.run.finish()


class StopAt(lrne.Callback):
    """Stops the run once the best fitness reaches ``target`` (on_generation returns True)."""

    def __init__(self, target: float) -> None:
        self.target = target

    def on_generation(self, generation: int, row: dict, state: Any) -> bool:
        return row["best_fitness"] >= self.target


def make_logger(name: str, directory: str | Path, config: dict) -> lrne.Callback:
    """``auto``: TensorBoard where it is installed, otherwise CSV; or the one named."""
    if name in ("auto", "tensorboard"):
        try:
            return TensorBoardLogger(directory)
        except ImportError:
            if name == "tensorboard":
                raise
    if name == "wandb":
        return WandbLogger(directory, config)
    return CSVLogger(directory)


def main(
    quick: bool = False, logger: str = "auto", directory: str | Path = "runs/logger_example"
) -> dict:
    """GA on CartPole-v1, logged into ``directory`` by ``logger`` (see :func:`make_logger`)."""
    population, generations, max_steps = (8, 3, 50) if quick else (128, 50, 500)
    task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((32,), 2, rank=4), max_steps=max_steps)
    strategy = lrne.ga(population, num_elites=max(2, population // 8), sigma=0.5)
    config = {"env": "CartPole-v1", "population": population, "generations": generations}
    log = make_logger(logger, directory, config)
    print(f"logging with {type(log).__name__} into {directory}")
    callbacks = [log, StopAt(float(max_steps))]  # stop at a perfect episode
    result = lrne.run(strategy, task, jax.random.key(0), generations, callbacks=callbacks)
    print(f"{result.generation} generations, best return {result.history[-1]['best_fitness']}")
    return {"generations": result.generation, "rows": result.history}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes")
    parser.add_argument("--logger", choices=("auto", "csv", "tensorboard", "wandb"), default="auto")
    parser.add_argument("--output", default="runs/logger_example", help="log directory")
    args = parser.parse_args()
    main(args.quick, args.logger, args.output)
