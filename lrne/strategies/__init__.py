"""Strategies: NamedTuple(init, ask, tell) of pure functions."""

from lrne.strategies.base import Strategy
from lrne.strategies.es import ESState, es
from lrne.strategies.ga import GAState, ga
from lrne.strategies.metropolis import MetropolisState, metropolis
from lrne.strategies.online import (
    OnlineESState,
    OnlineStrategy,
    Unrollable,
    full_es,
    nres,
    online_es,
    pes,
    tes,
)
from lrne.strategies.shaping import centered_rank, z_score

__all__ = [
    "ESState",
    "GAState",
    "MetropolisState",
    "OnlineESState",
    "OnlineStrategy",
    "Strategy",
    "Unrollable",
    "centered_rank",
    "es",
    "full_es",
    "ga",
    "metropolis",
    "nres",
    "online_es",
    "pes",
    "tes",
    "z_score",
]
