"""Truncation-selection genetic algorithm with elitism.

Such et al. 2017, *Deep Neuroevolution: Genetic Algorithms Are a Competitive
Alternative for Training Deep Neural Networks* (arXiv 1712.06567); on factorized
genomes, Garbus & Pollack 2025 (arXiv 2504.03037).

Each generation the ``num_elites`` fittest members survive unmutated and are
re-evaluated in the next generation; every other slot clones a uniformly chosen
elite and adds Gaussian noise to every mutable tensor. The noise std is
``sigma × init_std`` of the tensor (:func:`lrne.strategies.mutation.init_std`),
and ``sqrt(sigma) × init_std`` on each factor A and B of a factorized weight,
as in Garbus & Pollack 2025.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lrne.errors import ArgumentError
from lrne.fitness import finite_mean, no_best, ranked
from lrne.genome import Metrics, Population, PyTree
from lrne.perturb import gaussian_noise
from lrne.strategies.base import (
    ScalarOrSchedule,
    Strategy,
    at_generation,
    check_int,
    check_scalar_or_schedule,
    nth_member,
    tracked,
    typed,
)
from lrne.strategies.mutation import factor_mask, frozen_mask, init_std
from lrne.strategies.subspace import check_subspace, lineage_ids, subspace_mask


class GAState(NamedTuple):
    """GA state. Leaves of ``elites`` carry a leading axis of size num_elites.

    With static subspace masks, ``lineage`` (num_elites,) and
    ``population_lineage`` (population_size,) hold lineage ids (−1: a root,
    unmutated) and ``mask_key`` the key masks are derived from; otherwise None.
    ``best_member`` is the fittest member seen, the GA's answer
    (:attr:`best_params`).
    """

    elites: PyTree
    elite_fitness: jax.Array
    mutation_std: PyTree
    best_member: PyTree
    best_fitness: jax.Array
    generation: jax.Array
    lineage: jax.Array | None = None
    population_lineage: jax.Array | None = None
    mask_key: jax.Array | None = None

    @property
    def best_params(self) -> PyTree:
        """The GA's answer: the fittest member seen."""
        return self.best_member


# Garbus & Pollack evolve everything but the LayerNorms (lrne.nn.Transformer's).
DEFAULT_FREEZE = ("LayerNorm",)


def ga(
    population_size: int,
    num_elites: int,
    sigma: ScalarOrSchedule,
    freeze: Sequence[str] = DEFAULT_FREEZE,
    density: float = 1.0,
    mask: str = "dynamic",
) -> Strategy:
    """Truncation GA with elitism.

    Args:
        population_size: members per generation, > num_elites.
        num_elites: members kept unmutated, 1 <= num_elites < population_size.
        sigma: mutation strength relative to each tensor's init std
            (:func:`lrne.strategies.mutation.init_std`), > 0, or an optax
            schedule of the generation.
        freeze: regexes; leaves whose path (e.g. ``'params/LayerNorm_0/scale'``)
            matches one are never mutated. The default keeps LayerNorms fixed,
            as Garbus & Pollack do; ``()`` mutates everything.
        density: fraction of parameter entries a child mutates, in (0, 1];
            below 1, subspace mutations (:mod:`lrne.strategies.subspace`).
        mask: ``"dynamic"`` (fresh subspace every generation) or ``"static"``
            (a child keeps its lineage's subspace).

    Returns:
        A :class:`~lrne.strategies.base.Strategy` with :class:`GAState`.
    """
    check_int("population_size", population_size, 2)
    check_int("num_elites", num_elites, 1)
    if num_elites >= population_size:
        raise ArgumentError(
            "num_elites",
            f"num_elites must be < population_size ({population_size}), got {num_elites}",
        )
    check_scalar_or_schedule("sigma", sigma)
    check_subspace(density, mask)
    freeze = tuple(freeze)
    num_children = population_size - num_elites
    static = density < 1 and mask == "static"

    def init(key: jax.Array, params: PyTree, task: Any = None) -> GAState:
        del task
        params = typed(params)
        elites = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_elites, *x.shape)), params)
        return GAState(
            elites=elites,
            elite_fitness=jnp.full((num_elites,), -jnp.inf, jnp.float32),
            mutation_std=init_std(params),
            best_member=params,
            best_fitness=no_best(),
            generation=jnp.array(0, jnp.int32),
            lineage=jnp.full((num_elites,), -1, jnp.int32) if static else None,
            population_lineage=jnp.full((population_size,), -1, jnp.int32) if static else None,
            mask_key=key if static else None,
        )

    def masks(key: jax.Array, state: GAState, parents: jax.Array) -> tuple[list, GAState]:
        """Per-leaf subspace masks of the children (leading axis num_children)."""
        template = jax.tree.map(lambda x: x[0], state.elites)
        if static:
            lineage = lineage_ids(
                state.lineage[parents], state.generation, population_size, num_elites
            )
            keys = jax.vmap(jax.random.fold_in, (None, 0))(state.mask_key, lineage)
            state = state._replace(population_lineage=jnp.concatenate([state.lineage, lineage]))
        else:
            keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_children))
        drawn = jax.vmap(lambda k: subspace_mask(k, template, density))(keys)
        return jax.tree.leaves(drawn), state

    def ask(key: jax.Array, state: GAState) -> tuple[Population, GAState]:
        key_parent, key_noise = jax.random.split(key)
        parents = jax.random.randint(key_parent, (num_children,), 0, num_elites)
        frozen = frozen_mask(state.mutation_std, freeze)
        factor = factor_mask(state.mutation_std)
        leaves, treedef = jax.tree.flatten(state.elites)
        keys = jax.random.split(key_noise, len(leaves))
        subspaces = [None] * len(leaves)
        if density < 1:
            subspaces, state = masks(jax.random.fold_in(key, 1), state, parents)
        sigma_now = jnp.asarray(at_generation(sigma, state.generation), jnp.float32)
        children = []
        for leaf, k, std, is_frozen, is_factor, subspace in zip(
            leaves,
            keys,
            jax.tree.leaves(state.mutation_std),
            jax.tree.leaves(frozen),
            jax.tree.leaves(factor),
            subspaces,
            strict=True,
        ):
            child = leaf[parents]
            if not is_frozen:
                scale = (jnp.sqrt(sigma_now) if is_factor else sigma_now) * std
                noise = gaussian_noise(k, child.shape, child.dtype, scale)
                if subspace is not None:
                    noise = jnp.where(subspace, noise, 0.0)
                child = child + noise
            children.append(jnp.concatenate([leaf, child]))
        members = jax.tree.unflatten(treedef, children)
        return Population(shared={}, members=members), state

    def tell(
        key: jax.Array, state: GAState, population: Population, fitness: jax.Array
    ) -> tuple[GAState, Metrics]:
        del key
        scores = ranked(fitness)
        # Stable sort: on ties the lower slot wins, so standing elites are kept.
        top = jnp.argsort(-scores, stable=True)[:num_elites]
        state = state._replace(
            elites=jax.tree.map(lambda x: x[top], population.members),
            elite_fitness=scores[top],
            lineage=None if state.lineage is None else state.population_lineage[top],
        )
        return state, {"elite_fitness_mean": finite_mean(state.elite_fitness)}

    return Strategy(init, ask, tracked(tell, population_size, nth_member))
