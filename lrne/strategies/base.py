"""The strategy contract (optax style) and the bookkeeping every strategy shares.

A strategy is a NamedTuple of pure functions closing over static settings. The
shared pieces live here once: non-finite ranking, best-so-far tracking, dtype
fixing of initial params and construction-time checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from lrne.errors import ArgumentError
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

    Every state exposes ``best_params`` and ``best_fitness``: the best member
    seen and its fitness, or, where a strategy's answer is its mean (online
    ES), the mean and the best fitness seen.
    """

    init: Callable[..., Any]
    ask: Callable[[jax.Array, Any], tuple[Population, Any]]
    tell: Callable[[jax.Array, Any, Population, jax.Array], tuple[Any, Metrics]]
    evaluate: Evaluator = evaluate_with_task


def ranked(fitness: jax.Array) -> jax.Array:
    """Fitness with NaN and ±inf replaced by −inf: they rank last everywhere."""
    return jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf)


def num_nonfinite(fitness: jax.Array) -> jax.Array:
    return jnp.sum(~jnp.isfinite(fitness))


def finite_mean(values: jax.Array) -> jax.Array:
    """Mean over the finite entries (0 when there are none)."""
    finite = jnp.isfinite(values)
    return jnp.sum(jnp.where(finite, values, 0.0)) / jnp.maximum(jnp.sum(finite), 1)


def update_best(
    best_params: PyTree,
    best_fitness: jax.Array,
    fitness: jax.Array,
    member: Callable[[jax.Array], PyTree],
) -> tuple[PyTree, jax.Array]:
    """Best-so-far tracking: ``(best_params, best_fitness)`` after seeing ``fitness``.

    ``member(i)`` gives member i's params; it is called once, on the fittest
    finite member. Non-finite fitness never becomes the best.
    """
    scores = ranked(fitness)
    best = jnp.argmax(scores)
    improved = scores[best] > best_fitness
    candidate = member(best)
    params = jax.tree.map(lambda new, old: jnp.where(improved, new, old), candidate, best_params)
    return params, jnp.maximum(best_fitness, scores[best])


def typed(params: PyTree) -> PyTree:
    """Params as arrays of explicit dtype: weak-typed inputs would retrace a step once."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.result_type(x)), params)


def no_best() -> jax.Array:
    return jnp.array(-jnp.inf, jnp.float32)


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


def check_dense_noise(dense_noise: Any) -> frozenset[str]:
    """``dense_noise`` as a frozenset of param names or paths."""
    if isinstance(dense_noise, str) or not all(isinstance(n, str) for n in dense_noise):
        raise ArgumentError(
            "dense_noise",
            "dense_noise must be a collection of param names or paths "
            f"(e.g. ('pos_embedding',)), got {dense_noise!r}",
        )
    return frozenset(dense_noise)
