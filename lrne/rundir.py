"""A run directory: the one place that writes and reads what ``lrne train`` leaves.

A run directory holds ``config.toml`` (the run's whole config, resolved: it is
itself a valid ``--config``), ``metrics.jsonl`` (one line per generation),
``run_state/`` (the strategy state every ``checkpoint_every`` generations and
at the end, orbax: :class:`lrne.checkpoint.RunCheckpoints`), ``checkpoint/``
(the best params), ``lineage.bin`` (the answer's seed-lineage record:
:mod:`lrne.lineage`), ``learning_curve.png`` and ``summary.json``.
:func:`load_run` rebuilds the strategy, task and model from the config and
restores the latest readable state, read-only (a killed run loads too).

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import jax

from lrne.callbacks import MetricsLog
from lrne.checkpoint import RunCheckpoints, save_params
from lrne.config import Config, ConfigError, read_toml
from lrne.errors import ArgumentError
from lrne.genome import PyTree
from lrne.lineage import Record, replay
from lrne.runner import Row, checkpoint_tree, initial_state

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
RUN_STATE = "run_state"
BEST_PARAMS = "checkpoint"
CURVE_FILE = "learning_curve.png"
SUMMARY_FILE = "summary.json"
LINEAGE_FILE = "lineage.bin"
_CURVES = ("best_fitness", "fitness_max", "elite_fitness_mean", "fitness_mean")


class RunDirError(ValueError):
    """Not a usable run directory: none there, no ``config.toml``, or no readable
    checkpoint (a damaged ``config.toml`` is a :class:`~lrne.config.ConfigError`)."""


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(run key, test key)`` of a run's seed: the run's generations
    (:func:`lrne.run`'s ``key``), and the fresh evaluations of ``summary.json``
    (and of ``lrne eval`` by default)."""
    key_run, key_test = jax.random.split(jax.random.key(seed))
    return key_run, key_test


class SavedRun(NamedTuple):
    """A run loaded by :func:`load_run`.

    Attributes:
        config: the run's :class:`~lrne.config.Config`.
        strategy, task: rebuilt from the config.
        model: the task's flax module (None for a task without one, Lorenz).
        state: the strategy state after ``generation`` generations.
        generation: generations done at the restored checkpoint.
        params: ``state.best_params``, the best variables found.
        mean: the search distribution's mean variables (ES, online ES; for
            online ES the same as ``params``), else None.
        path: the run directory.
    """

    config: Config
    strategy: Any
    task: Any
    model: Any
    state: Any
    generation: int
    params: PyTree
    mean: PyTree | None
    path: Path

    @property
    def answer(self) -> PyTree:
        """What the run answers with: the mean where the strategy has one, else the best."""
        return self.params if self.mean is None else self.mean


