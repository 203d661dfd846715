"""Strategies: NamedTuple(init, ask, tell) of pure functions."""

from lrne.strategies.base import Strategy
from lrne.strategies.ga import GAState, ga

__all__ = ["GAState", "Strategy", "ga"]
