"""Fitness bookkeeping, once: ranking non-finite values, finite means, shaping, best-so-far.

Fitness is **maximized** everywhere in lrne. A failed evaluation (NaN, ±inf)
ranks last: it never becomes an elite, a best member, or part of a mean or an
update. Everything here is a pure function of arrays, below both
:mod:`lrne.strategies` and :mod:`lrne.tasks`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from lrne.genome import PyTree


def ranked(fitness: jax.Array) -> jax.Array:
    """Fitness with NaN and ±inf replaced by −inf: they rank last everywhere."""
    return jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf)


def num_nonfinite(fitness: jax.Array) -> jax.Array:
    """How many entries are NaN or ±inf (a metric every strategy reports)."""
    return jnp.sum(~jnp.isfinite(fitness))


def finite_mean(values: jax.Array) -> jax.Array:
    """Mean over the finite entries (0 when there are none)."""
    finite = jnp.isfinite(values)
    return jnp.sum(jnp.where(finite, values, 0.0)) / jnp.maximum(jnp.sum(finite), 1)


def no_best() -> jax.Array:
    """The best fitness before anything was scored: −inf (float32)."""
    return jnp.array(-jnp.inf, jnp.float32)


def update_best(
    best_member: PyTree,
    best_fitness: jax.Array,
    fitness: jax.Array,
    member: Callable[[jax.Array], PyTree],
) -> tuple[PyTree, jax.Array]:
    """Best-so-far tracking: ``(best_member, best_fitness)`` after seeing ``fitness``.

    ``member(i)`` gives member i's params; it is called once, on the fittest
    finite member. Non-finite fitness never becomes the best.
    """
    scores = ranked(fitness)
    best = jnp.argmax(scores)
    improved = scores[best] > best_fitness
    candidate = member(best)
    params = jax.tree.map(lambda new, old: jnp.where(improved, new, old), candidate, best_member)
    return params, jnp.maximum(best_fitness, scores[best])


def centered_rank(fitness: jax.Array) -> jax.Array:
    """Ranks scaled to [-0.5, 0.5] (Salimans et al. 2017); ties share their mean rank.

    Averaging tied ranks makes equal fitness give equal weights, so antithetic
    pairs cancel exactly on a constant fitness. NaN/inf rank lowest.
    """
    f = ranked(fitness)
    ordered = jnp.sort(f)
    below = jnp.searchsorted(ordered, f, side="left")
    through = jnp.searchsorted(ordered, f, side="right")
    rank = (below + through - 1) / 2.0
    return rank / max(fitness.shape[0] - 1, 1) - 0.5


def z_score(fitness: jax.Array) -> jax.Array:
    """(f - mean) / std over the finite entries; non-finite get the lowest score."""
    finite = jnp.isfinite(fitness)
    count = jnp.maximum(jnp.sum(finite), 1)
    mean = jnp.sum(jnp.where(finite, fitness, 0.0)) / count
    var = jnp.sum(jnp.where(finite, (fitness - mean) ** 2, 0.0)) / count
    z = jnp.where(finite, fitness - mean, 0.0) / jnp.sqrt(var + 1e-12)
    lowest = jnp.min(jnp.where(finite, z, jnp.inf))
    return jnp.where(finite, z, jnp.minimum(lowest, 0.0))
