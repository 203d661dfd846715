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

**evosax's constructor arguments.** Each named class takes the arguments of
the evosax class it stands in for, in that class's order and with its
meaning, so an evosax script changes only the class name; lrne's own
arguments follow, keyword-only:

- ``LowRankES`` for ``Open_ES``: ``use_antithetic_sampling``, ``optimizer``,
  ``std_schedule``, ``fitness_shaping_fn``, ``metrics_fn``;
- ``FactorizedGA`` for ``SimpleGA``: ``std_schedule``, ``fitness_shaping_fn``,
  ``metrics_fn``, and ``elite_ratio`` (an attribute on ``SimpleGA``; set it
  either way);
- ``LowRankNRES`` for ``NoiseReuseES``: ``optimizer``, ``std_schedule``,
  ``fitness_shaping_fn``, ``metrics_fn``; ``default_params`` carries ``T``
  and ``K``.

- ``std_schedule`` (an optax schedule, or a float) runs on evosax's clock:
  evosax 0.3 refreshes its std after each ``tell`` from the generation counter
  before counting that generation, so the g-th ``ask`` (from 0) samples with
  ``std_schedule(max(g - 1, 0))``, and so do the adapters. lrne's ``sigma``
  (a float, or a schedule of lrne's own counter: ``sigma(g)`` at the g-th
  ``ask``) is the alternative; pass one of the two. It is an absolute std per
  entry for ``LowRankES`` and ``LowRankNRES``, as in evosax, and **relative to
  each tensor's init std for** ``FactorizedGA``, as ``lrne.ga`` defines it (see
  :class:`FactorizedGA`): the one difference of meaning.
- ``fitness_shaping_fn`` is applied as evosax applies it, by evosax's ``tell``
  to the loss before the update (the native ``tell`` then shapes nothing).
  Left out, ``LowRankES`` weights by centered ranks, ``Open_ES``'s default,
  computed by lrne; the GA and NRES, like ``SimpleGA`` and ``NoiseReuseES``,
  shape nothing. A shaping that turns a +inf loss (a failed evaluation, below)
  into NaN passes NaN on, as in evosax.
- **Defaults are lrne's registry's**, not evosax's: each class reads those
  of its registry entry (``es_lowrank``, ``ga``, ``nres``) from
  :func:`lrne.strategies.registry.defaults`, in one place; e.g. ``Open_ES``'s
  std 1.0 and ``sgd(1e-3)`` are not the defaults of ``LowRankES``.

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
  evosax's fitness (a loss, lower is better; shaped, when a
  ``fitness_shaping_fn`` is given) and hands ``-fitness`` to the native
  ``tell``; that negation is the only place the sign changes.
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
from lrne.strategies import registry
from lrne.strategies.base import Strategy, check_int, check_positive


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
        fitness_shaping_fn: evosax's shaping of the loss, applied before the
            native ``tell`` (which is handed ``-shaped``); default none.
        metrics_fn: evosax metrics function.
    """

    # The native generation counter at evosax's first ask (init tells nothing).
    _first_generation = 0

    def __init__(
        self,
        strategy: Strategy,
        population_size: int,
        solution: PyTree,
        fitness_shaping_fn: Callable = identity_fitness_shaping_fn,
        metrics_fn: Callable = distribution_metrics,
    ) -> None:
        super().__init__(population_size, solution, fitness_shaping_fn, metrics_fn)
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
        fitness_shaping_fn: evosax's shaping of the loss, applied before the
            native ``tell`` (which is handed ``-shaped``); default none.
        metrics_fn: evosax metrics function.
    """

    # The native generation counter at evosax's first ask: init tells it the initial population.
    _first_generation = 1

    def __init__(
        self,
        strategy: Strategy,
        population_size: int,
        solution: PyTree,
        fitness_shaping_fn: Callable = identity_fitness_shaping_fn,
        metrics_fn: Callable = population_metrics,
    ) -> None:
        super().__init__(population_size, solution, fitness_shaping_fn, metrics_fn)
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
            key, state.native, Population({}, members), _maximized(state.fitness)
        )
        return state.replace(native=native)

    def _told(
        self, state: NativePopulationState, population: jax.Array, fitness: jax.Array
    ) -> NativePopulationState:
        return state.replace(population=population, fitness=fitness)


# evosax's constructor arguments, each mapped onto lrne's factories in one place.


