"""Every strategy by name, with small defaults: what shared tests, the CLI and configs use.

``make(name, population_size, **overrides)`` builds a strategy whose population
(the members one generation evaluates) has ``population_size`` members;
``overrides`` replace the defaults (any argument of the factory). The online
ES entries (``nres``, ``pes``, ``tes``, ``full_es``) build N = population_size / 2
particles and need ``horizon=task.horizon``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from lrne.strategies.base import Strategy
from lrne.strategies.es import es
from lrne.strategies.ga import ga
from lrne.strategies.metropolis import metropolis
from lrne.strategies.online import full_es, nres, pes, tes


def _ga(population_size: int, **kw: Any) -> Strategy:
    kw = {"num_elites": max(1, population_size // 8), "sigma": 0.1, **kw}
    return ga(population_size, **kw)


def _es(population_size: int, **kw: Any) -> Strategy:
    kw = {"sigma": 0.05, "optimizer": optax.adam(0.03), **kw}
    return es(population_size, **kw)


def _metropolis(population_size: int, **kw: Any) -> Strategy:
    return metropolis(population_size, **{"sigma": 0.02, "beta": 100.0, **kw})


def _online(build: Callable[..., Strategy], truncated: bool = True) -> Callable[..., Strategy]:
    """Registry factory of an online ES: ``population_size`` = 2N members, ``horizon`` required."""

    def make_online(population_size: int, **kw: Any) -> Strategy:
        if not isinstance(population_size, int) or population_size < 2 or population_size % 2:
            raise ValueError(
                "population_size must be an even int >= 2 (an online ES unrolls N antithetic "
                f"pairs, 2N members), got {population_size!r}"
            )
        if "horizon" not in kw:
            raise ValueError(
                "horizon is required for an online ES: pass horizon=task.horizon "
                "(the episode length T)"
            )
        horizon = kw["horizon"]
        defaults: dict[str, Any] = {"sigma": 0.05, "optimizer": optax.adam(0.03)}
        if truncated and isinstance(horizon, int) and horizon > 0:
            # Four windows per episode where that divides T; else one (W must divide T).
            defaults["truncation_length"] = horizon // 4 if horizon % 4 == 0 else horizon
        return build(population_size // 2, **{**defaults, **kw})

    return make_online


REGISTRY: dict[str, Callable[..., Strategy]] = {
    "ga": _ga,
    "ga_subspace": lambda p, **kw: _ga(p, **{"density": 0.1, "mask": "static", **kw}),
    "es": _es,
    "es_lowrank": lambda p, **kw: _es(p, **{"noise_rank": 1, **kw}),
    "es_subspace": lambda p, **kw: _es(p, **{"density": 0.1, **kw}),
    "metropolis": _metropolis,
    "nres": _online(nres),
    "pes": _online(pes),
    "tes": _online(tes),
    "full_es": _online(full_es, truncated=False),
}
"""Strategy name -> factory ``(population_size, **overrides) -> Strategy`` with small defaults."""


ONLINE: frozenset[str] = frozenset({"nres", "pes", "tes", "full_es"})
"""The online ES entries: their factories need ``horizon=task.horizon`` and an
:class:`~lrne.tasks.Unrollable` task (what a config-driven caller must know)."""


def make(name: str, population_size: int, **overrides: Any) -> Strategy:
    """The registered strategy ``name`` with ``population_size`` members per generation."""
    if name not in REGISTRY:
        raise ValueError(f"strategy: unknown name {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](population_size, **overrides)
