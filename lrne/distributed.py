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

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrne.generation import generation_step
from lrne.genome import Metrics, Population, PyTree
from lrne.strategies.base import Strategy
from lrne.tasks.base import Task

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


def _check_divides(num_members: int, num_devices: int, name: str) -> None:
    if num_members % num_devices:
        raise ValueError(
            f"{name} ({num_members}) must be a multiple of the number of devices "
            f"({num_devices}) to split the population over them"
        )


class ShardedTask(Task):
    """``task`` as one device sees it inside the sharded generation step.

    Only valid inside ``jax.shard_map`` over the ``"population"`` axis (which
    :func:`sharded_generation_step` sets up). It overrides the per-member
    hooks: each takes this device's contiguous slice of the members, runs the
    task on it, and gathers the results, so every device ends with the whole
    population's fitness. The template :meth:`~lrne.tasks.Task.evaluate` keys
    member ``m`` by ``fold_in(key, m)`` before the split, so the split does not
    change any member's randomness; per-member metrics are summed over devices
    and the task's :meth:`~lrne.tasks.Task.population_metrics` run after the
    gather, on the whole population.
    """

    def __init__(self, task: Task, num_devices: int):
        self.task = task
        self.num_devices = num_devices

    @property
    def horizon(self) -> int:
        return self.task.horizon

    @property
    def thin_kernels(self) -> frozenset[str]:
        return self.task.thin_kernels

    def init_params(self, key: jax.Array) -> PyTree:
        return self.task.init_params(key)

    def member_keys(self, key: jax.Array, num_members: int) -> jax.Array:
        return self.task.member_keys(key, num_members)

    def _local(self, tree: PyTree) -> PyTree:
        num_members = jax.tree.leaves(tree)[0].shape[0]
        _check_divides(num_members, self.num_devices, "the number of members")
        size = num_members // self.num_devices
        start = jax.lax.axis_index(AXIS) * size
        return jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, size), tree)

    def _local_population(self, population: Population) -> Population:
        return Population(population.shared, self._local(population.members))

    @staticmethod
    def _gather(tree: PyTree) -> PyTree:
        return jax.tree.map(partial(jax.lax.all_gather, axis_name=AXIS, tiled=True), tree)

    def evaluate_members(
        self, keys: jax.Array, population: Population
    ) -> tuple[jax.Array, Metrics]:
        fitness, metrics = self.task.evaluate_members(
            self._local(keys), self._local_population(population)
        )
        return self._gather(fitness), jax.tree.map(partial(jax.lax.psum, axis_name=AXIS), metrics)

    def population_metrics(self, population: Population, fitness: jax.Array) -> Metrics:
        return self.task.population_metrics(population, fitness)

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
    strategy: Strategy,
    task: Task,
    population_size: int,
    mesh: Mesh | None = None,
) -> Callable[[PyTree, jax.Array], tuple[PyTree, Metrics]]:
    """:func:`lrne.generation_step` with the population split over ``mesh``.

    Args:
        strategy: any lrne strategy (GA, ES, Metropolis, or an online one).
        task: as for :func:`lrne.generation_step`.
        population_size: the strategy's population size (``2 * num_particles``
            for online ES, ``num_chains`` for Metropolis); must be a multiple of
            the number of devices (TES, which unrolls 3N copies, needs
            ``num_particles`` to be one too).
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