def _registry_defaults(
    name: str, population_size: int, horizon: int | None = None
) -> dict[str, Any]:
    """Registry strategy ``name``'s defaults at this size, its optimizer built.

    The one place the adapters read a default: :func:`lrne.strategies.registry.defaults`
    (with its size rules), the optimizer named there built by
    :func:`lrne.strategies.registry.optimizer`.
    """
    values = registry.defaults(name, population_size, horizon)
    if isinstance(values.get("optimizer"), str):
        values["optimizer"] = registry.optimizer(values["optimizer"], values.pop("learning_rate"))
    return values


def _one_of(evosax_name: str, evosax_value: Any, lrne_name: str, lrne_value: Any) -> Any:
    """The argument given under evosax's name or lrne's (None: neither); both is an error."""
    if evosax_value is not None and lrne_value is not None:
        raise ValueError(
            f"pass {evosax_name} (evosax's name) or {lrne_name} (lrne's), not both: "
            f"got {evosax_name}={evosax_value!r}, {lrne_name}={lrne_value!r}"
        )
    return evosax_value if evosax_value is not None else lrne_value


def _on_evosax_clock(std_schedule: Callable, first_generation: int) -> Callable:
    """evosax's ``std_schedule`` as a schedule of the native generation counter.

    evosax 0.3 sets ``std = std_schedule(0)`` in ``init`` and, in ``tell``,
    ``std = std_schedule(generation_counter)`` before counting the generation, so its
    g-th ``ask`` (g from 0) samples with ``std_schedule(max(g - 1, 0))``. The native
    counter reads ``first_generation`` at that first ``ask``.
    """

    def schedule(generation: jax.Array) -> jax.Array:
        return std_schedule(jnp.maximum(generation - first_generation - 1, 0))

    return schedule


def _sigma(
    std_schedule: Callable | float | None,
    sigma: Callable | float | None,
    first_generation: int,
    default: float,
) -> Callable | float:
    """The native ``sigma``: evosax's ``std_schedule``, lrne's ``sigma`` or the default."""
    _one_of("std_schedule", std_schedule, "sigma", sigma)
    if std_schedule is not None:
        if not callable(std_schedule):
            check_positive("std_schedule", std_schedule)
            return std_schedule
        return _on_evosax_clock(std_schedule, first_generation)
    return sigma if sigma is not None else default


def _as_evosax_schedule(sigma: Callable | float) -> Callable:
    """The ``std_schedule`` attribute evosax's classes expose (a float as a constant)."""
    return sigma if callable(sigma) else optax.constant_schedule(sigma)


def _already_shaped(fitness: jax.Array) -> jax.Array:
    """Native shaping when evosax's ``fitness_shaping_fn`` has already shaped the fitness."""
    return fitness


@struct.dataclass
class FactorizedGAParams(PopulationParams):
    """``SimpleGA``'s params: ``crossover_rate`` must stay 0 (lrne's GA does no crossover).

    Static, so a script's ``params.replace(crossover_rate=...)`` is checked when traced.
    """

    crossover_rate: float = struct.field(pytree_node=False, default=0.0)


@struct.dataclass
class LowRankNRESParams(DistributionParams):
    """``NoiseReuseES``'s params: ``T`` (horizon) and ``K`` (truncation length).

    Fixed when the algorithm is built (lrne's NRES keeps one step counter per
    particle, sized by them); static, so a different value in ``params`` is an
    error when traced, not a silent no-op.
    """

    T: int = struct.field(pytree_node=False, default=100)
    K: int = struct.field(pytree_node=False, default=10)