def check_writable(output: str | Path) -> None:
    """Make ``output`` (and its parents) and check that a file can be written there.

    Raises:
        OSError: it cannot.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    probe = output / ".lrne-write-test"
    probe.write_text("")
    probe.unlink()


def start(output: str | Path, config: Config, resume: bool) -> MetricsLog:
    """Begin a run in ``output``: its ``config.toml`` (``config`` resolved: every value
    the run uses), and for a new run (not ``resume``) no run state of an earlier one.

    Returns:
        The callback that writes ``metrics.jsonl`` (rewritten on start to the rows of
        the generations the run resumes after).
    """
    output = Path(output)
    if not resume:
        shutil.rmtree(output / RUN_STATE, ignore_errors=True)
    partial = output / f"{CONFIG_FILE}.partial"
    partial.write_text(config.to_toml())
    os.replace(partial, output / CONFIG_FILE)  # atomic: a kill leaves the old or the new
    return MetricsLog(output / METRICS_FILE)


def finish(
    output: str | Path,
    best_params: PyTree,
    rows: list[Row],
    summary: dict[str, Any],
    title: str,
    lineage: Record | None = None,
) -> None:
    """End a run in ``output``: the best params (``checkpoint/``), the answer's
    ``lineage`` record (``lineage.bin``), the learning curve of the metrics ``rows``
    titled ``title``, and ``summary``, as ``summary.json``."""
    output = Path(output)
    save_params(output / BEST_PARAMS, best_params)
    if lineage is not None:
        lineage.save(output / LINEAGE_FILE)
    plot(rows, output / CURVE_FILE, title)
    (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def plot(rows: list[Row], path: str | Path, title: str) -> None:
    """The learning curves of metrics ``rows`` (best, max, elite mean, mean fitness) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generations = [row["generation"] for row in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in zip(_CURVES, ("-", ":", "-.", "--"), strict=True):
        if rows and name in rows[0]:
            ax.plot(generations, [row[name] for row in rows], style, label=name)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_config(run_dir: str | Path) -> Config:
    """The config of a run directory, every key present.

    Raises:
        RunDirError: no directory, or no ``config.toml`` in it.
        ConfigError: a damaged or incomplete ``config.toml`` (its path in the message).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{str(run_dir)!r} is not a directory")
    if not path.is_file():
        raise RunDirError(f"no {CONFIG_FILE} in {str(run_dir)!r}: not a run of lrne train")
    try:
        return Config.from_dict(read_toml(path), strict=True)
    except ConfigError as error:
        raise ConfigError("", f"{path}: {error}") from None


def completed_generations(run_dir: str | Path) -> int:
    """The newest checkpointed generation in ``run_dir/run_state`` (0 if none)."""
    state_dir = Path(run_dir) / RUN_STATE
    steps = [int(p.name) for p in state_dir.glob("*") if p.name.isdigit()]
    return max(steps, default=0)


def template(config: Config, strategy: Any, task: Any) -> PyTree:
    """Shapes, dtypes and placement of a run's checkpoints (what :func:`lrne.run` saves)."""
    from jax.sharding import NamedSharding, PartitionSpec

    from lrne.distributed import population_mesh

    key_run, _ = run_keys(config.run.seed)
    state = jax.eval_shape(lambda: initial_state(strategy, task, key_run))
    tree = checkpoint_tree(state, key_run)
    # Replicated over the local devices, as lrne train holds the state: functions
    # compiled for the run's arrays (lrne.evaluate_best) then serve these too.
    sharding = NamedSharding(population_mesh(jax.local_devices()), PartitionSpec())
    place = lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding)
    return jax.tree.map(place, tree)


def load_run(run_dir: str | Path) -> SavedRun:
    """Load a run of ``lrne train`` (finished or killed) for use in Python.

    Args:
        run_dir: the run's directory (``run.output``).

    Returns:
        A :class:`SavedRun`: the config, the rebuilt strategy, task and model,
        and the latest readable strategy state with its best and mean params.

    Raises:
        RunDirError: no run there, or no readable checkpoint of its config's run.
        ConfigError: a damaged or incomplete ``config.toml``, or a config this
            lrne cannot build (e.g. its text file is gone).

    Example:
        >>> run = lrne.load_run("runs/train")
        >>> lrne.evaluate_best(run.task, run.params, jax.random.key(0))
        >>> run.model.apply(run.params, obs)  # the policy's outputs
    """
    config = read_config(run_dir)
    strategy, task, model = config.build()
    checkpoints = RunCheckpoints(Path(run_dir) / RUN_STATE)
    try:
        restored = checkpoints.restore_latest(template(config, strategy, task), read_only=True)
    except ArgumentError as error:  # another run's state
        raise RunDirError(str(error)) from None
    if restored is None:
        raise RunDirError(f"no readable checkpoint in {str(Path(run_dir) / RUN_STATE)!r}")
    generation, tree = restored
    state = tree["state"]
    # ES and online ES answer with their mean (a field of their state); GA and
    # Metropolis have none.
    mean = getattr(state, "mean", None)
    return SavedRun(
        config, strategy, task, model, state, generation, state.best_params, mean, Path(run_dir)
    )


class Replayed(NamedTuple):
    """A run's answer rebuilt from its ``lineage.bin`` alone (:func:`replay_run`)."""

    config: Config
    strategy: Any
    task: Any
    generation: int
    params: PyTree
    record: Record


def replay_run(run_dir: str | Path) -> Replayed:
    """Rebuild a finished run's answer from its config and seed-lineage record, without
    reading its checkpoints (:func:`lrne.lineage.replay`).

    Raises:
        RunDirError: no run there, or no ``lineage.bin`` (the run did not finish, or
            was started from a given state).
    """
    config = read_config(run_dir)
    path = Path(run_dir) / LINEAGE_FILE
    if not path.is_file():
        raise RunDirError(f"no {LINEAGE_FILE} in {str(run_dir)!r}: the run has not finished")
    record = Record.load(path)
    strategy, task, _ = config.build()
    params = replay(record, strategy, task)
    return Replayed(config, strategy, task, record.generations, params, record)
