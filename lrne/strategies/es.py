"""OpenAI-style evolution strategies with dense or low-rank Gaussian noise.

Salimans, Ho, Chen, Sidor, Sutskever 2017, *Evolution Strategies as a Scalable
Alternative to Reinforcement Learning* (arXiv 1703.03864): antithetic pairs,
centered-rank fitness shaping, gradient estimate ĝ = 1/(P·σ²) Σ_i w_i·δ_i fed
to any optimizer. Low-rank perturbations δ_i = σ·U_iᵀV_i/√r applied inside the
forward pass follow EGGROLL, *Evolution Strategies at the Hyperscale* (arXiv
2511.16652).

The population is a :class:`lrne.genome.Population`: the mean variables are
shared and each member carries only its perturbation (low-rank: r·(m+n) numbers
per 2-D weight), so nothing of size population × parameters exists when
``noise_rank > 0``. The update Σ_i w_i·U_iᵀV_i is contracted over the stacked
(P·r) axis and forms only the m×n result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrne import perturb
from lrne.errors import ArgumentError
from lrne.fitness import centered_rank, no_best
from lrne.genome import Drawn, Metrics, Population, PyTree, params_of, with_params
from lrne.nn.perturbed import PERTURB
from lrne.strategies.base import (
    ScalarOrSchedule,
    Strategy,
    at_generation,
    check_dense_noise,
    check_int,
    check_optimizer,
    check_scalar_or_schedule,
    tracked,
    typed,
)
from lrne.strategies.subspace import check_subspace, subspace_mask


class ESState(NamedTuple):
    """ES state: the mean (the genome ``init`` was given, updated) and optimizer state.

    The answer of an ES is its mean: :attr:`best_params` is ``mean``. The
    luckiest perturbed member seen is kept apart, named as what it is
    (``best_member``, whose fitness is ``best_fitness``: the best finite
    fitness any member scored; the mean itself is not scored): one noisy
    evaluation of a perturbed member is biased upward and is rarely better
    than the mean.
    """

    mean: PyTree
    opt_state: optax.OptState
    best_member: PyTree
    best_fitness: jax.Array
    generation: jax.Array
    mask_key: jax.Array | None = None  # static subspace masks only

    @property
    def best_params(self) -> PyTree:
        """The mean: an ES answers with its mean, never with a perturbed member."""
        return self.mean


def es(
    population_size: int,
    sigma: ScalarOrSchedule,
    optimizer: optax.GradientTransformation,
    noise_rank: int = 0,
    antithetic: bool = True,
    fitness_shaping: Callable[[jax.Array], jax.Array] = centered_rank,
    density: float = 1.0,
    mask: str = "dynamic",
    store_noise: bool = True,
    dense_noise: tuple[str, ...] = (),
) -> Strategy:
    """OpenAI-ES over any genome: the ``params`` collection of flax variables,
    or a whole pytree (a raw array, a dict of arrays).

    Args:
        population_size: members per generation (even when ``antithetic``).
        sigma: perturbation std per parameter entry (absolute), > 0, or an
            optax schedule of the generation (evosax's ``std_schedule``).
        optimizer: an optax optimizer; it receives -ĝ (optax minimizes).
        noise_rank: 0 for dense noise on every parameter; r > 0 for rank-r
            noise on every leaf of two or more axes, applied inside the layer
            that consumes it (:mod:`lrne.nn.perturbed`), dense noise on the
            others.
        dense_noise: names or paths of params (``"pos_embedding"``,
            ``"Block_0/table"``) that get dense noise under ``noise_rank > 0``:
            weights no supported layer consumes, which are otherwise an error.
        antithetic: evaluate each perturbation with both signs.
        fitness_shaping: fitness (P,) -> weights (P,); default centered ranks.
        density: fraction of parameter entries each perturbation touches, in
            (0, 1]; below 1, subspace noise (:mod:`lrne.strategies.subspace`),
            which needs dense noise (``noise_rank=0``). The estimate is divided
            by ``density`` so it stays unbiased.
        mask: ``"dynamic"`` (fresh subspace every generation) or ``"static"``
            (draw j keeps one subspace for the whole run).
        store_noise: ``False``: the population's members carry a key and a
            sign each (:class:`lrne.genome.Drawn`), and their perturbations are
            drawn where they are used: chunk by chunk when the task is
            :class:`lrne.tasks.Chunked`, and again in ``tell``. For populations
            whose noise would not fit in memory (hundreds of thousands of
            members); the same draws, bit for bit. Needs ``density=1``.

    Returns:
        A :class:`~lrne.strategies.base.Strategy` with :class:`ESState`.
    """
    check_int("population_size", population_size, 2)
    check_int("noise_rank", noise_rank, 0)
    if antithetic and population_size % 2:
        raise ArgumentError(
            "population_size",
            f"population_size must be even with antithetic=True, got {population_size}",
        )
    check_scalar_or_schedule("sigma", sigma)
    dense_noise = check_dense_noise(dense_noise)
    check_subspace(density, mask)
    if density < 1 and noise_rank > 0:
        raise ArgumentError(
            "density",
            f"density < 1 needs dense noise: noise_rank must be 0, got {noise_rank} "
            "(a subset of entries of a low-rank δ is not low rank)",
        )
    check_optimizer(optimizer)
    if not store_noise and density < 1:
        raise ValueError("store_noise=False needs density=1 (masks are drawn up front)")
    num_draws = population_size // 2 if antithetic else population_size

    static = density < 1 and mask == "static"

    def init(key: jax.Array, params: PyTree, task: Any = None) -> ESState:
        del task
        params = typed(params)
        return ESState(
            mean=params,
            opt_state=optimizer.init(params_of(params)),
            best_member=params,
            best_fitness=no_best(),
            generation=jnp.array(0, jnp.int32),
            mask_key=key if static else None,
        )

    def ask(key: jax.Array, state: ESState) -> tuple[Population, ESState]:
        key = jax.random.fold_in(key, state.generation)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_draws))
        mean_params = params_of(state.mean)
        sigma_now = jnp.asarray(at_generation(sigma, state.generation), jnp.float32)
        if not store_noise:
            signs = jnp.ones(num_draws)
            if antithetic:
                keys, signs = jnp.concatenate([keys, keys]), jnp.concatenate([signs, -signs])
            sigmas = jnp.full(signs.shape, sigma_now)
            drawn = Drawn(keys, signs, sigmas, noise_rank, dense_noise)
            return Population(shared=state.mean, members={PERTURB: drawn}), state
        draw = lambda k: perturb.sample(k, mean_params, sigma_now, noise_rank, dense_noise)
        delta = jax.vmap(draw)(keys)
        if density < 1:
            base = state.mask_key if static else jax.random.fold_in(key, num_draws)
            mask_keys = jax.vmap(jax.random.fold_in, (None, 0))(base, jnp.arange(num_draws))
            masks = jax.vmap(lambda k: subspace_mask(k, mean_params, density))(mask_keys)
            delta = jax.tree.map(lambda d, m: jnp.where(m, d, 0.0), delta, masks)
        if antithetic:
            delta = perturb.antithetic(delta)
        return Population(shared=state.mean, members={PERTURB: delta}), state

    def ascent(state: ESState, population: Population, fitness: jax.Array) -> PyTree:
        """ĝ = 1/(P·σ²·density) Σ_i w_i·δ_i: the estimate ``tell`` steps along."""
        delta = population.members[PERTURB]
        weights = fitness_shaping(fitness)
        if antithetic:
            # Σ_j (w⁺_j − w⁻_j)·δ_j: equal fitness cancels exactly, at half the work.
            weights = weights[:num_draws] - weights[num_draws:]
            draws = jax.tree.map(lambda x: x[:num_draws], delta)
        else:
            draws = delta
        mean_params = params_of(state.mean)
        draws = perturb.draw(draws, mean_params)
        sigma_now = at_generation(sigma, state.generation)
        scale = 1.0 / (population_size * sigma_now**2 * density)
        return jax.tree.map(lambda g: scale * g, perturb.weighted_sum(weights, draws, mean_params))

    def tell(
        key: jax.Array, state: ESState, population: Population, fitness: jax.Array
    ) -> tuple[ESState, Metrics]:
        del key
        mean_params = params_of(state.mean)
        descent = jax.tree.map(jnp.negative, ascent(state, population, fitness))
        updates, opt_state = optimizer.update(descent, state.opt_state, mean_params)
        new_params = optax.apply_updates(mean_params, updates)
        state = state._replace(mean=with_params(state.mean, new_params), opt_state=opt_state)
        return state, {"update_norm": optax.tree.norm(updates)}

    def perturbed_member(state: ESState, population: Population, i: jax.Array) -> PyTree:
        """Member i's params (the mean it was drawn around, plus its δ), formed once."""
        mean_params = params_of(state.mean)
        one = jax.tree.map(lambda x: x[i][None], population.members[PERTURB])
        delta = jax.tree.map(lambda x: x[0], perturb.draw(one, mean_params))
        return with_params(state.mean, perturb.apply(mean_params, delta))

    told = tracked(tell, population_size, perturbed_member)
    return Strategy(init, ask, told, estimate=Estimate(ascent, antithetic))


class Estimate(NamedTuple):
    """How an ES forms the gradient estimate its ``tell`` steps along.

    Attributes:
        ascent: ``(state, population, fitness) -> ĝ``, a pytree like the mean's
            params: the ascent direction (fitness is maximized) ``tell`` hands,
            negated, to its optimizer, for the population ``ask`` gave at ``state``.
        antithetic: members ``P/2 + j`` are the mirrors ``−δ_j`` of members ``j``.
    """

    ascent: Callable[[Any, Population, jax.Array], PyTree]
    antithetic: bool


def estimate_of(strategy: Strategy) -> Estimate:
    """The :class:`Estimate` of a strategy :func:`es` built (``tell`` and it share one
    code path, so a diagnostic sees exactly the ĝ the update uses).

    Raises:
        lrne.errors.ArgumentError: ``strategy`` forms no ES gradient estimate (the
            GA, Metropolis, online ES).
    """
    found = getattr(strategy, "estimate", None)
    if not isinstance(found, Estimate):
        raise ArgumentError(
            "strategy",
            "strategy: gradient diagnostics need an ES built by lrne.es (dense or low-rank "
            "noise), which exposes its estimate; this strategy forms none",
        )
    return found
