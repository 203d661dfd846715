"""The strategy interface: a NamedTuple of pure functions (optax style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

PyTree = Any
Metrics = dict[str, jax.Array]


class Strategy(NamedTuple):
    """An evolution strategy as three pure functions closing over static settings.

    ``init(key, params) -> state``: ``params`` is one member's pytree.
    ``ask(key, state) -> (population, state)``: a population to evaluate.
    ``tell(key, state, population, fitness) -> (state, metrics)``: update from
    fitness of shape (population_size,), **maximized**; NaN/inf ranks last.

    Every state exposes ``best_params`` and ``best_fitness`` (best ever seen).
    """

    init: Callable[[jax.Array, PyTree], PyTree]
    ask: Callable[[jax.Array, PyTree], tuple[PyTree, PyTree]]
    tell: Callable[[jax.Array, PyTree, PyTree, jax.Array], tuple[PyTree, Metrics]]
