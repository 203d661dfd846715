"""Native lrne strategies as evosax 0.3 algorithms, through one generic adapter.

:class:`NativeDistributionAlgorithm` and :class:`NativePopulationAlgorithm`
put any lrne :class:`~lrne.strategies.base.Strategy` behind evosax's
``DistributionBasedAlgorithm`` / ``PopulationBasedAlgorithm`` API: they
inherit evosax's public ``init``/``ask``/``tell`` and fill its hooks
``_init``/``_ask``/``_tell`` from the strategy's ``init``/``ask``/``tell``, so
the result drops into code written for ``Open_ES``, ``SimpleGA`` or
``NoiseReuseES``. The named algorithms are thin definitions on top:
``LowRankES`` (``lrne.es``), ``LowRankNRES`` (``lrne.nres``) and
``FactorizedGA`` (``lrne.ga``), each constructible with only
``(population_size=..., solution=...)``.

How the two APIs meet, each in one place:

- **State.** The native state is kept whole in ``state.native``, always as it
  stands between generations (after ``init`` or ``tell``). ``ask`` stores only
  its key; ``tell`` re-runs the native ``ask`` from that key and state (a pure
  function, so it gives back exactly the population ``ask`` returned,
  perturbations and all) and then the native ``tell``. evosax's own fields are
  kept as evosax keeps them: ``best_solution``/``best_fitness`` (its archive),
  ``generation_counter``, and ``mean`` (a ravelled copy of the native
  ``state.mean["params"]``, refreshed by ``init`` and ``tell``) or
  ``population``/``fitness``.
- **Fitness sign.** evosax minimizes and lrne maximizes. The adapter takes
  evosax's fitness (a loss, lower is better) and hands ``-fitness`` to the
  native ``tell``; that negation is the only place the sign changes.
- **Failed evaluations.** NaN and ±inf losses become +inf before evosax or
  lrne sees them: they never enter evosax's archive, and lrne ranks their
  −inf fitness last, as every native strategy ranks non-finite fitness.
- **Pytrees.** ``solution`` may be any pytree; it is ravelled once, by
  evosax's ``_ravel_solution``/``_unravel_solution``. The native strategy sees
  it as the flax variables ``{"params": solution}``.

::

    es = LowRankES(population_size=64, solution=params)
    state = es.init(key, params, es.default_params)
    population, state = es.ask(key_ask, state, es.default_params)
    loss = jax.vmap(loss_fn)(population)           # lower is better, as in evosax
    state, metrics = es.tell(key_tell, population, loss, state, es.default_params)

**Memory.** evosax's ``ask`` returns every member as a dense solution, a
population × D array; the adapter forms it from the native population with
:func:`lrne.perturb.apply` per member (the plugin's boundary: the native lrne
API never forms it, e.g. ES members carry only their low-rank factors). The
adapter's state holds no population × D array for distribution-based
algorithms: ``LowRankES`` and ``LowRankNRES`` keep the native state (mean,
optimizer state, best member; NRES each particle's factors) plus evosax's
mean and archive, each of size D. ``tell`` regenerates the perturbations it
needs (the factors, or dense noise with ``noise_rank=0``) for the duration of
the call. ``FactorizedGA`` keeps the evaluated population, as every evosax
``PopulationBasedAlgorithm`` does (population × factor count for a factorized
genome), plus the native elites (num_elites × factor count).

Importing this module does not change evosax; :func:`register` adds the
classes to evosax's registries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
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
from lrne.genome import Population, PyTree
from lrne.nn.perturbed import PERTURB, member_variables
from lrne.strategies.base import Strategy, check_int
from lrne.strategies.es import es
from lrne.strategies.ga import DEFAULT_FREEZE, ga
from lrne.strategies.online import nres
from lrne.strategies.shaping import centered_rank


def _failed_last(loss: jax.Array) -> jax.Array:
    """evosax loss with NaN/±inf as +inf: last in evosax's archive and, negated, in lrne."""
    return jnp.where(jnp.isfinite(loss), loss, jnp.inf)


