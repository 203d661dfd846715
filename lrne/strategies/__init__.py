"""Strategies: NamedTuple(init, ask, tell, evaluate) of pure functions."""

from lrne.fitness import centered_rank, z_score
from lrne.strategies.base import Strategy
from lrne.strategies.es import ESState, es
from lrne.strategies.ga import GAState, ga
from lrne.strategies.metropolis import MetropolisState, metropolis
from lrne.strategies.online import OnlineESState, full_es, nres, pes, tes
from lrne.strategies.registry import REGISTRY, make

__all__ = [
    "REGISTRY",
    "ESState",
    "GAState",
    "MetropolisState",
    "OnlineESState",
    "Strategy",
    "centered_rank",
    "es",
    "full_es",
    "ga",
    "make",
    "metropolis",
    "nres",
    "pes",
    "tes",
    "z_score",
]
