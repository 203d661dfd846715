"""``LowRankES``, ``FactorizedGA``, ``LowRankNRES``: lrne's strategies under evosax's names.

Each takes the constructor arguments of the evosax class it stands in for
(see :mod:`lrne.integrations.evosax`), mapped onto lrne's factories here, in
one place; the defaults are the registry's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms.distribution_based.base import Params as DistributionParams
from evosax.algorithms.population_based.base import Params as PopulationParams
from flax import struct

from lrne.genome import PyTree
from lrne.integrations.evosax.native import (
    NativeDistributionAlgorithm,
    NativeDistributionState,
    NativePopulationAlgorithm,
)
from lrne.strategies import registry
from lrne.strategies.base import Strategy, check_int, check_positive

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


class _EvosaxArguments:
    """The σ arguments every named class takes: evosax's ``std_schedule`` or lrne's ``sigma``."""

    _first_generation: int

    def _std(
        self, std_schedule: Callable | float | None, sigma: Callable | float | None, default: float
    ) -> Callable | float:
        """The native ``sigma``; sets evosax's ``std_schedule`` attribute (a float: constant)."""
        _one_of("std_schedule", std_schedule, "sigma", sigma)
        if std_schedule is not None:
            self.std_schedule = std_schedule
            if not callable(std_schedule):
                check_positive("std_schedule", std_schedule)
                return std_schedule
            return _on_evosax_clock(std_schedule, self._first_generation)
        sigma = default if sigma is None else sigma
        self.std_schedule = sigma if callable(sigma) else optax.constant_schedule(sigma)
        return sigma


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


class LowRankES(_EvosaxArguments, NativeDistributionAlgorithm):
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
            default, applied by lrne (:func:`lrne.fitness.centered_rank`,
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
        metrics_fn: Callable | None = None,
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
        sigma = self._std(std_schedule, sigma, defaults["sigma"])
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
            fitness_shaping_fn,
            metrics_fn,
        )


class FactorizedGA(_EvosaxArguments, NativePopulationAlgorithm):
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
        metrics_fn: Callable | None = None,
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
        sigma = self._std(std_schedule, sigma, defaults["sigma"])
        self._settings = {"sigma": sigma} if freeze is None else {"sigma": sigma, "freeze": freeze}
        super().__init__(
            self._ga(population_size, num_elites),
            population_size,
            solution,
            fitness_shaping_fn,
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


class LowRankNRES(_EvosaxArguments, NativeDistributionAlgorithm):
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
        metrics_fn: Callable | None = None,
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
        sigma = self._std(std_schedule, sigma, defaults["sigma"])
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
            fitness_shaping_fn,
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