def _maximized(loss: jax.Array) -> jax.Array:
    """evosax fitness (minimized) as lrne fitness (maximized): the one sign flip."""
    return -loss


def _wrap(solution: PyTree) -> PyTree:
    """An evosax solution as the flax variables native strategies take."""
    return {"params": solution}


def _dense_member(shared: PyTree, member: PyTree) -> PyTree:
    """One member of a native population as a dense solution (the plugin's boundary).

    ES members carry a perturbation of the shared mean (dense or low-rank),
    which is added here; GA members are whole variables.
    """
    variables = member_variables(shared, member)
    delta = variables.get(PERTURB)
    return variables["params"] if delta is None else perturb.apply(variables["params"], delta)


@struct.dataclass
class NativeDistributionState(DistributionState):
    """evosax's distribution state plus the native state (between generations) and ask key."""

    native: Any
    ask_key: jax.Array


@struct.dataclass
class NativePopulationState(PopulationState):
    """evosax's population state plus the native state (between generations) and ask key."""

    native: Any
    ask_key: jax.Array


class _Native:
    """The generic part: evosax's hooks filled from a native lrne strategy.

    Mixed in before an evosax base class, which supplies ravelling, the
    archive and metrics.
    """

    strategy: Strategy

    def _adopt(self, strategy: Strategy, population_size: int) -> None:
        self.strategy = strategy
        # The strategy closes over its own population size; check it agrees, once, on shapes.
        asked = jax.eval_shape(
            lambda key: strategy.ask(key, strategy.init(key, _wrap(self.solution)))[0],
            jax.random.key(0),
        )
        if asked.size != population_size:
            raise ValueError(
                f"population_size must equal the strategy's population ({asked.size}), "
                f"got {population_size}"
            )

    def _asked(self, state: Any) -> tuple[Population, Any]:
        """The native population of the last ``ask`` and the native state after it."""
        return self.strategy.ask(state.ask_key, state.native)

    def _ask(self, key: jax.Array, state: Any, params: Any) -> tuple[jax.Array, Any]:
        population, _ = self.strategy.ask(key, state.native)
        solutions = jax.vmap(_dense_member, (None, 0))(population.shared, population.members)
        return jax.vmap(self._ravel_solution)(solutions), state.replace(ask_key=key)

    def _tell(
        self, key: jax.Array, population: jax.Array, fitness: jax.Array, state: Any, params: Any
    ) -> Any:
        asked, native = self._asked(state)
        native, _ = self.strategy.tell(key, native, asked, _maximized(fitness))
        return self._told(state.replace(native=native), population, fitness)

    def _told(self, state: Any, population: jax.Array, fitness: jax.Array) -> Any:
        """evosax's own fields after a tell (the category's part)."""
        raise NotImplementedError

    @partial(jax.jit, static_argnames=("self",))
    def tell(
        self, key: jax.Array, population: PyTree, fitness: jax.Array, state: Any, params: Any
    ) -> tuple[Any, dict]:
        """evosax's ``tell``, with failed evaluations (NaN/±inf) ranked last."""
        return super().tell(key, population, _failed_last(fitness), state, params)


