"""The generic adapter: any native lrne strategy behind evosax 0.3's algorithm API.

See :mod:`lrne.integrations.evosax` for how the two APIs meet (state, fitness
sign, failed evaluations, pytrees, memory).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
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
from lrne.strategies.base import Strategy


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
    _category_metrics: Callable  # evosax's metrics function of the category

    def __init__(
        self,
        strategy: Strategy,
        population_size: int,
        solution: PyTree,
        fitness_shaping_fn: Callable | None = None,
        metrics_fn: Callable | None = None,
    ) -> None:
        """The one constructor of both categories.

        Args:
            strategy: the native strategy; its population has ``population_size`` members.
            population_size: members per generation.
            solution: a template pytree of the parameters.
            fitness_shaping_fn: evosax's shaping of the loss, applied before the
                native ``tell`` (which is handed ``-shaped``); default none.
            metrics_fn: evosax metrics function; default the category's.
        """
        super().__init__(
            population_size,
            solution,
            fitness_shaping_fn or identity_fitness_shaping_fn,
            metrics_fn or self._category_metrics,
        )
        self._adopt(strategy, population_size)

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

    Args: those of the shared constructor (``strategy, population_size,
    solution, fitness_shaping_fn=None, metrics_fn=None``).
    """

    # The native generation counter at evosax's first ask (init tells nothing).
    _first_generation = 0

    _category_metrics = staticmethod(distribution_metrics)

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

    Constructed as :class:`NativeDistributionAlgorithm` is (the GA reads its
    mutation scales off ``solution``).
    """

    # The native generation counter at evosax's first ask: init tells it the initial population.
    _first_generation = 1

    _category_metrics = staticmethod(population_metrics)

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
            key, state.native, Population({}, members), _maximized(state.fitness)
        )
        return state.replace(native=native)

    def _told(
        self, state: NativePopulationState, population: jax.Array, fitness: jax.Array
    ) -> NativePopulationState:
        return state.replace(population=population, fitness=fitness)
