"""Ensembles of evolved members: the average of the top-k members' softmax outputs.

Whitaker & Whitley 2023 (arXiv 2302.05832): children of sparse mutations are
diverse, so averaging the predictions of the best few generalizes better than
the best one alone.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from lrne.fitness import ranked
from lrne.genome import Population, PyTree
from lrne.nn.perturbed import apply, member_variables


def top_k(fitness: jax.Array, k: int) -> jax.Array:
    """Indices of the ``k`` fittest members, best first; NaN/inf rank last."""
    return jnp.argsort(-ranked(fitness), stable=True)[:k]


def member_outputs(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array], population: Population, inputs: jax.Array
) -> jax.Array:
    """Every member's ``apply_fn(variables, inputs)``: (members, ...).

    ``apply_fn`` receives a member's whole variables, perturbation included;
    build it on :func:`lrne.nn.apply` so that perturbations reach the layers.
    """
    shared, members = population
    return jax.vmap(lambda m: apply_fn(member_variables(shared, m), inputs))(members)


def ensemble_predict(
    model: nn.Module,
    population: Population,
    fitness: jax.Array,
    inputs: jax.Array,
    k: int,
) -> jax.Array:
    """Class probabilities of the top-``k`` ensemble: mean of the members' softmax.

    Args:
        model: a flax module mapping the batch ``inputs`` to logits.
        population: any strategy's population (a :class:`~lrne.genome.Population`).
        fitness: (members,) fitness that ranks them, higher is better.
        inputs: a batch the model accepts.
        k: ensemble size, 1 <= k <= members.
    """
    num_members = fitness.shape[0]
    if not isinstance(k, int) or not 1 <= k <= num_members:
        raise ValueError(f"k must be an int in [1, {num_members}], got {k!r}")
    best = population.select(top_k(fitness, k))
    logits = member_outputs(lambda v, x: apply(model, v, x), best, inputs)
    return jnp.mean(jax.nn.softmax(logits, axis=-1), axis=0)