class LowRankES(NativeDistributionAlgorithm):
    """OpenAI-ES with low-rank noise (``lrne.es``) in place of evosax's ``Open_ES``.

    Takes ``Open_ES``'s arguments in its order and with its meaning, so an
    ``Open_ES`` script runs with only the class name changed; lrne's own
    arguments follow, keyword-only. Every default is the registry's
    (``es_lowrank``), not ``Open_ES``'s (std 1.0, ``sgd(1e-3)``).

    Args:
        population_size: members per generation (even with antithetic sampling).
        solution: a template pytree of the parameters.
        use_antithetic_sampling: evaluate each perturbation with both signs
            (members [δ; −δ]); default the registry's.
        optimizer: optax optimizer of the mean, fed the estimated loss
            gradient as ``Open_ES`` feeds it; default the registry's.
        std_schedule: perturbation std per entry (absolute), an optax schedule
            on evosax's clock: the g-th ``ask`` samples with
            ``std_schedule(max(g - 1, 0))``, as in evosax 0.3. A float is a
            constant std. Default the registry's σ.
        fitness_shaping_fn: evosax's shaping ``(population, fitness, state,
            params) -> fitness``, applied to the loss (lower is better) before
            the update, as in evosax. Default: centered ranks, ``Open_ES``'s
            default, applied by lrne (:func:`lrne.strategies.shaping.centered_rank`,
            the same weights).
        metrics_fn: evosax metrics function.
        sigma: lrne's alternative to ``std_schedule``: a float, or a schedule
            of lrne's generation counter (``lrne.es``'s ``sigma``).
        noise_rank: rank of the noise on weights (``lrne.es``'s ``noise_rank``:
            low-rank noise on the weights, dense on the other leaves); 0 for
            dense noise everywhere, as ``Open_ES`` draws it. Default the registry's.
        antithetic: lrne's name for ``use_antithetic_sampling``.
        fitness_shaping: lrne's alternative to ``fitness_shaping_fn``: a
            shaping ``(P,) -> (P,)`` of the maximized fitness (``-loss``).
    """

    def __init__(
        self,
        population_size: int,
        solution: PyTree,
        use_antithetic_sampling: bool | None = None,
        optimizer: optax.GradientTransformation | None = None,
        std_schedule: Callable | float | None = None,
        fitness_shaping_fn: Callable | None = None,
        metrics_fn: Callable = distribution_metrics,
        *,
        sigma: Callable | float | None = None,
        noise_rank: int | None = None,
        antithetic: bool | None = None,
        fitness_shaping: Callable[[jax.Array], jax.Array] | None = None,
    ) -> None:
        defaults = _registry_defaults("es_lowrank", population_size)
        antithetic = _one_of(
            "use_antithetic_sampling", use_antithetic_sampling, "antithetic", antithetic
        )
        self.use_antithetic_sampling = defaults["antithetic"] if antithetic is None else antithetic
        self.optimizer = defaults["optimizer"] if optimizer is None else optimizer
        sigma = _sigma(std_schedule, sigma, self._first_generation, defaults["sigma"])
        self.std_schedule = _as_evosax_schedule(sigma) if std_schedule is None else std_schedule
        _one_of("fitness_shaping_fn", fitness_shaping_fn, "fitness_shaping", fitness_shaping)
        if fitness_shaping_fn is not None:
            fitness_shaping = _already_shaped
        overrides = {} if fitness_shaping is None else {"fitness_shaping": fitness_shaping}
        if noise_rank is not None:
            overrides["noise_rank"] = noise_rank
        strategy = registry.make(
            "es_lowrank",
            population_size,
            sigma=sigma,
            optimizer=self.optimizer,
            antithetic=self.use_antithetic_sampling,
            **overrides,
        )
        super().__init__(
            strategy,
            population_size,
            solution,
            fitness_shaping_fn or identity_fitness_shaping_fn,
            metrics_fn,
        )


