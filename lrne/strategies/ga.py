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
from lrne.perturb import gaussian_noise, member_leaf_keys
from lrne.strategies.base import (
    Ancestry,
    ScalarOrSchedule,
    Strategy,
    at_generation,
    check_int,
    check_scalar_or_schedule,
    no_ancestry,
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
    (:attr:`best_params`). ``parents`` (num_children,) are the elites the last
    ``ask`` cloned; ``ancestry`` says where each elite came from
    (:class:`~lrne.strategies.base.Ancestry`).
    """

    elites: PyTree
    elite_fitness: jax.Array
    mutation_std: PyTree
    best_member: PyTree
    best_fitness: jax.Array
    generation: jax.Array
    parents: jax.Array
    ancestry: Ancestry
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
            parents=jnp.zeros((num_children,), jnp.int32),
            ancestry=no_ancestry(num_elites),
            lineage=jnp.full((num_elites,), -1, jnp.int32) if static else None,
            population_lineage=jnp.full((population_size,), -1, jnp.int32) if static else None,
            mask_key=key if static else None,
        )

    def dynamic_mask_key(key: jax.Array, child: jax.Array) -> jax.Array:
        """Child ``child``'s subspace-mask key under dynamic masks, from the ask key."""
        return jax.random.fold_in(jax.random.fold_in(key, 1), child)

    def mask_keys(key: jax.Array, state: GAState, parents: jax.Array) -> tuple[jax.Array, GAState]:
        """Each child's subspace-mask key (``key``: the ask key): by lineage (static masks)
        or by child index (:func:`dynamic_mask_key`)."""
        if not static:
            return jax.vmap(dynamic_mask_key, (None, 0))(key, jnp.arange(num_children)), state
        lineage = lineage_ids(state.lineage[parents], state.generation, population_size, num_elites)
        state = state._replace(population_lineage=jnp.concatenate([state.lineage, lineage]))
        return jax.vmap(jax.random.fold_in, (None, 0))(state.mask_key, lineage), state

    def mutated(
        key: jax.Array, state: GAState, params: PyTree, child: jax.Array, mask_key: jax.Array
    ) -> PyTree:
        """Child ``child``'s mutation of one member's ``params``; its noise is keyed by
        (generation key, leaf, child), so one child is drawn alone, bit for bit."""
        frozen = frozen_mask(state.mutation_std, freeze)
        factor = factor_mask(state.mutation_std)
        leaves, treedef = jax.tree.flatten(params)
        keys = member_leaf_keys(jax.random.split(key)[1], len(leaves), child)
        subspaces = [None] * len(leaves)
        if density < 1:
            subspaces = jax.tree.leaves(subspace_mask(mask_key, params, density))
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
            if not is_frozen:
                scale = (jnp.sqrt(sigma_now) if is_factor else sigma_now) * std
                noise = gaussian_noise(k, leaf.shape, leaf.dtype, scale)
                if subspace is not None:
                    noise = jnp.where(subspace, noise, 0.0)
                leaf = leaf + noise
            children.append(leaf)
        return jax.tree.unflatten(treedef, children)

    def mutate(key: jax.Array, state: GAState, params: PyTree, child: jax.Array) -> PyTree:
        return mutated(key, state, params, child, dynamic_mask_key(key, child))

    def ask(key: jax.Array, state: GAState) -> tuple[Population, GAState]:
        parents = jax.random.randint(jax.random.split(key)[0], (num_children,), 0, num_elites)
        mask_key, state = mask_keys(key, state, parents)
        clones = jax.tree.map(lambda x: x[parents], state.elites)
        child = jnp.arange(num_children)
        children = jax.vmap(mutated, (None, None, 0, 0, 0))(key, state, clones, child, mask_key)
        members = jax.tree.map(
            lambda elite, young: jnp.concatenate([elite, young]), state.elites, children
        )
        return Population(shared={}, members=members), state._replace(parents=parents)

    def tell(
        key: jax.Array, state: GAState, population: Population, fitness: jax.Array
    ) -> tuple[GAState, Metrics]:
        del key
        scores = ranked(fitness)
        # Stable sort: on ties the lower slot wins, so standing elites are kept.
        top = jnp.argsort(-scores, stable=True)[:num_elites]
        born = top >= num_elites  # a child, not a standing elite
        ancestry = Ancestry(
            parent=jnp.where(born, state.parents[top - num_elites], top),
            mutation=jnp.where(born, top - num_elites, -1),
            best=jnp.array(0, jnp.int32),  # top[0] is the fittest member
        )
        state = state._replace(
            ancestry=ancestry,
            elites=jax.tree.map(lambda x: x[top], population.members),
            elite_fitness=scores[top],
            lineage=None if state.lineage is None else state.population_lineage[top],
        )
        return state, {"elite_fitness_mean": finite_mean(state.elite_fitness)}

    return Strategy(
        init,
        ask,
        tracked(tell, population_size, nth_member),
        # Static masks key a child's subspace by its lineage id: replayed from fitness.
        mutate=None if static else mutate,
    )
