"""Fitness shaping: raw fitness (P,) -> weights (P,); non-finite fitness ranks last."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lrne.strategies.base import ranked


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