class NativeDistributionAlgorithm(_Native, DistributionBasedAlgorithm):
    """A native lrne strategy with a mean (ES, online ES) as an evosax distribution algorithm.

    The strategy's state must keep its mean variables in ``mean`` (as
    ``lrne.es`` and the online ES do); ``state.mean`` holds them ravelled.

    Args:
        strategy: the native strategy; its population has ``population_size`` members.
        population_size: members per generation.
        solution: a template pytree of the parameters.
        metrics_fn: evosax metrics function.
    """

    def __init__(
        self,
        strategy: Strategy,
        population_size: int,
        solution: PyTree,
        metrics_fn: Callable = distribution_metrics,
    ) -> None:
        super().__init__(population_size, solution, identity_fitness_shaping_fn, metrics_fn)
        self._adopt(strategy, population_size)

    @property
    def _default_params(self) -> DistributionParams:
        return DistributionParams()

    def _start(self, key: jax.Array, mean: PyTree) -> NativeDistributionState:
        native = self.strategy.init(key, _wrap(mean))
        return NativeDistributionState(
            mean=self._ravel_solution(native.mean["params"]),
            native=native,
            ask_key=key,
            best_solution=jnp.full((self.num_dims,), jnp.nan),
            best_fitness=jnp.inf,
            generation_counter=0,
        )

    def _init(self, key: jax.Array, params: DistributionParams) -> NativeDistributionState:
        return self._start(key, self.solution)

    @partial(jax.jit, static_argnames=("self",))
    def init(
        self, key: jax.Array, mean: PyTree, params: DistributionParams
    ) -> NativeDistributionState:
        """The state at ``mean`` (a pytree shaped like ``solution``)."""
        return self._start(key, mean)

    def _told(
        self, state: NativeDistributionState, population: jax.Array, fitness: jax.Array
    ) -> NativeDistributionState:
        return state.replace(mean=self._ravel_solution(state.native.mean["params"]))

    def get_best_solution(self, state: NativeDistributionState) -> PyTree:
        """The best member evaluated so far (evosax's archive), unravelled."""
        return self._unravel_solution(state.best_solution)


class NativePopulationAlgorithm(_Native, PopulationBasedAlgorithm):
    """A native lrne strategy of whole members (GA) as an evosax population algorithm.

    ``init`` takes an evaluated initial population, as every evosax
    population-based algorithm does: the native state starts at ``solution``
    and is told that population, so its survivors come from it.

    Args:
        strategy: the native strategy; its population has ``population_size`` members.
        population_size: members per generation.
        solution: a template pytree of the parameters (the GA reads its
            mutation scales off it).
        metrics_fn: evosax metrics function.
    """

    def __init__(
        self,
        strategy: Strategy,
        population_size: int,
        solution: PyTree,
        metrics_fn: Callable = population_metrics,
    ) -> None:
        super().__init__(population_size, solution, identity_fitness_shaping_fn, metrics_fn)
        self._adopt(strategy, population_size)

    @property
    def _default_params(self) -> PopulationParams:
        return PopulationParams()

    def _init(self, key: jax.Array, params: PopulationParams) -> NativePopulationState:
        return NativePopulationState(
            population=jnp.full((self.population_size, self.num_dims), jnp.nan),
            fitness=jnp.full((self.population_size,), jnp.inf),
            native=self.strategy.init(key, _wrap(self.solution)),
            ask_key=key,
            best_solution=jnp.full((self.num_dims,), jnp.nan),
            best_fitness=jnp.inf,
            generation_counter=0,
        )

    @partial(jax.jit, static_argnames=("self",))
    def init(
        self, key: jax.Array, population: PyTree, fitness: jax.Array, params: PopulationParams
    ) -> NativePopulationState:
        """The state after an evaluated initial ``population`` (leading axis population_size)."""
        fitness = _failed_last(fitness)
        state = super().init(key, population, fitness, params)
        # Members as ravelled and unravelled: the template's leaf dtypes, whatever was passed.
        members = _wrap(jax.vmap(self._unravel_solution)(state.population))
        native, _ = self.strategy.tell(
            key, state.native, Population({}, members), _maximized(fitness)
        )
        return state.replace(native=native)

    def _told(
        self, state: NativePopulationState, population: jax.Array, fitness: jax.Array
    ) -> NativePopulationState:
        return state.replace(population=population, fitness=fitness)


