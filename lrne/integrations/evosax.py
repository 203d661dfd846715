"""lrne strategies as evosax 0.3 algorithms: ``LowRankES``, ``FactorizedGA``, ``LowRankNRES``.

Each class subclasses evosax's ``DistributionBasedAlgorithm`` or
``PopulationBasedAlgorithm``, inherits the public ``init``/``ask``/``tell``
and implements the private ``_init``/``_ask``/``_tell``/``_default_params``, so
it drops into code written for ``Open_ES``, ``SimpleGA`` or ``NoiseReuseES``.
Every class is constructible with only ``(population_size=..., solution=...)``;
lrne's options are further keyword arguments. ``solution`` may be any pytree:
its 2-D leaves get low-rank noise and other leaves dense noise (a flat vector
therefore gets dense noise).

**Fitness sign.** evosax minimizes and lrne maximizes. These classes take
evosax's fitness (lower is better) and hand ``-fitness`` to lrne's strategies;
that negation, in ``_tell``/``_ask``, is the only place the sign changes::

    es = LowRankES(population_size=64, solution=params)
    state = es.init(key, params, es.default_params)
    population, state = es.ask(key_ask, state, es.default_params)
    loss = jax.vmap(loss_fn)(population)           # lower is better, as in evosax
    state, metrics = es.tell(key_tell, population, loss, state, es.default_params)

**Memory.** evosax's ``ask`` returns the whole population as a population × D
array, so these classes must form it. Their own state holds no population × D
array beyond that (``LowRankES`` keeps the last ``ask`` key and regenerates the
noise in ``tell``; ``LowRankNRES`` keeps each particle's low-rank factors);
``FactorizedGA`` keeps the evaluated population, as every evosax
``PopulationBasedAlgorithm`` does, which with factorized genomes is population
× factor count. The native lrne API never forms the population at all.

Importing this module does not change evosax; :func:`register` adds the classes
to evosax's registries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from evosax import algorithms as evosax_algorithms
from evosax.algorithms import distribution_based, population_based
from evosax.algorithms.distribution_based.base import DistributionBasedAlgorithm
from evosax.algorithms.distribution_based.base import Params as DistributionParams
from evosax.algorithms.distribution_based.base import State as DistributionState
from evosax.algorithms.distribution_based.base import metrics_fn as distribution_metrics
from evosax.algorithms.population_based.base import Params as PopulationParams
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm
from evosax.algorithms.population_based.base import State as PopulationState
from evosax.algorithms.population_based.base import metrics_fn as population_metrics
from evosax.core.fitness_shaping import identity_fitness_shaping_fn
from flax import struct

from lrne import perturb
from lrne.strategies.es import ESState, es
from lrne.strategies.ga import DEFAULT_FREEZE, GAState, ga
from lrne.strategies.mutation import init_std
from lrne.strategies.online import check_online_settings, masked_update
from lrne.strategies.shaping import centered_rank

PyTree = Any


def _ranked(fitness: jax.Array) -> jax.Array:
    """evosax fitness (minimized) as lrne fitness (maximized): the one sign flip."""
    return -fitness


@struct.dataclass
class LowRankESState(DistributionState):
    mean: jax.Array
    opt_state: optax.OptState
    ask_key: jax.Array  # key of the last ask: tell regenerates that population's noise


@struct.dataclass
class LowRankESParams(DistributionParams):
    pass


class _DistributionMixin:
    def get_best_solution(self, state: Any) -> PyTree:
        """Return the unravelled best solution seen so far."""
        return self._unravel_solution(state.best_solution)


class LowRankES(_DistributionMixin, DistributionBasedAlgorithm):
    """OpenAI-ES with low-rank noise (``lrne.es``) behind evosax's API.

    Args:
        population_size: members per generation (even with ``antithetic``).
        solution: a template pytree of the parameters.
        sigma: perturbation std per entry.
        optimizer: optax optimizer for the mean.
        noise_rank: rank of the noise on 2-D leaves; 0 for dense noise.
        antithetic: evaluate each perturbation with both signs.
        fitness_shaping: lrne shaping of the (maximized) fitness; default
            centered ranks. evosax's own ``fitness_shaping_fn`` is the identity.
        metrics_fn: evosax metrics function.
    """

    def __init__(
        self,
        population_size: int,
        solution: PyTree,
        sigma: float = 0.05,
        optimizer: optax.GradientTransformation | None = None,
        noise_rank: int = 1,
        antithetic: bool = True,
        fitness_shaping: Callable[[jax.Array], jax.Array] = centered_rank,
        metrics_fn: Callable = distribution_metrics,
    ) -> None:
        super().__init__(population_size, solution, identity_fitness_shaping_fn, metrics_fn)
        self.optimizer = optimizer if optimizer is not None else optax.sgd(1e-3)
        self.strategy = es(
            population_size, sigma, self.optimizer, noise_rank, antithetic, fitness_shaping
        )

    @property
    def _default_params(self) -> LowRankESParams:
        return LowRankESParams()

    def _native(self, state: LowRankESState) -> ESState:
        mean = {"params": self._unravel_solution(state.mean)}
        return ESState(
            mean=mean,
            opt_state=state.opt_state,
            best_params=mean,
            best_fitness=jnp.array(-jnp.inf, jnp.float32),
            generation=jnp.asarray(state.generation_counter, jnp.int32),
        )

    def _init(self, key: jax.Array, params: LowRankESParams) -> LowRankESState:
        template = self._unravel_solution(jnp.zeros(self.num_dims))
        return LowRankESState(
            mean=jnp.full((self.num_dims,), jnp.nan),
            opt_state=self.optimizer.init(template),
            ask_key=key,
            best_solution=jnp.full((self.num_dims,), jnp.nan),
            best_fitness=jnp.inf,
            generation_counter=0,
        )

    def _ask(
        self, key: jax.Array, state: LowRankESState, params: LowRankESParams
    ) -> tuple[jax.Array, LowRankESState]:
        native = self._native(state)
        population, _ = self.strategy.ask(key, native)
        base = native.mean["params"]
        members = jax.vmap(lambda d: perturb.apply(base, d))(population.members["perturb"])
        return jax.vmap(self._ravel_solution)(members), state.replace(ask_key=key)

    def _tell(
        self,
        key: jax.Array,
        population: jax.Array,
        fitness: jax.Array,
        state: LowRankESState,
        params: LowRankESParams,
    ) -> LowRankESState:
        native = self._native(state)
        members, _ = self.strategy.ask(state.ask_key, native)  # the noise just evaluated
        new, _ = self.strategy.tell(key, native, members, _ranked(fitness))
        return state.replace(mean=self._ravel_solution(new.mean["params"]), opt_state=new.opt_state)


@struct.dataclass
class FactorizedGAState(PopulationState):
    mutation_std: PyTree


@struct.dataclass
class FactorizedGAParams(PopulationParams):
    pass


class FactorizedGA(PopulationBasedAlgorithm):
    """Truncation GA with elitism (``lrne.ga``) behind evosax's API.

    The ``num_elites`` best members (by evosax fitness, lower is better) survive
    unmutated; every other slot clones a uniformly chosen elite and adds noise of
    std ``sigma × init std`` per tensor, ``sqrt(sigma) × init std`` on each
    factor ``{"A", "B"}`` of a factorized weight (Garbus & Pollack 2025). Init
    stds are read off ``solution``; a leaf with zero spread and no kernel beside
    it (e.g. an all-zero flat vector) mutates with std ``sigma``.

    Args:
        population_size: members per generation.
        solution: a template pytree, e.g. the params of an ``lrne.nn`` model.
        num_elites: survivors per generation; default ``population_size // 8``
            (at least 1).
        sigma: mutation strength relative to each tensor's init std.
        freeze: path regexes of leaves never mutated.
        metrics_fn: evosax metrics function.
    """

    def __init__(
        self,
        population_size: int,
        solution: PyTree,
        num_elites: int | None = None,
        sigma: float = 0.1,
        freeze: Sequence[str] = DEFAULT_FREEZE,
        metrics_fn: Callable = population_metrics,
    ) -> None:
        super().__init__(population_size, solution, identity_fitness_shaping_fn, metrics_fn)
        self._num_elites = max(1, population_size // 8) if num_elites is None else num_elites
        self.strategy = ga(population_size, self._num_elites, sigma, freeze)
        self.elite_ratio = self._num_elites / population_size

    @property
    def num_elites(self) -> int:
        return self._num_elites

    @property
    def _default_params(self) -> FactorizedGAParams:
        return FactorizedGAParams()

    def _init(self, key: jax.Array, params: FactorizedGAParams) -> FactorizedGAState:
        stds = init_std(jax.tree.map(jnp.asarray, self.solution))
        return FactorizedGAState(
            population=jnp.full((self.population_size, self.num_dims), jnp.nan),
            fitness=jnp.full((self.population_size,), jnp.inf),
            mutation_std=jax.tree.map(lambda s: jnp.where(s > 0, s, 1.0), stds),
            best_solution=jnp.full((self.num_dims,), jnp.nan),
            best_fitness=jnp.inf,
            generation_counter=0,
        )

    def _ask(
        self, key: jax.Array, state: FactorizedGAState, params: FactorizedGAParams
    ) -> tuple[jax.Array, FactorizedGAState]:
        ranked = _ranked(state.fitness)
        ranked = jnp.where(jnp.isfinite(ranked), ranked, -jnp.inf)
        top = jnp.argsort(-ranked, stable=True)[: self._num_elites]
        native = GAState(
            elites=jax.vmap(self._unravel_solution)(state.population[top]),
            elite_fitness=ranked[top],
            mutation_std=state.mutation_std,
            best_params=self.solution,
            best_fitness=jnp.array(-jnp.inf, jnp.float32),
            generation=jnp.asarray(state.generation_counter, jnp.int32),
        )
        population, _ = self.strategy.ask(key, native)
        return jax.vmap(self._ravel_solution)(population), state

    def _tell(
        self,
        key: jax.Array,
        population: jax.Array,
        fitness: jax.Array,
        state: FactorizedGAState,
        params: FactorizedGAParams,
    ) -> FactorizedGAState:
        return state.replace(population=population, fitness=fitness)


@struct.dataclass
class LowRankNRESState(DistributionState):
    mean: jax.Array
    opt_state: optax.OptState
    noise: PyTree  # each particle's low-rank factors, kept for its episode
    t: jax.Array  # (N,) step in the current episode
    steps: jax.Array  # steps unrolled so far (burn-in clock)
    restarted: jax.Array  # (N,) episodes that began at the last ask


@struct.dataclass
class LowRankNRESParams(DistributionParams):
    pass


class LowRankNRES(_DistributionMixin, DistributionBasedAlgorithm):
    """Step-unlocked noise-reuse ES (``lrne.nres``, Li et al. 2023) behind evosax's API.

    The population is [θ + δ_i; θ − δ_i] for N = population_size / 2 particles.
    Unlike evosax's ``NoiseReuseES``, whose workers all reset together, each
    particle has its own step counter started at a random multiple of W, so
    after ``ask`` reset exactly the members in :meth:`get_reset_mask` (both
    signs of a particle share the inner randomness), unroll W steps, and pass
    each member's **loss summed over the window** to ``tell``. Estimates from
    the first T − W steps (the burn-in) are discarded.

    Args:
        population_size: 2N members, even.
        solution: a template pytree of the parameters.
        sigma: perturbation std per entry.
        optimizer: optax optimizer for the mean.
        truncation_length: W, inner steps per ``ask``/``tell``.
        horizon: T, the inner episode length; a multiple of W.
        noise_rank: rank of the noise on 2-D leaves; 0 for dense noise.
        metrics_fn: evosax metrics function.
    """

    def __init__(
        self,
        population_size: int,
        solution: PyTree,
        sigma: float = 0.05,
        optimizer: optax.GradientTransformation | None = None,
        truncation_length: int = 10,
        horizon: int = 100,
        noise_rank: int = 1,
        metrics_fn: Callable = distribution_metrics,
    ) -> None:
        if population_size % 2:
            raise ValueError(f"population_size must be even, got {population_size}")
        super().__init__(population_size, solution, identity_fitness_shaping_fn, metrics_fn)
        self.optimizer = optimizer if optimizer is not None else optax.sgd(1e-3)
        self.schedule = check_online_settings(
            "nres",
            population_size // 2,
            sigma,
            self.optimizer,
            truncation_length,
            horizon,
            noise_rank,
        )

    @property
    def _default_params(self) -> LowRankNRESParams:
        return LowRankNRESParams()

    def get_reset_mask(self, state: LowRankNRESState) -> jax.Array:
        """(population_size,) bool: members whose inner state must start afresh now."""
        return jnp.concatenate([state.restarted, state.restarted])

    def _init(self, key: jax.Array, params: LowRankNRESParams) -> LowRankNRESState:
        key_offset, key_noise, _ = jax.random.split(key, 3)
        template = self._unravel_solution(jnp.zeros(self.num_dims))
        return LowRankNRESState(
            mean=jnp.full((self.num_dims,), jnp.nan),
            opt_state=self.optimizer.init(template),
            noise=self.schedule.draw(key_noise, template),
            t=self.schedule.offsets(key_offset),
            steps=jnp.array(0, jnp.int32),
            restarted=jnp.zeros(self.schedule.num_particles, bool),
            best_solution=jnp.full((self.num_dims,), jnp.nan),
            best_fitness=jnp.inf,
            generation_counter=0,
        )

    def _ask(
        self, key: jax.Array, state: LowRankNRESState, params: LowRankNRESParams
    ) -> tuple[jax.Array, LowRankNRESState]:
        # The same key derivation as lrne.nres, so both follow one trajectory.
        key_noise, _, _ = jax.random.split(jax.random.fold_in(key, state.generation_counter), 3)
        base = self._unravel_solution(state.mean)
        restart, t, noise, _ = self.schedule.next_window(
            key_noise, state.t, state.noise, None, base
        )
        members = jax.vmap(lambda d: perturb.apply(base, d))(perturb.antithetic(noise))
        state = state.replace(noise=noise, t=t, restarted=restart)
        return jax.vmap(self._ravel_solution)(members), state

    def _tell(
        self,
        key: jax.Array,
        population: jax.Array,
        fitness: jax.Array,
        state: LowRankNRESState,
        params: LowRankNRESParams,
    ) -> LowRankNRESState:
        n, window = self.schedule.num_particles, self.schedule.window
        ranked = _ranked(fitness)
        gradient, count, _ = self.schedule.gradient(
            state.steps, state.noise, None, ranked[:n], ranked[n:]
        )
        base = self._unravel_solution(state.mean)
        updates, opt_state = masked_update(self.optimizer, gradient, state.opt_state, base, count)
        return state.replace(
            mean=self._ravel_solution(optax.apply_updates(base, updates)),
            opt_state=opt_state,
            t=state.t + window,
            steps=state.steps + window,
        )


PLUGINS = {
    "lrne_LowRankES": (LowRankES, "distribution"),
    "lrne_LowRankNRES": (LowRankNRES, "distribution"),
    "lrne_FactorizedGA": (FactorizedGA, "population"),
}


def register() -> dict[str, type]:
    """Add the lrne classes to evosax's algorithm registries; existing entries stay.

    Adds ``lrne_LowRankES``, ``lrne_LowRankNRES`` (distribution-based) and
    ``lrne_FactorizedGA`` (population-based) to
    ``evosax.algorithms.algorithms`` and the matching category dict. Calling it
    again is harmless; a name already taken by another class raises.
    """
    registries = {
        "distribution": distribution_based.distribution_based_algorithms,
        "population": population_based.population_based_algorithms,
    }
    added = {}
    for name, (cls, kind) in PLUGINS.items():
        for registry in (evosax_algorithms.algorithms, registries[kind]):
            if registry.get(name, cls) is not cls:
                raise ValueError(f"evosax already has a different algorithm named {name!r}")
            registry[name] = cls
        added[name] = cls
    return added


__all__ = [
    "FactorizedGA",
    "FactorizedGAState",
    "LowRankES",
    "LowRankESState",
    "LowRankNRES",
    "LowRankNRESState",
    "register",
]
