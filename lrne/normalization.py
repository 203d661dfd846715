"""Observation normalization: a running mean and variance of what the policies saw.

Salimans, Ho, Chen, Sidor, Sutskever 2017, *Evolution Strategies as a Scalable
Alternative to Reinforcement Learning* (arXiv 1703.03864), normalized every
observation by statistics gathered from the rollouts; evosax
(``use_normalize_obs``), EvoJAX (``ObsNormalizer``) and EvoTorch
(``observation_normalization``) do the same. Here it is a strategy wrapper:
:func:`normalized` runs any strategy (GA, ES, Metropolis, online ES) with the
statistics kept beside its state, so checkpoints, resumed and extended runs and
runs split over devices carry them like any other part of the run state.

- **The policy sees** ``clip((obs - mean) / sqrt(var + eps), -clip, clip)``
  with the statistics frozen for a generation. They travel as a variables
  collection (:data:`NORMALIZER`) beside ``params``, as flax's BatchNorm keeps
  ``batch_stats``: the wrapper puts it into the population's shared variables
  while it evaluates, and :class:`~lrne.tasks.Gymnax` normalizes the
  observations of any member whose variables carry it (the policy module never
  sees the collection).
- **The answer carries its statistics**: ``state.best_params`` (and
  ``state.mean``) hold the collection, so :func:`lrne.evaluate_best`,
  ``lrne eval`` and ``lrne render`` play with the frozen statistics, which
  scoring never changes.
- **Updates**: every generation's live steps (not the steps after an episode
  ended), of every member, are merged into the running statistics with the
  parallel form of Welford's algorithm (Chan, Golub, LeVeque 1979). A
  generation's moments are summed around the current mean (shifted data: no
  cancellation), member by member, in an order that does not depend on how the
  members were split over devices (:func:`split_sum`), so 1 and 2 devices give
  the same bits. Offline strategies get them from the task's metrics; online
  ES from the inner states they unroll (each window's steps).

Example:
    >>> import jax, lrne
    >>> task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((8,), 2, rank=0), max_steps=32)
    >>> strategy = lrne.normalized(lrne.ga(population_size=8, num_elites=2, sigma=0.5))
    >>> result = lrne.run(strategy, task, jax.random.key(0), 3)
    >>> stats = result.state.observations  # RunningStats(count, mean, m2)
    >>> bool(stats.count > 0), stats.mean.shape
    (True, (4,))
    >>> sorted(result.state.best_params)  # the answer carries its frozen statistics
    ['normalizer', 'params']
    >>> score = lrne.evaluate_best(task, result.state.best_params, jax.random.key(1), 4)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from lrne.errors import ArgumentError
from lrne.generation import isolated
from lrne.genome import Metrics, Population, PyTree, is_local
from lrne.strategies.base import Strategy, check_positive

NORMALIZER = "normalizer"
"""The variables collection holding a policy's observation statistics."""

MOMENTS = "observation_moments"
"""The metric under which a task returns a generation's :class:`Moments` (popped by
:func:`normalized`'s evaluation)."""

EPS = 1e-8


class RunningStats(NamedTuple):
    """Running statistics of observations: ``count`` (float32), ``mean`` and ``m2`` (the
    sum of squared deviations from the mean), each of one observation's shape."""

    count: jax.Array
    mean: jax.Array
    m2: jax.Array

    @property
    def var(self) -> jax.Array:
        """The (population) variance; 1 before any observation."""
        return jnp.where(self.count > 0, self.m2 / jnp.maximum(self.count, 1.0), 1.0)


class Moments(NamedTuple):
    """A batch of observations summed around ``shift``: ``count`` steps, ``sum`` of
    ``obs - shift``, ``sq`` of its squares (per entry)."""

    count: jax.Array
    sum: jax.Array
    sq: jax.Array


def no_stats(shape: tuple[int, ...]) -> RunningStats:
    """Statistics of no observation: the identity normalization (clipped)."""
    zeros = jnp.zeros(shape, jnp.float32)
    return RunningStats(jnp.zeros((), jnp.float32), zeros, zeros)