class LowRankES(NativeDistributionAlgorithm):
    """OpenAI-ES with low-rank noise (``lrne.es``) behind evosax's API.

    Args:
        population_size: members per generation (even with ``antithetic``).
        solution: a template pytree of the parameters. Its weight matrices
            (2-D ``kernel``/``embedding`` leaves, as in flax params;
            :func:`lrne.genome.is_weight_matrix`) get low-rank noise, every
            other leaf (a flat vector, say) dense noise.
        sigma: perturbation std per entry.
        optimizer: optax optimizer for the mean; default ``optax.sgd(1e-3)``.
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
        self.optimizer = optimizer if optimizer is not None else optax.sgd(1e-3)
        strategy = es(
            population_size, sigma, self.optimizer, noise_rank, antithetic, fitness_shaping
        )
        super().__init__(strategy, population_size, solution, metrics_fn)


class FactorizedGA(NativePopulationAlgorithm):
    """Truncation GA with elitism (``lrne.ga``) behind evosax's API.

    The ``num_elites`` best members (by evosax fitness, lower is better) survive
    unmutated; every other slot clones a uniformly chosen elite and adds noise of
    std ``sigma × init std`` per tensor, ``sqrt(sigma) × init std`` on each
    factor of a factorized weight (Garbus & Pollack 2025). Init stds are read
    off ``solution`` (:func:`lrne.strategies.mutation.init_std`); a constant
    leaf with no kernel beside it (e.g. an all-zero flat vector) mutates with
    std ``sigma``.

    Args:
        population_size: members per generation.
        solution: a template pytree, e.g. the variables of an ``lrne.nn`` model.
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
        num_elites = max(1, population_size // 8) if num_elites is None else num_elites
        strategy = ga(population_size, num_elites, sigma, freeze)
        super().__init__(strategy, population_size, solution, metrics_fn)
        self.elite_ratio = num_elites / population_size
        self._num_elites = num_elites

    @property
    def num_elites(self) -> int:
        return self._num_elites


class LowRankNRES(NativeDistributionAlgorithm):
    """Step-unlocked noise-reuse ES (``lrne.nres``, Li et al. 2023) behind evosax's API.

    The population is [θ + δ_i; θ − δ_i] for N = population_size / 2 particles.
    Unlike evosax's ``NoiseReuseES``, whose workers all reset together, each
    particle has its own step counter started at a random multiple of W, so
    after ``ask`` reset exactly the members in :meth:`get_reset_mask` (both
    signs of a particle share the inner randomness), unroll W steps, and pass
    each member's **loss summed over the window** to ``tell``. Estimates from
    the first T − W steps (the burn-in) are discarded. The native state is
    built without a task (``state.native.inner`` is None): the caller unrolls.

    Args:
        population_size: 2N members, even.
        solution: a template pytree of the parameters; noise as in :class:`LowRankES`.
        sigma: perturbation std per entry.
        optimizer: optax optimizer for the mean; default ``optax.sgd(1e-3)``.
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
        check_int("population_size", population_size, 2)
        if population_size % 2:
            raise ValueError(f"population_size must be even, got {population_size}")
        self.optimizer = optimizer if optimizer is not None else optax.sgd(1e-3)
        strategy = nres(
            population_size // 2, sigma, self.optimizer, truncation_length, horizon, noise_rank
        )
        super().__init__(strategy, population_size, solution, metrics_fn)

    @partial(jax.jit, static_argnames=("self",))
    def get_reset_mask(self, state: NativeDistributionState) -> jax.Array:
        """(population_size,) bool: members whose inner state must start afresh now.

        Call it between ``ask`` and ``tell``: the particles the last ``ask``
        restarted, for both signs (re-derived from the stored ask key; under
        ``jit`` only the restart test runs, not the noise draw).
        """
        restart = self._asked(state)[1].restart
        return jnp.concatenate([restart, restart])


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


# The per-class state names of earlier versions.
LowRankESState = LowRankNRESState = NativeDistributionState
FactorizedGAState = NativePopulationState

__all__ = [
    "FactorizedGA",
    "FactorizedGAState",
    "LowRankES",
    "LowRankESState",
    "LowRankNRES",
    "LowRankNRESState",
    "NativeDistributionAlgorithm",
    "NativeDistributionState",
    "NativePopulationAlgorithm",
    "NativePopulationState",
    "register",
]
