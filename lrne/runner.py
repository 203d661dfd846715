"""The training loop: :func:`run` a strategy on a task; :func:`evaluate_best` scores the answer.

:func:`run` is the host-side loop around the pure, jit-compiled
:func:`lrne.generation_step` (or :func:`lrne.sharded_generation_step` on a
mesh), in the manner of brax's ``train(..., progress_fn)``: it derives every
key from one key, collects each generation's metrics as a row of Python
numbers, hands rows to callbacks (progress bars, metric files and early stops
live there, not here), and checkpoints the run state so that a killed run
resumes exactly.

Keys: ``key`` splits into (params, init, run) keys, and generation ``g`` uses
``fold_in(run_key, g)``; so a run of N generations is a prefix of a run of
M > N with the same key, and a resumed run repeats the uninterrupted one bit
for bit.
"""

from __future__ import annotations

import functools
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from lrne.distributed import replicate, sharded_generation_step
from lrne.errors import ArgumentError
from lrne.generation import generation_step, split_key
from lrne.genome import Metrics, PyTree
from lrne.lineage import FITNESS, Log, recording
from lrne.strategies.base import Strategy, check_int
from lrne.tasks.base import Task

Row = dict[str, Any]
"""One generation's metrics as Python numbers, plus ``generation`` and ``seconds``."""


class RunResult(NamedTuple):
    """What :func:`run` returns.

    Attributes:
        state: the strategy state after the last generation run (its
            ``best_params`` is the run's answer).
        history: the rows of the generations this call ran (after a resume,
            only those past the restored generation).
        generation: the number of generations done, i.e. the next one's index
            (less than ``generations`` when a callback stopped the run).
        lineage: the run's :class:`~lrne.lineage.Log` (every generation, also
            those before a resume), from which ``lineage.record(key)`` is the
            answer's seed-lineage record; None for a run started from a given
            ``state`` or resumed without its log.
    """

    state: Any
    history: list[Row]
    generation: int
    lineage: Log | None = None


def initial_state(
    strategy: Strategy, task: Any, key: jax.Array, params: PyTree | None = None
) -> Any:
    """The state a run of ``key`` starts from: ``strategy.init`` of ``params`` (default
    ``task.init_params``), with the keys of :func:`split_key`."""
    keys = split_key(key)
    params = task.init_params(keys.params) if params is None else params
    return strategy.init(keys.init, params, task)


def checkpoint_tree(state: Any, key: jax.Array) -> dict[str, Any]:
    """What a run saves as a checkpoint: the strategy state and its key's data."""
    return {"state": state, "key": np.asarray(jax.random.key_data(key))}


class Callback(Protocol):
    """Host-side hooks :func:`run` calls; subclass it to override only some.

    Callbacks are the impure shell (progress, files, early stopping); they run
    between generations and see Python numbers, never traced values.
    """

    def on_start(self, generation: int, state: Any) -> None:
        """Before the first generation; ``generation`` > 0 when the run was resumed."""

    def on_generation(self, generation: int, row: Row, state: Any) -> bool | None:
        """After generation ``generation``; return True to stop the run after it."""
        return None

    def on_end(self, result: RunResult) -> None:
        """After the last generation and the last checkpoint."""


LINEAGE_FILE = "lineage.npz"


def _restore_lineage(fresh: Log | None, path: Path, generations: int) -> Log | None:
    """The saved lineage log of a resumed run, cut to its ``generations``; None for a
    run that keeps none (started from a given state). A checkpoint directory without a
    usable log (an older lrne's, a file removed or cut short) resumes without one,
    with a warning: the resumed run's ``lineage`` is None, not a partial record."""
    if fresh is None:
        return None
    try:
        return Log.load(path).truncate(generations)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        warnings.warn(
            f"resuming without a lineage record: {str(path)!r} does not hold the "
            f"{generations} generations restored ({error})",
            stacklevel=3,
        )
        return None


@functools.lru_cache(maxsize=8)
def _compiled_step(
    strategy: Strategy, task: Any, population_size: int | None, mesh: Mesh | None
) -> Callable[[Any, jax.Array], tuple[Any, Metrics]]:
    # Cached so that runs of the same strategy and task (seeds of a benchmark)
    # compile once: a new jit of a new closure would compile again.
    if strategy.mutate is None:  # a fitness record: the step returns the fitness too
        strategy = recording(strategy)
    if mesh is None:
        return jax.jit(generation_step(strategy, task))
    return jax.jit(sharded_generation_step(strategy, task, population_size, mesh))


def _row(metrics: Metrics) -> Row:
    return {name: value.tolist() for name, value in jax.device_get(metrics).items()}


