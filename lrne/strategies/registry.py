"""Every strategy by name, with small defaults: what shared tests, the CLI and configs use.

``make(name, population_size, **overrides)`` builds a strategy whose population
(the members one generation evaluates) has ``population_size`` members;
``overrides`` replace the defaults (any argument of the factory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from lrne.strategies.base import Strategy
from lrne.strategies.es import es
from lrne.strategies.ga import ga
from lrne.strategies.metropolis import metropolis


def _ga(population_size: int, **kw: Any) -> Strategy:
    kw = {"num_elites": max(1, population_size // 8), "sigma": 0.1, **kw}
    return ga(population_size, **kw)


def _es(population_size: int, **kw: Any) -> Strategy:
    kw = {"sigma": 0.05, "optimizer": optax.adam(0.03), **kw}
    return es(population_size, **kw)


def _metropolis(population_size: int, **kw: Any) -> Strategy:
    return metropolis(population_size, **{"sigma": 0.02, "beta": 100.0, **kw})


REGISTRY: dict[str, Callable[..., Strategy]] = {
    "ga": _ga,
    "ga_subspace": lambda p, **kw: _ga(p, **{"density": 0.1, "mask": "static", **kw}),
    "es": _es,
    "es_lowrank": lambda p, **kw: _es(p, **{"noise_rank": 1, **kw}),
    "es_subspace": lambda p, **kw: _es(p, **{"density": 0.1, **kw}),
    "metropolis": _metropolis,
}


def make(name: str, population_size: int, **overrides: Any) -> Strategy:
    """The registered strategy ``name`` with ``population_size`` members per generation."""
    if name not in REGISTRY:
        raise ValueError(f"strategy: unknown name {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](population_size, **overrides)
