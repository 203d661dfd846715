"""Metropolis-conditioned neuroevolution: independent chains of accept/reject mutations.

Whitelam, Selin, Park, Tamblyn 2021, *Correspondence between neuroevolution
and gradient descent* (Nat. Commun. 12, 6317; arXiv 2008.06643). Each chain
proposes θ' = θ + ε with ε ~ N(0, σ²) on every parameter and accepts with
probability min(1, exp(−β·ΔU)), ΔU = U(θ') − U(θ). For small σ the mean step
is −(β·σ²/2)·∇U (gradient descent at learning rate βσ²/2, plus Gaussian noise
of variance σ² per coordinate); at β = ∞ (accept iff U does not increase) it is
−(σ/√(2π))·∇U/|∇U|, normalized gradient descent, with variance σ²/2.

lrne maximizes fitness, so U = −fitness: a proposal is accepted with
probability min(1, exp(β·(f' − f))).

The population is the chains' proposals (a params pytree with a leading chain
axis). The first generation proposes nothing: it scores the starting points,
so every later step is an exact Metropolis step from a known U(θ).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lrne.fitness import no_best, ranked
from lrne.genome import Metrics, Population, PyTree
from lrne.perturb import gaussian_noise, member_leaf_keys
from lrne.strategies import base as shared
from lrne.strategies.base import Ancestry, ScalarOrSchedule, Strategy


class MetropolisState(NamedTuple):
    """Chains' current params (leading chain axis) and their fitness (−U).

    ``best_member`` is the fittest proposal seen (one that beats every earlier
    point is always accepted), the answer (:attr:`best_params`). ``ancestry``
    marks the chains whose proposal was accepted
    (:class:`~lrne.strategies.base.Ancestry`: chain c's mutation is numbered c).
    """

    params: PyTree
    fitness: jax.Array
    best_member: PyTree
    best_fitness: jax.Array
    generation: jax.Array
    ancestry: Ancestry

    @property
    def best_params(self) -> PyTree:
        """The answer: the fittest point any chain has visited."""
        return self.best_member


def metropolis(num_chains: int, sigma: ScalarOrSchedule, beta: float) -> Strategy:
    """Conditioned stochastic mutation for ``num_chains`` independent chains.

    Args:
        num_chains: chains evolved side by side (the population size).
        sigma: std of the Gaussian mutation of every parameter (absolute), > 0,
            or an optax schedule of the generation.
        beta: inverse temperature, > 0; ``math.inf`` accepts a proposal iff
            the loss does not increase.

    Returns:
        A :class:`~lrne.strategies.base.Strategy`; ``init(key, params)`` takes
        one member's params (every chain starts there) or, with
        ``init(key, params, stacked=True)``, params with a leading chain axis.
        Metrics: ``acceptance_rate``.
    """
    shared.check_int("num_chains", num_chains, 1)
    shared.check_scalar_or_schedule("sigma", sigma)
    if not isinstance(beta, int | float) or math.isnan(beta) or beta <= 0:
        raise ValueError(f"beta must be a number > 0 (math.inf allowed), got {beta!r}")

    def init(
        key: jax.Array, params: PyTree, task: Any = None, stacked: bool = False
    ) -> MetropolisState:
        del key, task
        params = shared.typed(params)
        if not stacked:
            params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_chains, *x.shape)), params)
        first = jax.tree.leaves(params)[0].shape[0]
        if first != num_chains:
            raise ValueError(f"params: leading chain axis {first} != num_chains {num_chains}")
        best = jax.tree.map(lambda x: x[0], params)
        return MetropolisState(
            params=params,
            fitness=jnp.full((num_chains,), jnp.nan, jnp.float32),
            best_member=best,
            best_fitness=no_best(),
            generation=jnp.array(0, jnp.int32),
            ancestry=shared.no_ancestry(num_chains),
        )

    def mutate(key: jax.Array, state: MetropolisState, params: PyTree, chain: jax.Array) -> PyTree:
        """Chain ``chain``'s proposal from one point ``params``: noise keyed by
        (generation key, leaf, chain), so one chain's is drawn alone, bit for bit.
        The first generation proposes the starting point itself."""
        scored = state.generation > 0
        sigma_now = jnp.asarray(shared.at_generation(sigma, state.generation), jnp.float32)
        leaves, treedef = jax.tree.flatten(params)
        keys = member_leaf_keys(key, len(leaves), chain)
        scale = jnp.where(scored, sigma_now, 0.0)
        proposal = [
            x + gaussian_noise(k, x.shape, x.dtype, scale)
            for x, k in zip(leaves, keys, strict=True)
        ]
        return jax.tree.unflatten(treedef, proposal)

    def ask(key: jax.Array, state: MetropolisState) -> tuple[Population, MetropolisState]:
        chains = jnp.arange(num_chains)
        proposals = jax.vmap(mutate, (None, None, 0, 0))(key, state, state.params, chains)
        return Population(shared={}, members=proposals), state

    def tell(
        key: jax.Array, state: MetropolisState, population: Population, fitness: jax.Array
    ) -> tuple[MetropolisState, Metrics]:
        # NaN and ±inf rank last: such a proposal is never accepted.
        fitness = ranked(fitness)
        gain = fitness - state.fitness  # = −ΔU
        if math.isinf(beta):
            accept = gain >= 0
        else:
            uniform = jax.random.uniform(key, (num_chains,))
            accept = jnp.log(uniform) < beta * gain
        # The first generation only scores the starting points.
        accept = jnp.where(state.generation > 0, accept, True)
        params = jax.tree.map(
            lambda new, old: jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
            population.members,
            state.params,
        )
        chains = jnp.arange(num_chains, dtype=jnp.int32)
        ancestry = Ancestry(
            parent=chains,
            mutation=jnp.where(accept & (state.generation > 0), chains, -1),
            best=jnp.argmax(fitness).astype(jnp.int32),  # beats every earlier point: accepted
        )
        fitness = jnp.where(accept, fitness, state.fitness)
        state = state._replace(params=params, fitness=fitness, ancestry=ancestry)
        return state, {"acceptance_rate": jnp.mean(accept.astype(jnp.float32))}

    return Strategy(init, ask, shared.tracked(tell, num_chains, shared.nth_member), mutate=mutate)
