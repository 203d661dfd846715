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
are gathered. State a strategy boxes in :class:`~lrne.genome.Local` (an online
ES's inner states) is not replicated: each device keeps the part of it that
belongs to its members, and unrolls only those. What crosses devices is the
fitness vector (for online ES, each member's window sum) and the task's metric
sums.

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
from lrne.genome import Metrics, Population, PyTree, is_local
from lrne.strategies.base import Strategy
from lrne.tasks.base import Score, Scored, Task, TaskWrapper

AXIS = "population"


def population_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named ``"population"`` over ``devices`` (default: all devices)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (AXIS,))


def _spec(x: PyTree) -> PartitionSpec:
    """A :class:`~lrne.genome.Local` box is split along its leading axis; the rest replicated."""
    return PartitionSpec(AXIS) if is_local(x) else PartitionSpec()


def replicate(tree: PyTree, mesh: Mesh | None = None) -> PyTree:
    """Place ``tree`` (e.g. a strategy state) on ``mesh`` as the sharded step keeps it.

    Replicated on every device, except what is boxed in
    :class:`~lrne.genome.Local` (an online ES's inner states): each device holds
    its contiguous part of that box's leading axis. On several hosts (after
    ``jax.distributed.initialize()``) every process passes the same values,
    and the result is a global array each can use.
    """
    mesh = population_mesh() if mesh is None else mesh
    # On one device the step returns P() (as the compiled program normalizes
    # it): placing P("population") there would make its second call recompile.
    spec = _spec if mesh.devices.size > 1 else lambda x: PartitionSpec()
    place = lambda x: jax.device_put(x, NamedSharding(mesh, spec(x)))
    return jax.tree.map(place, tree, is_leaf=is_local)


def _check_divides(num_members: int, num_devices: int, name: str) -> None:
    if num_members % num_devices:
        raise ValueError(
            f"{name} ({num_members}) must be a multiple of the number of devices "
            f"({num_devices}) to split the population over them"
        )


class ShardedTask(TaskWrapper):
    """``task`` as one device sees it inside the sharded generation step.

    Only valid inside ``jax.shard_map`` over the ``"population"`` axis (which
    :func:`sharded_generation_step` sets up). :meth:`local` takes this
    device's contiguous slice of per-member arrays and :meth:`gather` joins
    every device's slices. ``evaluate_members`` scores this device's
    members and gathers their fitness, so every device ends with the whole
    population's fitness. The template :meth:`~lrne.tasks.Task.evaluate` keys
    member ``m`` by ``fold_in(key, m)`` before the split, so the split does not
    change any member's randomness; per-member metrics are summed over devices
    and the task's :meth:`~lrne.tasks.Task.population_metrics` run after the
    gather, on the whole population. ``reset`` and ``unroll`` are the task's:
    an online strategy passes them this device's part of its inputs and of the
    inner states it keeps on the device.
    """

    def __init__(self, task: Task, num_devices: int):
        super().__init__(task)
        self.num_devices = num_devices

    def local(self, tree: PyTree) -> PyTree:
        """This device's contiguous part of per-member arrays (leading member axis)."""
        num_members = jax.tree.leaves(tree)[0].shape[0]
        _check_divides(num_members, self.num_devices, "the number of members")
        size = num_members // self.num_devices
        start = jax.lax.axis_index(AXIS) * size
        return jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, size), tree)

    def gather(self, tree: PyTree) -> PyTree:
        """Every device's part, in device order: the inverse of :meth:`local`."""
        return jax.tree.map(partial(jax.lax.all_gather, axis_name=AXIS, tiled=True), tree)

    def split(self, score: Score, keys: jax.Array, population: Population) -> Scored:
        """``score`` on this device's members; fitness gathered, metrics summed over devices."""
        local = Population(population.shared, self.local(population.members))
        fitness, metrics = score(self.local(keys), local)
        return self.gather(fitness), jax.tree.map(partial(jax.lax.psum, axis_name=AXIS), metrics)


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
    placed so; a state on one device would make the second call recompile).
    An online ES's inner states stay split over the devices
    (:class:`~lrne.genome.Local`): its ``num_particles`` must then be a multiple
    of the number of devices where they are carried one per particle (TES).

    Example:
        >>> step = jax.jit(lrne.distributed.sharded_generation_step(strategy, task, 512))
    """
    mesh = population_mesh() if mesh is None else mesh
    if mesh.axis_names != (AXIS,):
        raise ValueError(f"mesh must be 1-D with the axis name {AXIS!r}, got {mesh.axis_names}")
    _check_divides(population_size, mesh.devices.size, "population_size")
    num_devices = mesh.devices.size
    step = generation_step(strategy, ShardedTask(task, num_devices))

    def sharded_step(state: PyTree, key: jax.Array) -> tuple[PyTree, Metrics]:
        for path, box in jax.tree_util.tree_flatten_with_path(state, is_leaf=is_local)[0]:
            for leaf in jax.tree.leaves(box) if is_local(box) else ():
                _check_divides(leaf.shape[0], num_devices, f"state{jax.tree_util.keystr(path)}")
        specs = jax.tree.map(_spec, state, is_leaf=is_local)
        # Every device runs the whole step on replicated state and its part of
        # the Local boxes; only the gathers in ShardedTask cross devices.
        # check_vma=False: tasks are written for one device, and their loop
        # carries start from constants.
        return jax.shard_map(
            step,
            mesh=mesh,
            in_specs=(specs, PartitionSpec()),
            out_specs=(specs, PartitionSpec()),
            check_vma=False,
        )(state, key)

    return sharded_step
