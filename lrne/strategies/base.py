"""The strategy contract (optax style) and the bookkeeping every strategy shares.

A strategy is a NamedTuple of pure functions closing over static settings. The
shared pieces live here once: the ``tell`` bookkeeping (:func:`tracked`; its
arithmetic is :mod:`lrne.fitness`), σ schedules, dtype fixing of initial
params and construction-time checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from lrne.errors import ArgumentError
from lrne.fitness import num_nonfinite, ranked, update_best
from lrne.genome import Metrics, Population, PyTree


class Evaluator(Protocol):
    """The evaluation hook: ``(key, state, population, task) -> (fitness, metrics, state)``."""

    def __call__(
        self, key: jax.Array, state: Any, population: Population, task: Any
    ) -> tuple[jax.Array, Metrics, Any]: ...


def evaluate_with_task(
    key: jax.Array, state: Any, population: Population, task: Any
) -> tuple[jax.Array, Metrics, Any]:
    """The default evaluation hook: ``task.evaluate(key, population)``; the state is unchanged."""
    fitness, metrics = task.evaluate(key, population)
    return fitness, metrics, state


class Strategy(NamedTuple):
    """An evolution strategy as pure functions closing over static settings.

    ``init(key, params, task=None) -> state``: ``params`` is one member's
    variables; ``task`` is needed only by strategies that keep inner states
    of the task (online ES).
    ``ask(key, state) -> (population, state)``: a :class:`~lrne.genome.Population`.
    ``evaluate(key, state, population, task) -> (fitness, metrics, state)``:
    the hook :func:`lrne.generation_step` calls to score a population; by
    default ``task.evaluate``. Online ES supplies one that unrolls each
    particle one truncation window from the inner states it keeps.
    ``tell(key, state, population, fitness) -> (state, metrics)``: update from
    fitness of shape (population_size,), **maximized**; NaN/inf ranks last.
    ``mutate(key, state, params, index) -> params``: for strategies whose
    members descend from one another by mutations (GA, Metropolis), mutation
    ``index`` of the generation whose ``ask`` got ``key`` (``state.generation``
    that generation), applied to one member's ``params``, bit for bit as ``ask``
    applies it; their states then carry an :class:`Ancestry`, and a member is
    rebuilt from its seed-lineage record (:mod:`lrne.lineage`). ``None``
    elsewhere: ES and online ES are replayed from their fitness.
    ``estimate``: for an ES, its :class:`~lrne.strategies.es.Estimate` (how
    ``tell`` forms ĝ, which :mod:`lrne.diagnostics` compares with backprop);
    ``None`` elsewhere.

    Every state exposes ``generation``, ``best_params`` (the strategy's
    answer: the best member seen for the GA and Metropolis, the mean for ES
    and online ES) and ``best_fitness`` (the best finite fitness of any member
    seen); the bookkeeping is :func:`tracked`.
    """

    init: Callable[..., Any]
    ask: Callable[[jax.Array, Any], tuple[Population, Any]]
    tell: Callable[[jax.Array, Any, Population, jax.Array], tuple[Any, Metrics]]
    evaluate: Evaluator = evaluate_with_task
    mutate: Callable[[jax.Array, Any, PyTree, jax.Array], PyTree] | None = None
    estimate: Any = None


class Ancestry(NamedTuple):
    """Where each kept member of a generation comes from (GA elites, Metropolis chains).

    Set by ``tell``; read by :mod:`lrne.lineage` to follow a member back to the
    initial params. Leading axis: the kept members.

    Attributes:
        parent: (n,) each member's parent among the previous generation's kept members.
        mutation: (n,) the index of this generation's mutation it carries on top of
            its parent (:attr:`Strategy.mutate`'s ``index``), or -1 for none.
        best: () the kept member holding this generation's fittest member.
    """

    parent: jax.Array
    mutation: jax.Array
    best: jax.Array


def no_ancestry(num_kept: int) -> Ancestry:
    """Every member its own parent, unmutated: the ancestry of initial members."""
    return Ancestry(
        jnp.arange(num_kept, dtype=jnp.int32),
        jnp.full((num_kept,), -1, jnp.int32),
        jnp.array(0, jnp.int32),
    )


def typed(params: PyTree) -> PyTree:
    """Params as arrays of explicit dtype: weak-typed inputs would retrace a step once."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.result_type(x)), params)


def check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ArgumentError(name, f"{name} must be an int >= {low}, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ArgumentError(name, f"{name} must be a finite number > 0, got {value!r}")


Schedule = Callable[[jax.Array], jax.typing.ArrayLike]
"""A value as a function of the generation counter (an optax schedule)."""

ScalarOrSchedule = float | Schedule


def check_scalar_or_schedule(name: str, value: Any) -> None:
    """A finite number > 0, or a callable of the generation (an optax schedule)."""
    if not callable(value):
        check_positive(name, value)


def at_generation(value: ScalarOrSchedule, generation: jax.Array) -> jax.typing.ArrayLike:
    """A constant, or a schedule's value at ``generation`` (like evosax's ``std_schedule``)."""
    return value(generation) if callable(value) else value


def check_optimizer(optimizer: Any) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ArgumentError(
            "optimizer", f"optimizer must be an optax GradientTransformation, got {optimizer!r}"
        )


def check_fitness(fitness: jax.Array, population_size: int) -> None:
    if fitness.shape != (population_size,):
        raise ValueError(f"fitness must have shape ({population_size},), got {fitness.shape}")


def nth_member(state: Any, population: Population, i: jax.Array) -> PyTree:
    """Member i's whole params, where the members are whole params (GA, Metropolis)."""
    del state
    return jax.tree.map(lambda x: x[i], population.members)


def tracked(
    tell: Callable[[jax.Array, Any, Population, jax.Array], tuple[Any, Metrics]],
    population_size: int,
    member: Callable[[Any, Population, jax.Array], PyTree] | None = None,
) -> Callable[[jax.Array, Any, Population, jax.Array], tuple[Any, Metrics]]:
    """An algorithm's own ``tell`` inside the bookkeeping every strategy shares.

    The one path every strategy's ``tell`` goes through (the template ``tell``
    of evosax's ``algorithms/base.py``, as a function): the fitness shape is
    checked, the algorithm's ``tell`` runs, then the state's ``best_fitness``
    (and, given ``member(state, population, i)`` -> member i's params,
    ``best_member``) are updated from the raw fitness
    (:func:`lrne.fitness.update_best`: non-finite never wins), ``generation``
    advances by one, and ``num_nonfinite`` joins the metrics. The algorithm's
    own ``tell`` sees the state as it was asked and leaves those fields alone.
    """

    def tracked_tell(
        key: jax.Array, state: Any, population: Population, fitness: jax.Array
    ) -> tuple[Any, Metrics]:
        check_fitness(fitness, population_size)
        new, metrics = tell(key, state, population, fitness)
        if member is None:
            best = {"best_fitness": jnp.maximum(state.best_fitness, jnp.max(ranked(fitness)))}
        else:
            best_member, best_fitness = update_best(
                state.best_member,
                state.best_fitness,
                fitness,
                lambda i: member(state, population, i),
            )
            best = {"best_member": best_member, "best_fitness": best_fitness}
        new = new._replace(generation=state.generation + 1, **best)
        return new, {**metrics, "num_nonfinite": num_nonfinite(fitness)}

    return tracked_tell


def check_dense_noise(dense_noise: Any) -> frozenset[str]:
    """``dense_noise`` as a frozenset of param names or paths."""
    if isinstance(dense_noise, str) or not all(isinstance(n, str) for n in dense_noise):
        raise ArgumentError(
            "dense_noise",
            "dense_noise must be a collection of param names or paths "
            f"(e.g. ('pos_embedding',)), got {dense_noise!r}",
        )
    return frozenset(dense_noise)
