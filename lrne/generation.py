"""One generation as a pure function: ask, evaluate, tell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from lrne.strategies.base import Metrics, Strategy
from lrne.strategies.online import OnlineStrategy

PyTree = Any


class Task(Protocol):
    """Anything that scores a population: ``evaluate(key, population)``."""

    def evaluate(self, key: jax.Array, population: PyTree) -> tuple[jax.Array, Metrics]: ...


def fitness_stats(fitness: jax.Array) -> Metrics:
    """Mean and max over the finite entries; NaN/inf never reach a mean."""
    finite = jnp.isfinite(fitness)
    count = jnp.maximum(jnp.sum(finite), 1)
    return {
        "fitness_mean": jnp.sum(jnp.where(finite, fitness, 0.0)) / count,
        "fitness_max": jnp.max(jnp.where(finite, fitness, -jnp.inf)),
    }


def generation_step(
    strategy: Strategy | OnlineStrategy, task: Task
) -> Callable[[PyTree, jax.Array], tuple[PyTree, Metrics]]:
    """A pure ``(state, key) -> (state, metrics)`` for ``jax.jit`` and ``lax.scan``.

    For a :class:`Strategy`: ask, evaluate, tell. Metrics: ``fitness_mean``,
    ``fitness_max``, ``best_fitness``, the task's metrics (``env_steps`` for RL
    tasks) and the strategy's.

    For an :class:`~lrne.strategies.online.OnlineStrategy` (NRES, PES, TES,
    FullES): unroll every particle one truncation window of the task and update
    once; the metrics are the strategy's (``fitness_mean`` is the mean per-step
    fitness of the window).

    Example:
        >>> step = jax.jit(lrne.generation_step(strategy, task))
        >>> state, metrics = step(state, key)
        >>> state, history = jax.lax.scan(generation_step(strategy, task), state, keys)
    """

    if isinstance(strategy, OnlineStrategy):
        return lambda state, key: strategy.step(task, state, key)

    def step(state: PyTree, key: jax.Array) -> tuple[PyTree, Metrics]:
        key_ask, key_eval, key_tell = jax.random.split(key, 3)
        population, state = strategy.ask(key_ask, state)
        fitness, task_metrics = task.evaluate(key_eval, population)
        state, strategy_metrics = strategy.tell(key_tell, state, population, fitness)
        return state, {
            **fitness_stats(fitness),
            **task_metrics,
            **strategy_metrics,
            "best_fitness": state.best_fitness,
        }

    return step
