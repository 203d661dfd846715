"""Black-box optimisation: a population scored by a function of the genome.

For a genome that is not a flax model (a raw array, a dict of arrays, or
variables scored by your own code), :class:`Function` evaluates every member
with ``jax.vmap(f)`` over the members' dense params
(:func:`lrne.nn.member_params`). Every strategy runs on it, the online ES
included: an unrolled step scores ``f`` once more, so a window's fitness is
``num_steps × f``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from lrne.errors import ArgumentError
from lrne.genome import Metrics, Population, PyTree
from lrne.nn.perturbed import member_params
from lrne.tasks.base import Task


class Function(Task):
    """The task of maximizing ``f(params) -> fitness`` (a scalar; higher is better).

    Args:
        f: the objective, traced once under ``jax.vmap``; to minimize a loss,
            pass ``lambda x: -loss(x)``.
        params: the starting genome, in the structure ``f`` takes; or a
            function ``key -> genome``.
        horizon: the episode length an online ES unrolls (every step scores ``f``).

    Example:
        >>> import jax, jax.numpy as jnp, optax, lrne
        >>> task = lrne.tasks.Function(lambda x: -jnp.sum(x**2), jnp.ones(5))
        >>> strategy = lrne.es(16, 0.1, optax.adam(0.1))
        >>> state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(0)))
        >>> step = jax.jit(lrne.generation_step(strategy, task))
        >>> for g in range(50):
        ...     state, metrics = step(state, jax.random.fold_in(jax.random.key(1), g))
        >>> bool(jnp.sum(state.best_params**2) < 0.5)
        True
    """

    def __init__(
        self,
        f: Callable[[PyTree], jax.Array],
        params: PyTree | Callable[[jax.Array], PyTree],
        horizon: int = 1,
    ) -> None:
        if not callable(f):
            raise ArgumentError("f", f"f must be a function params -> fitness, got {f!r}")
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
            raise ArgumentError("horizon", f"horizon must be an int >= 1, got {horizon!r}")
        self.f = f
        self.params = params
        self.horizon = horizon

    def init_params(self, key: jax.Array) -> PyTree:
        return self.params(key) if callable(self.params) else self.params

    def score(self, population: Population) -> jax.Array:
        """``f`` of every member's dense params: fitness (M,)."""
        return jax.vmap(self.f)(member_params(population)).astype(jnp.float32)

    def differentiable_loss(self, key: jax.Array, variables: PyTree) -> jax.Array:
        """``−f(variables)`` (``key`` unused), for an ``f`` that ``jax.grad`` can trace."""
        del key
        return -jnp.asarray(self.f(variables), jnp.float32)

    def evaluate_members(
        self, keys: jax.Array, population: Population
    ) -> tuple[jax.Array, Metrics]:
        del keys
        return self.score(population), {}

    def reset(self, keys: jax.Array) -> jax.Array:
        return jnp.zeros(keys.shape[0], jnp.int32)

    def unroll(
        self,
        keys: jax.Array,
        population: Population,
        inner: jax.Array,
        t: jax.Array,
        num_steps: int,
    ) -> tuple[jax.Array, jax.Array]:
        del keys, t
        fitness = self.score(population)
        return inner + num_steps, jnp.broadcast_to(fitness[:, None], (fitness.shape[0], num_steps))
