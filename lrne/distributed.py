"""Populations split over the devices of a mesh, exchanging only fitness.

Salimans, Ho, Chen, Sidor, Sutskever 2017, *Evolution Strategies as a Scalable
Alternative to Reinforcement Learning* (arXiv 1703.03864): ES workers need to
share only seeds and fitness scalars. Here the same holds inside one compiled
program: :func:`sharded_generation_step` runs the whole generation step on
every device of a mesh (``jax.shard_map``) with the state replicated. The
strategy's ``ask`` and ``tell`` are unchanged: every device regenerates the
whole population from the same key (factors and low-rank noise are small) and
applies the same update to the same fitness, so parameters and ES means stay
replicated and bit-identical. Only the task's per-member work is split
(:class:`ShardedTask`): each device scores its contiguous slice of the members,
with each member's randomness keyed by its global index, and the fitness slices
are gathered. What crosses devices is the fitness vector and the task's metric
sums (and, for online strategies, the particles' inner states after a window).

The same code runs on many hosts after ``jax.distributed.initialize()``: the
mesh then spans every process's devices (see the README, "Scaling out").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrne.generation import Task, generation_step
from lrne.perturb import Population
from lrne.strategies.base import Metrics, Strategy
from lrne.strategies.online import OnlineStrategy

PyTree = Any
AXIS = "population"


def population_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named ``"population"`` over ``devices`` (default: all devices)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (AXIS,))


def replicate(tree: PyTree, mesh: Mesh | None = None) -> PyTree:
    """Place ``tree`` (e.g. a strategy state) replicated on every device of ``mesh``.

    On several hosts (after ``jax.distributed.initialize()``) every process
    passes the same values, and the result is a global array each can use.
    """
    mesh = population_mesh() if mesh is None else mesh
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def member_keys(key: jax.Array, num_members: int) -> jax.Array:
    """One key per member, ``fold_in(key, member index)``: independent of any split."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_members))


def _check_divides(num_members: int, num_devices: int, name: str) -> None:
    if num_members % num_devices:
        raise ValueError(
            f"{name} ({num_members}) must be a multiple of the number of devices "
            f"({num_devices}) to split the population over them"
        )


class ShardedTask:
    """``task`` as one device sees it inside the sharded generation step.

    Only valid inside ``jax.shard_map`` over the ``"population"`` axis (which
    :func:`sharded_generation_step` sets up). Each per-member call takes this
    device's contiguous slice of the members, runs the task on it, and gathers
    the results, so every device ends with the whole population's fitness.
    ``evaluate`` keys member ``m`` by ``fold_in(key, m)`` (:func:`member_keys`),
    as the unsplit task does, so the split does not change any member's
    randomness. The task's metrics are summed over devices, so they must add up
    over members (counts such as ``env_steps``); metrics of the whole
    population come from the task's optional
    ``population_metrics(population, fitness)``, computed after the gather, and
    then ``task.evaluate_members`` is what runs on each slice. Every other
    attribute (``horizon``, ``init_params``, ...) is the task's.
    """

    def __init__(self, task: Task, num_devices: int):
        self.task = task
        self.num_devices = num_devices

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def _local(self, tree: PyTree) -> PyTree:
        num_members = jax.tree.leaves(tree)[0].shape[0]
        _check_divides(num_members, self.num_devices, "the number of members")
        size = num_members // self.num_devices
        start = jax.lax.axis_index(AXIS) * size
        return jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, size), tree)

    def _local_population(self, population: PyTree) -> PyTree:
        if isinstance(population, Population):
            return Population(population.shared, self._local(population.members))
        return self._local(population)

    @staticmethod
    def _gather(tree: PyTree) -> PyTree:
        return jax.tree.map(partial(jax.lax.all_gather, axis_name=AXIS, tiled=True), tree)

    def evaluate(self, key: jax.Array, population: PyTree) -> tuple[jax.Array, Metrics]:
        members = population.members if isinstance(population, Population) else population
        keys = member_keys(key, jax.tree.leaves(members)[0].shape[0])
        score = getattr(self.task, "evaluate_members", self.task.evaluate)
        fitness, metrics = score(self._local(keys), self._local_population(population))
        fitness = self._gather(fitness)
        metrics = jax.tree.map(partial(jax.lax.psum, axis_name=AXIS), metrics)
        summarize = getattr(self.task, "population_metrics", None)
        if summarize is not None:
            metrics = {**metrics, **summarize(population, fitness)}
        return fitness, metrics

    def reset(self, keys: jax.Array) -> PyTree:
        return self._gather(self.task.reset(self._local(keys)))

    def unroll(
        self, keys: jax.Array, population: Population, inner: PyTree, t: jax.Array, num_steps: int
    ) -> tuple[PyTree, jax.Array]:
        local = self._local((keys, inner, t))
        inner, fitness = self.task.unroll(
            local[0], self._local_population(population), local[1], local[2], num_steps
        )
        return self._gather((inner, fitness))


def sharded_generation_step(
    strategy: Strategy | OnlineStrategy,
    task: Task,
    population_size: int,
    mesh: Mesh | None = None,
) -> Callable[[PyTree, jax.Array], tuple[PyTree, Metrics]]:
    """:func:`lrne.generation_step` with the population split over ``mesh``.

    Args:
        strategy: any lrne strategy (GA, ES, Metropolis, or an online one).
        task: as for :func:`lrne.generation_step`.
        population_size: the strategy's population size (``num_particles`` or
            ``num_chains`` for online ES and Metropolis); must be a multiple of
            the number of devices.
        mesh: a 1-D mesh with axis ``"population"``; default all devices.

    For the same key, 1, 2 or 4 devices give the same result (tested bit for
    bit on CPU devices). Call it under ``jax.jit`` like ``generation_step``,
    with the initial state placed by :func:`replicate` (the step returns it
    replicated; a state on one device would make the second call recompile).

    Example:
        >>> step = jax.jit(lrne.distributed.sharded_generation_step(strategy, task, 512))
    """
    mesh = population_mesh() if mesh is None else mesh
    if mesh.axis_names != (AXIS,):
        raise ValueError(f"mesh must be 1-D with the axis name {AXIS!r}, got {mesh.axis_names}")
    _check_divides(population_size, mesh.devices.size, "population_size")
    step = generation_step(strategy, ShardedTask(task, mesh.devices.size))
    # Every device runs the whole step on replicated state; only the gathers in
    # ShardedTask cross devices. check_vma=False: tasks are written for one
    # device, and their loop carries start from constants.
    return jax.shard_map(
        step,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec()),
        out_specs=(PartitionSpec(), PartitionSpec()),
        check_vma=False,
    )
