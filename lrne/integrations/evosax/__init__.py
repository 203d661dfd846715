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

from evosax import algorithms as evosax_algorithms
from evosax.algorithms import distribution_based, population_based

from lrne.integrations.evosax.named import (
    FactorizedGA,
    FactorizedGAParams,
    LowRankES,
    LowRankNRES,
    LowRankNRESParams,
)
from lrne.integrations.evosax.native import (
    NativeDistributionAlgorithm,
    NativeDistributionState,
    NativePopulationAlgorithm,
    NativePopulationState,
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
    "FactorizedGAParams",
    "FactorizedGAState",
    "LowRankES",
    "LowRankESState",
    "LowRankNRES",
    "LowRankNRESParams",
    "LowRankNRESState",
    "NativeDistributionAlgorithm",
    "NativeDistributionState",
    "NativePopulationAlgorithm",
    "NativePopulationState",
    "register",
]