class FactorizedGA(NativePopulationAlgorithm):
    """Truncation GA with elitism (``lrne.ga``) in place of evosax's ``SimpleGA``.

    Takes ``SimpleGA``'s arguments in its order, plus ``elite_ratio``
    (``SimpleGA`` fixes it at 0.5 in its constructor; here it is an argument,
    and setting the attribute before ``init``, as ``SimpleGA`` scripts do,
    works too), so a ``SimpleGA`` script runs with only the class name
    changed; lrne's own arguments follow, keyword-only. Each generation the
    ``num_elites`` best members (lowest shaped loss) survive unmutated and
    every other slot clones a uniformly chosen elite and mutates it
    (``SimpleGA`` mutates every member and keeps no elite).

    **σ is relative to each tensor's init std**, where ``SimpleGA``'s std is
    absolute: a tensor mutates with std ``σ × its init std``, the init stds
    read off ``solution``, exactly as ``lrne.ga`` defines its ``sigma``
    (:func:`lrne.strategies.mutation.init_std` states the rule, for factors
    and constant leaves too). Whether σ comes as ``std_schedule`` or
    ``sigma``, that is its meaning. lrne has no absolute mode; to get
    ``SimpleGA``'s absolute std, pass a constant ``solution`` (e.g.
    ``jnp.zeros(D)``, as evosax scripts often do): every leaf of it has init
    std 1. A ``solution`` drawn at random (``problem.sample(key)``) scales σ
    by its spread.

    Every default is the registry's (``ga``: σ and the elite ratio), not
    ``SimpleGA``'s (std 1.0, elite ratio 0.5). ``default_params`` has ``SimpleGA``'s
    ``crossover_rate``, which must stay 0.

    Args:
        population_size: members per generation.
        solution: a template pytree, e.g. the variables of an ``lrne.nn``
            model; the init stds are read off it.
        std_schedule: σ as an optax schedule on evosax's clock (the g-th
            ``ask`` mutates with ``std_schedule(max(g - 1, 0))``, as in evosax
            0.3), relative as above; a float is a constant. Default the
            registry's σ.
        fitness_shaping_fn: evosax's shaping of the loss, applied before
            selection as in evosax; default none (``SimpleGA``'s identity).
        metrics_fn: evosax metrics function.
        elite_ratio: fraction of the population kept as elites:
            ``num_elites = max(1, int(elite_ratio × population_size))``, as
            evosax counts them; at least one slot must be left for a child.
        num_elites: lrne's alternative to ``elite_ratio``.
        sigma: lrne's alternative to ``std_schedule``: a float, or a schedule
            of lrne's generation counter (``lrne.ga``'s ``sigma``).
        freeze: path regexes of leaves never mutated (``lrne.ga``'s
            ``freeze``); default the registry's.
    """

    def __init__(
        self,
        population_size: int,
        solution: PyTree,
        std_schedule: Callable | float | None = None,
        fitness_shaping_fn: Callable | None = None,
        metrics_fn: Callable = population_metrics,
        *,
        elite_ratio: float | None = None,
        num_elites: int | None = None,
        sigma: Callable | float | None = None,
        freeze: Sequence[str] | None = None,
    ) -> None:
        defaults = _registry_defaults("ga", population_size)
        _one_of("elite_ratio", elite_ratio, "num_elites", num_elites)
        if elite_ratio is not None:
            num_elites = _elites_of_ratio(elite_ratio, population_size)
        elif num_elites is None:
            num_elites = defaults["num_elites"]
        sigma = _sigma(std_schedule, sigma, self._first_generation, defaults["sigma"])
        self.std_schedule = _as_evosax_schedule(sigma) if std_schedule is None else std_schedule
        self._settings = {"sigma": sigma} if freeze is None else {"sigma": sigma, "freeze": freeze}
        super().__init__(
            self._ga(population_size, num_elites),
            population_size,
            solution,
            fitness_shaping_fn or identity_fitness_shaping_fn,
            metrics_fn,
        )
        self._num_elites = num_elites

    def _ga(self, population_size: int, num_elites: int) -> Strategy:
        return registry.make("ga", population_size, num_elites=num_elites, **self._settings)

    @property
    def num_elites(self) -> int:
        """Members kept unmutated each generation."""
        return self._num_elites

    @property
    def elite_ratio(self) -> float:
        """``num_elites / population_size``; set it (before ``init``) as on ``SimpleGA``."""
        return self._num_elites / self.population_size

    @elite_ratio.setter
    def elite_ratio(self, value: float) -> None:
        if not hasattr(self, "_num_elites"):
            return  # evosax's base constructor sets its own default; ours follows it
        num_elites = _elites_of_ratio(value, self.population_size)
        self._adopt(self._ga(self.population_size, num_elites), self.population_size)
        self._num_elites = num_elites

    @property
    def _default_params(self) -> FactorizedGAParams:
        return FactorizedGAParams()

    def _ask(self, key: jax.Array, state: Any, params: Any) -> tuple[jax.Array, Any]:
        rate = getattr(params, "crossover_rate", 0.0)
        if isinstance(rate, int | float) and rate != 0.0:
            raise ValueError(f"crossover_rate must be 0: lrne's GA does no crossover, got {rate!r}")
        return super()._ask(key, state, params)


def _elites_of_ratio(elite_ratio: float, population_size: int) -> int:
    """evosax's elite count, ``max(1, int(elite_ratio × population_size))``, checked."""
    num_elites = max(1, int(elite_ratio * population_size)) if elite_ratio > 0 else 0
    if not 1 <= num_elites < population_size:
        raise ValueError(
            "elite_ratio must be > 0 and leave a child: max(1, int(elite_ratio × "
            f"population_size)) < population_size ({population_size}), got {elite_ratio!r}"
        )
    return num_elites


