"""One generation as a pure function: ask, evaluate, tell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lrne.fitness import finite_mean, ranked
from lrne.genome import Metrics
from lrne.strategies.base import Strategy


def fitness_stats(fitness: jax.Array) -> Metrics:
    """Mean and max over the finite entries; NaN/inf never reach a mean."""
    return {"fitness_mean": finite_mean(fitness), "fitness_max": jnp.max(ranked(fitness))}


class RunKeys(NamedTuple):
    """The keys :func:`lrne.run` splits its ``key`` into (:func:`split_key`)."""

    params: jax.Array
    """Draws the initial params (``task.init_params``)."""
    init: jax.Array
    """Initializes the strategy's state (``strategy.init``)."""
    generations: jax.Array
    """Generation ``g`` uses ``fold_in(generations, g)``."""


def split_key(key: jax.Array) -> RunKeys:
    """The keys a run of ``key`` uses (:func:`lrne.run`, and the template of its checkpoints)."""
    return RunKeys(*jax.random.split(key, 3))


def step_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The (ask, evaluate, tell) keys of a generation's ``key``."""
    key_ask, key_eval, key_tell = jax.random.split(key, 3)
    return key_ask, key_eval, key_tell


def isolated(f: Callable[..., Any], key: jax.Array, state: Any, *args: Any) -> Any:
    """``f(key, state, *args)``, compiled as a computation of its own (a ``lax.cond`` branch).

    XLA fuses what surrounds a function into it and contracts ``a·b + c`` into
    fused multiply-adds wherever one fusion holds both, so the same ``tell``
    can round differently in two programs. Inside a branch nothing from outside
    is fused, so ``ask`` and ``tell`` round alike in a generation step and in a
    replay of them from recorded fitness (:func:`lrne.lineage.replay`), and a
    population is drawn once for both evaluation and ``tell``. The other branch
    is never taken and only makes zeros of ``f``'s output types, so ``f`` is
    compiled once. Under ``vmap`` (a step mapped over seeds) ``f`` is mapped as
    it is, without the cond (a mapped cond would run both branches and select):
    the isolation is then gone.
    """

    def never_taken(*operands: Any) -> Any:
        # A second copy of f as this branch doubled the compile time of ask and tell.
        shapes = jax.eval_shape(f, *operands)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def branch(*operands: Any) -> Any:
        # Always true (a generation counts up from 0), but not known to the compiler.
        return jax.lax.cond(operands[1].generation >= 0, f, never_taken, *operands)

    unmapped = jax.custom_batching.custom_vmap(branch)

    @unmapped.def_vmap
    def mapped(axis_size: int, in_batched: list, *operands: Any) -> tuple[Any, Any]:
        # Mapped (over seeds), a cond would become a select of f's outputs and the
        # zeros: f alone, mapped, does no more work.
        in_axes = jax.tree.map(lambda batched: 0 if batched else None, tuple(in_batched))
        out = jax.vmap(f, in_axes=in_axes, axis_size=axis_size)(*operands)
        return out, jax.tree.map(lambda _: True, out)

    isolated_f = jax.custom_jvp(unmapped)
    # Differentiated, it is the cond itself (custom_vmap alone does not linearize).
    isolated_f.defjvp(lambda primals, tangents: jax.jvp(branch, primals, tangents))

    return isolated_f(key, state, *args)


def generation_step(
    strategy: Strategy, task: Any
) -> Callable[[Any, jax.Array], tuple[Any, Metrics]]:
    """A pure ``(state, key) -> (state, metrics)`` for ``jax.jit`` and ``lax.scan``.

    Ask, evaluate (the strategy's ``evaluate`` hook: ``task.evaluate`` for
    offline strategies, one truncation window of the task for online ES),
    tell. Metrics: ``fitness_mean``, ``fitness_max``, ``best_fitness``, the
    task's metrics (``env_steps`` for RL tasks) and the strategy's (which may
    refine ``fitness_mean``: online ES report the mean per-step fitness).

    Example:
        >>> import jax, jax.numpy as jnp, lrne
        >>> task = lrne.tasks.Function(lambda x: -jnp.sum(x**2), jnp.ones(3))
        >>> strategy = lrne.ga(population_size=16, num_elites=4, sigma=0.5)
        >>> state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(0)))
        >>> step = jax.jit(lrne.generation_step(strategy, task))
        >>> state, metrics = step(state, jax.random.key(1))
        >>> "fitness_mean" in metrics and "best_fitness" in metrics
        True
        >>> keys = jax.random.split(jax.random.key(2), 10)
        >>> state, history = jax.lax.scan(step, state, keys)  # 10 generations, one program
        >>> history["best_fitness"].shape
        (10,)
    """

    def step(state: Any, key: jax.Array) -> tuple[Any, Metrics]:
        key_ask, key_eval, key_tell = step_keys(key)
        population, state = isolated(strategy.ask, key_ask, state)
        fitness, task_metrics, state = strategy.evaluate(key_eval, state, population, task)
        state, strategy_metrics = isolated(strategy.tell, key_tell, state, population, fitness)
        return state, {
            **fitness_stats(fitness),
            **task_metrics,
            **strategy_metrics,
            "best_fitness": state.best_fitness,
        }

    return step