def merge(stats: RunningStats, batch: Moments, shift: jax.Array) -> RunningStats:
    """``stats`` with a batch of observations merged in (Chan et al.'s parallel Welford).

    ``batch`` holds sums around ``shift`` (:class:`Moments`); an empty batch changes
    nothing.
    """
    n_b = batch.count.astype(jnp.float32)
    # Times a reciprocal, not over a broadcast scalar: XLA rewrites the latter into
    # the former in some programs only, which would change the last bit.
    inverse = 1.0 / jnp.maximum(n_b, 1.0)
    mean_b = shift + batch.sum * inverse
    m2_b = jnp.maximum(batch.sq - batch.sum * batch.sum * inverse, 0.0)
    count = stats.count + n_b
    delta = mean_b - stats.mean
    share = n_b / jnp.maximum(count, 1.0)
    mean = stats.mean + delta * share
    m2 = stats.m2 + m2_b + delta * delta * stats.count * share
    empty = n_b == 0
    return RunningStats(
        count,
        jnp.where(empty, stats.mean, mean),
        jnp.where(empty, stats.m2, m2),
    )


def collection(stats: RunningStats, clip: jax.Array) -> dict[str, jax.Array]:
    """The :data:`NORMALIZER` collection of ``stats``: what a policy normalizes with."""
    return {"mean": stats.mean, "var": stats.var, "clip": jnp.asarray(clip, jnp.float32)}