class LowRankNRES(NativeDistributionAlgorithm):
    """Step-unlocked noise-reuse ES (``lrne.nres``, Li et al. 2023) in place of ``NoiseReuseES``.

    Takes evosax ``NoiseReuseES``'s arguments in its order and with its
    meaning; lrne's own follow, keyword-only. ``default_params`` carries
    ``NoiseReuseES``'s ``T`` and ``K``, here ``horizon`` and
    ``truncation_length``, fixed at construction (a ``params`` with others is
    an error). The defaults are the registry's (``nres``: σ, the optimizer,
    K from T), not ``NoiseReuseES``'s (std 1.0, ``adam(1e-3)``, K = 10); T =
    100 is ``NoiseReuseES``'s (the registry leaves T to the task).

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
        optimizer: optax optimizer of the mean; default the registry's.
        std_schedule: perturbation std per entry (absolute), an optax schedule
            on evosax's clock (the g-th ``ask`` draws with
            ``std_schedule(max(g - 1, 0))``); a float is a constant. Default
            the registry's σ.
        fitness_shaping_fn: evosax's shaping of the loss, applied before the
            update as in evosax; default none (``NoiseReuseES``'s identity).
        metrics_fn: evosax metrics function.
        sigma: lrne's alternative to ``std_schedule``: a float, or a schedule
            of lrne's generation counter (``lrne.nres``'s ``sigma``).
        truncation_length: W (evosax's K), inner steps per ``ask``/``tell``;
            default the registry's rule (a quarter of T where that divides T).
        horizon: T, the inner episode length; a multiple of W.
        noise_rank: rank of the noise on weights; 0 for dense noise. Default
            1: low rank is what this class is (as the registry's ``es_lowrank``
            is to ``es``).
    """

    def __init__(
        self,
        population_size: int,
        solution: PyTree,
        optimizer: optax.GradientTransformation | None = None,
        std_schedule: Callable | float | None = None,
        fitness_shaping_fn: Callable | None = None,
        metrics_fn: Callable = distribution_metrics,
        *,
        sigma: Callable | float | None = None,
        truncation_length: int | None = None,
        horizon: int = 100,
        noise_rank: int = 1,
    ) -> None:
        check_int("population_size", population_size, 2)
        if population_size % 2:
            raise ValueError(f"population_size must be even, got {population_size}")
        defaults = _registry_defaults("nres", population_size, horizon)
        self.optimizer = defaults["optimizer"] if optimizer is None else optimizer
        sigma = _sigma(std_schedule, sigma, self._first_generation, defaults["sigma"])
        self.std_schedule = _as_evosax_schedule(sigma) if std_schedule is None else std_schedule
        if truncation_length is None:
            truncation_length = defaults["truncation_length"]
        self.truncation_length, self.horizon = truncation_length, horizon
        strategy = registry.make(
            "nres",
            population_size,
            sigma=sigma,
            optimizer=self.optimizer,
            truncation_length=truncation_length,
            horizon=horizon,
            noise_rank=noise_rank,
        )
        super().__init__(
            strategy,
            population_size,
            solution,
            fitness_shaping_fn or identity_fitness_shaping_fn,
            metrics_fn,
        )

    @property
    def _default_params(self) -> LowRankNRESParams:
        return LowRankNRESParams(T=self.horizon, K=self.truncation_length)

    def _check_params(self, params: Any) -> None:
        for name, fixed in (("T", self.horizon), ("K", self.truncation_length)):
            value = getattr(params, name, fixed)
            if isinstance(value, int) and value != fixed:
                raise ValueError(
                    f"params.{name} must be {fixed}, the value this LowRankNRES was built "
                    f"with (horizon={self.horizon}, truncation_length="
                    f"{self.truncation_length}): pass another to the constructor, got {value}"
                )

    def _ask(self, key: jax.Array, state: Any, params: Any) -> tuple[jax.Array, Any]:
        self._check_params(params)
        return super()._ask(key, state, params)

    def _tell(
        self, key: jax.Array, population: jax.Array, fitness: jax.Array, state: Any, params: Any
    ) -> Any:
        self._check_params(params)
        return super()._tell(key, population, fitness, state, params)

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
        for names in (evosax_algorithms.algorithms, registries[kind]):
            if names.get(name, cls) is not cls:
                raise ValueError(f"evosax already has a different algorithm named {name!r}")
            names[name] = cls
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