def run(
    strategy: Strategy,
    task: Any,
    key: jax.Array,
    generations: int,
    *,
    state: Any = None,
    params: PyTree | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    mesh: Mesh | None = None,
) -> RunResult:
    """Run ``strategy`` on ``task`` for ``generations`` generations.

    Args:
        strategy: any lrne :class:`~lrne.strategies.Strategy`.
        task: a :class:`~lrne.tasks.Task` (or an unrollable task for online ES).
        key: a typed key; it alone determines the run.
        generations: the total number of generations, >= 1 (a resumed run
            continues up to it).
        state: a strategy state to start from instead of
            ``strategy.init(init_key, params, task)``.
        params: the initial variables (default ``task.init_params(params_key)``);
            not with ``state``.
        callbacks: :class:`Callback` objects, called in order.
        checkpoint_dir: where to keep the run state (the strategy state, the
            next generation's index and the key's data, orbax). If it holds a
            checkpoint of this run, the run resumes from the latest readable one
            (damaged ones are moved aside, see :mod:`lrne.checkpoint`).
        checkpoint_every: save every this many generations (and always after
            the last one or a stop); 0 = only then. Ignored without
            ``checkpoint_dir``. Each save also writes the lineage log
            (:mod:`lrne.lineage`) as ``lineage.npz`` in ``checkpoint_dir``.
        mesh: split the population over the devices of this 1-D
            ``"population"`` mesh (:func:`lrne.distributed.population_mesh`);
            the population size must be a multiple of its device count.

    The jit-compiled step is cached per (strategy, task, mesh), so runs of
    the same objects (seeds) compile once: treat a task as immutable.

    Returns:
        A :class:`RunResult`. Its ``state`` is a device value; metrics rows are
        Python numbers (the first generation's ``seconds`` include compiling).

    Raises:
        lrne.errors.ArgumentError: bad arguments (``argument`` names which), or
            ``checkpoint_dir`` holds another run (a different key or state
            shapes; ``argument`` is ``"checkpoint_dir"``) or one past
            ``generations``.

    Example:
        >>> import jax, jax.numpy as jnp, lrne
        >>> task = lrne.tasks.Function(lambda x: -jnp.sum(x**2), jnp.ones(3))
        >>> result = lrne.run(lrne.ga(16, 4, 0.5), task, jax.random.key(0), 10)
        >>> len(result.history), result.history[-1]["generation"]  # rows of Python numbers
        (10, 9)
        >>> score = lrne.evaluate_best(task, result.state.best_params, jax.random.key(1))
        >>> bool(score > -3.0)  # better than the start, x = (1, 1, 1)
        True
    """
    check_int("generations", generations, 1)
    check_int("checkpoint_every", checkpoint_every, 0)
    if state is not None and params is not None:
        raise ArgumentError(
            "params", "give state or params, not both: params only build the initial state"
        )
    key_run = split_key(key).generations
    lineage = None
    if state is None:
        lineage = Log(chains=strategy.mutate is not None, seeded=params is None)
        state = initial_state(strategy, task, key, params)

    population_size = None
    if mesh is not None:
        population = jax.eval_shape(lambda k, s: strategy.ask(k, s)[0], key_run, state)
        population_size = population.size
        state = replicate(state, mesh)
    step = _compiled_step(strategy, task, population_size, mesh)

    checkpoints, start = None, 0
    if checkpoint_dir is not None:
        # Imported here: orbax adds half a second to `import lrne`.
        from lrne.checkpoint import RunCheckpoints

        checkpoints = RunCheckpoints(checkpoint_dir)
        template = checkpoint_tree(state, key)
        restored = checkpoints.restore_latest(template)
        if restored is not None:
            start, saved = restored
            if not np.array_equal(saved["key"], template["key"]):
                raise ArgumentError(
                    "checkpoint_dir",
                    f"checkpoint_dir: {str(checkpoint_dir)!r} holds a run of another key",
                )
            if start > generations:
                raise ArgumentError(
                    "generations",
                    f"generations ({generations}) is less than the {start} generations "
                    f"already run in {str(checkpoint_dir)!r}",
                )
            state = saved["state"] if mesh is None else replicate(saved["state"], mesh)
            lineage = _restore_lineage(lineage, Path(checkpoint_dir) / LINEAGE_FILE, start)

    for callback in callbacks:
        callback.on_start(start, state)
    history: list[Row] = []
    generation = start
    try:
        while generation < generations:
            tick = time.perf_counter()
            state, metrics = step(state, jax.random.fold_in(key_run, generation))
            fitness = metrics.pop(FITNESS, None)
            if lineage is not None:
                lineage.append(None if fitness is None else jax.device_get(fitness), state)
            row = _row(metrics) | {"generation": generation}
            row["seconds"] = time.perf_counter() - tick
            history.append(row)
            # Every callback sees the row, even after one asked to stop.
            stop = any([bool(c.on_generation(generation, row, state)) for c in callbacks])
            generation += 1
            due = checkpoint_every and generation % checkpoint_every == 0
            if checkpoints is not None and (due or stop or generation == generations):
                # The log first: it then always reaches a saved step (a resume truncates it).
                if lineage is not None:
                    lineage.save(Path(checkpoint_dir) / LINEAGE_FILE)
                checkpoints.save(generation, checkpoint_tree(state, key))
            if stop:
                break
    finally:
        if checkpoints is not None:
            checkpoints.close()
    result = RunResult(state, history, generation, lineage)
    for callback in callbacks:
        callback.on_end(result)
    return result


@functools.lru_cache(maxsize=8)
def _fresh_fitness(task: Task, num_episodes: int) -> Callable[[jax.Array, PyTree], jax.Array]:
    return jax.jit(lambda key, params: task.fresh_fitness(key, params, num_episodes))


def evaluate_best(task: Task, params: PyTree, key: jax.Array, num_episodes: int = 32) -> float:
    """Score one member's variables (e.g. ``state.best_params``) on fresh evaluations.

    A member's training fitness is the best of many noisy draws, so it is
    biased upward; this scores it again through the task's
    :meth:`~lrne.tasks.Task.fresh_fitness` hook, higher is better:
    :class:`~lrne.tasks.Gymnax` plays ``num_episodes`` new episodes drawn from
    ``key``; :class:`~lrne.tasks.LanguageModel` gives minus the held-out loss,
    :class:`~lrne.tasks.Classification` the objective on the eval split,
    :class:`~lrne.tasks.Lorenz` minus the exact objective.

    Args:
        task: the task the member was evolved on.
        params: one member's variables, without a member axis.
        key: a typed key for the fresh evaluations.
        num_episodes: episodes for an RL task, >= 1.
    """
    check_int("num_episodes", num_episodes, 1)
    return float(_fresh_fitness(task, num_episodes)(key, params))
