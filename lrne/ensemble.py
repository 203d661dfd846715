"""Ensembles of evolved members: the average of the top-k members' softmax outputs.

Whitaker & Whitley 2023 (arXiv 2302.05832): children of sparse mutations are
diverse, so averaging the predictions of the best few generalizes better than
the best one alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from lrne.perturb import Population

PyTree = Any


def top_k(fitness: jax.Array, k: int) -> jax.Array:
    """Indices of the ``k`` fittest members, best first; NaN/inf rank last."""
    ranked = jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf)
    return jnp.argsort(-ranked, stable=True)[:k]


def member_outputs(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array], population: PyTree, inputs: jax.Array
) -> jax.Array:
    """Every member's outputs on ``inputs``: (members, ...).

    ``population`` is a variables pytree with a leading member axis, or a
    :class:`~lrne.perturb.Population` (shared variables + per-member ones).
    """
    if isinstance(population, Population):
        shared, members = population
        return jax.vmap(lambda m: apply_fn({**shared, **m}, inputs))(members)
    return jax.vmap(lambda m: apply_fn(m, inputs))(population)


def ensemble_predict(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array],
    population: PyTree,
    fitness: jax.Array,
    inputs: jax.Array,
    k: int,
) -> jax.Array:
    """Class probabilities of the top-``k`` ensemble: mean of the members' softmax.

    Args:
        apply_fn: ``(variables, inputs) -> logits`` (e.g. ``model.apply``).
        population: member variables with a leading member axis, or a Population.
        fitness: (members,) fitness that ranks them, higher is better.
        inputs: a batch the model accepts.
        k: ensemble size, 1 <= k <= members.
    """
    num_members = fitness.shape[0]
    if not isinstance(k, int) or not 1 <= k <= num_members:
        raise ValueError(f"k must be an int in [1, {num_members}], got {k!r}")
    top = top_k(fitness, k)
    if isinstance(population, Population):
        population = Population(
            population.shared, jax.tree.map(lambda x: x[top], population.members)
        )
    else:
        population = jax.tree.map(lambda x: x[top], population)
    logits = member_outputs(apply_fn, population, inputs)
    return jnp.mean(jax.nn.softmax(logits, axis=-1), axis=0)