def normalize(normalizer: Mapping[str, jax.Array], obs: jax.Array) -> jax.Array:
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` of a :data:`NORMALIZER`."""
    scaled = (obs - normalizer["mean"]) / jnp.sqrt(normalizer["var"] + EPS)
    return jnp.clip(scaled, -normalizer["clip"], normalizer["clip"])


def policy_input(variables: PyTree, obs: jax.Array) -> tuple[PyTree, jax.Array]:
    """``(variables without the collection, normalized obs)`` where ``variables`` carry a
    :data:`NORMALIZER`; else both unchanged. What :class:`~lrne.tasks.Gymnax` acts on."""
    if not (isinstance(variables, Mapping) and NORMALIZER in variables):
        return variables, obs
    rest = {name: value for name, value in variables.items() if name != NORMALIZER}
    return rest, normalize(variables[NORMALIZER], obs)


def shift_of(population: Population) -> jax.Array | None:
    """The mean the moments of a generation are summed around: the population's shared
    :data:`NORMALIZER` (set by :func:`normalized` while it evaluates), else None."""
    shared = population.shared
    if isinstance(shared, Mapping) and NORMALIZER in shared:
        return shared[NORMALIZER]["mean"]
    return None


def observe(moments: tuple, obs: jax.Array, live: jax.Array) -> tuple:
    """Per-slot ``(shift, sum, sq)`` with the observations ``obs`` of the ``live`` slots added."""
    shift, total, sq = moments
    live = live.reshape(live.shape + (1,) * (obs.ndim - 1))
    x = jnp.where(live, obs - shift, 0.0)
    return shift, total + x, sq + x * x


def split_sum(x: jax.Array) -> jax.Array:
    """The sum over the leading axis, the same bits for any contiguous split into halves.

    ``x`` (n, ...) with n = 2^a · b (b odd) is summed in blocks of b rows, each
    in order, then the blocks pairwise (halves, quarters, ...). A device holding
    a contiguous half of the rows computes exactly the half's sum, and adding
    two halves' sums (a ``psum`` over 2 devices) gives the whole's bits.
    """
    n = x.shape[0]
    blocks = n & -n  # the largest power of two dividing n
    parts = x.reshape(blocks, n // blocks, *x.shape[1:])
    acc = parts[:, 0]
    for i in range(1, n // blocks):
        acc = acc + parts[:, i]
    while acc.shape[0] > 1:
        acc = acc[0::2] + acc[1::2]
    return acc[0]


def episode_moments(moments: tuple, episode: jax.Array, lengths: jax.Array, total: int) -> Moments:
    """A generation's :class:`Moments` from per-slot sums (slots in any order, each holding
    episode ``episode[i]``), summed over episodes in episode order (:func:`split_sum`)."""
    _, total_sum, sq = moments
    by_episode = lambda x: jnp.zeros((total, *x.shape[1:]), x.dtype).at[episode].set(x, mode="drop")
    return Moments(jnp.sum(lengths), split_sum(by_episode(total_sum)), split_sum(by_episode(sq)))


class Watched(NamedTuple):
    """An online ES's inner states with the :class:`Moments` of their last window
    (``count`` (M,), ``sum`` and ``sq`` (M, ...): one row per state)."""

    inner: PyTree
    moments: Moments


class _Watching:
    """``task`` whose ``reset``/``unroll`` also sum each window's live observations (in
    :class:`Watched` inner states); every other attribute is ``task``'s.

    The window is stepped one step at a time through ``task.unroll`` (step ``i``
    with ``t + i``: the same keys as one ``num_steps`` call), reading the
    observation each step acts on and whether it is live (an
    :class:`~lrne.tasks.Unrolled` state before the step, before the horizon).
    """

    def __init__(self, task: Any) -> None:
        self.task = task

    def __getattr__(self, name: str) -> Any:
        if name == "task":
            raise AttributeError(name)
        return getattr(self.task, name)

    def reset(self, keys: jax.Array) -> Watched:
        inner = self.task.reset(keys)
        zeros = jnp.zeros(inner.obs.shape, jnp.float32)
        return Watched(inner, Moments(jnp.zeros(keys.shape[0], jnp.int32), zeros, zeros))

    def unroll(
        self, keys: jax.Array, population: Population, inner: Watched, t: jax.Array, num_steps: int
    ) -> tuple[Watched, jax.Array]:
        shift = shift_of(population)
        state = inner.inner

        def body(carry: tuple, i: jax.Array) -> tuple:
            state, count, moments = carry
            live = state.alive & (t + i < self.task.horizon)
            moments = observe(moments, state.obs, live)
            state, rewards = self.task.unroll(keys, population, state, t + i, 1)
            return (state, count + live.astype(jnp.int32), moments), rewards[:, 0]

        zeros = jnp.zeros(state.obs.shape, jnp.float32)
        start = (state, jnp.zeros(keys.shape[0], jnp.int32), (shift, zeros, zeros))
        (state, count, (_, total, sq)), rewards = jax.lax.scan(body, start, jnp.arange(num_steps))
        return Watched(state, Moments(count, total, sq)), rewards.T


def _window_moments(state: Any, task: Any) -> Moments | None:
    """The moments of the windows an online ES just unrolled: every :class:`Watched`
    inner state in its :class:`~lrne.genome.Local` boxes, gathered from every device."""
    gather = getattr(task, "gather", lambda tree: tree)
    found = []
    for box in jax.tree.leaves(state, is_leaf=is_local):
        if is_local(box):
            watched = jax.tree.leaves(box.value, is_leaf=lambda x: isinstance(x, Watched))
            found += [w.moments for w in watched if isinstance(w, Watched)]
    if not found:
        return None
    parts = [gather(m) for m in found]
    return Moments(
        sum(jnp.sum(m.count) for m in parts),
        sum(split_sum(m.sum) for m in parts),
        sum(split_sum(m.sq) for m in parts),
    )


@struct.dataclass
class NormalizedState:
    """State of :func:`normalized`: the wrapped strategy's state and the statistics.

    The wrapped state's fields read through (``generation``, ``best_fitness``,
    ``ancestry``...), and ``_replace`` of them reaches it; ``best_params`` and
    ``mean`` are the wrapped state's with the :data:`NORMALIZER` collection.

    Attributes:
        inner: the wrapped strategy's state.
        observations: the :class:`RunningStats` of every live step so far.
        clip: the bound of a normalized observation entry.
    """

    inner: Any
    observations: RunningStats
    clip: jax.Array

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("inner", "observations", "clip"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _replace(self, **changes: Any) -> NormalizedState:
        own = {k: changes.pop(k) for k in list(changes) if k in ("inner", "observations", "clip")}
        state = self.replace(**own)
        return state.replace(inner=state.inner._replace(**changes)) if changes else state

    def with_normalizer(self, variables: PyTree) -> PyTree:
        """``variables`` with these statistics as their :data:`NORMALIZER` collection."""
        return {**variables, NORMALIZER: collection(self.observations, self.clip)}

    @functools.cached_property
    def best_params(self) -> PyTree:
        """The wrapped strategy's answer, with the statistics it acts under."""
        return self.with_normalizer(self.inner.best_params)

    @functools.cached_property
    def mean(self) -> PyTree:
        """The wrapped strategy's mean with the statistics (AttributeError where it has none)."""
        mean = self.inner.mean
        return self.best_params if mean is self.inner.best_params else self.with_normalizer(mean)


def _merged(key: jax.Array, state: NormalizedState, moments: Moments) -> RunningStats:
    del key
    return merge(state.observations, moments, state.observations.mean)


def normalized(strategy: Strategy, clip: float = 5.0) -> Strategy:
    """``strategy`` acting on normalized observations (see the module docstring).

    Args:
        strategy: any lrne strategy whose task is a :class:`~lrne.tasks.Gymnax`
            (or whose task's metrics or unrolled states carry observation
            moments the same way).
        clip: normalized entries are clipped to ``[-clip, clip]``, > 0.

    Returns:
        A :class:`~lrne.strategies.Strategy` with :class:`NormalizedState`;
        ``init`` needs the task (for the observation shape).
    """
    check_positive("clip", clip)
    inner = strategy

    def init(key: jax.Array, params: PyTree, task: Any = None) -> NormalizedState:
        if task is None or not hasattr(task, "reset"):
            raise ArgumentError(
                "task", "normalized(strategy).init needs the task (a gymnax task) it will run on"
            )
        obs = jax.eval_shape(task.reset, jax.random.split(jax.random.key(0), 1)).obs
        state = inner.init(key, params, _Watching(task))
        return NormalizedState(state, no_stats(obs.shape[1:]), jnp.asarray(clip, jnp.float32))

    def ask(key: jax.Array, state: NormalizedState) -> tuple[Population, NormalizedState]:
        population, new = inner.ask(key, state.inner)
        return population, state._replace(inner=new)

    def evaluate(
        key: jax.Array, state: NormalizedState, population: Population, task: Any
    ) -> tuple[jax.Array, Metrics, NormalizedState]:
        shared = {**population.shared, NORMALIZER: collection(state.observations, state.clip)}
        watching = _Watching(task)
        fitness, metrics, new = inner.evaluate(
            key, state.inner, Population(shared, population.members), watching
        )
        metrics = dict(metrics)
        moments = metrics.pop(MOMENTS, None)
        if moments is None:
            moments = _window_moments(new, watching)
        if moments is None:
            raise ValueError(
                "normalized: the task reported no observation moments (a gymnax task "
                "reports them when its population carries a normalizer)"
            )
        # Isolated (a computation of its own): no fusion with what surrounds it, so the
        # merge rounds alike in a sharded and a single-device step.
        observations = isolated(_merged, key, state, Moments(*moments))
        return fitness, metrics, state._replace(inner=new, observations=observations)

    def tell(
        key: jax.Array, state: NormalizedState, population: Population, fitness: jax.Array
    ) -> tuple[NormalizedState, Metrics]:
        new, metrics = inner.tell(key, state.inner, population, fitness)
        return state._replace(inner=new), metrics

    mutate = None
    if inner.mutate is not None:

        def mutate(
            key: jax.Array, state: NormalizedState, params: PyTree, index: jax.Array
        ) -> PyTree:
            return inner.mutate(key, state.inner, params, index)

    return Strategy(init, ask, tell, evaluate, mutate, inner.estimate)


__all__ = [
    "MOMENTS",
    "NORMALIZER",
    "Moments",
    "NormalizedState",
    "RunningStats",
    "merge",
    "normalize",
    "normalized",
    "split_sum",
]
