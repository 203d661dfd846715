"""Strategies: NamedTuple(init, ask, tell) of pure functions."""

from lrne.strategies.base import Strategy
from lrne.strategies.es import ESState, es
from lrne.strategies.ga import GAState, ga
from lrne.strategies.shaping import centered_rank, z_score

__all__ = ["ESState", "GAState", "Strategy", "centered_rank", "es", "ga", "z_score"]
