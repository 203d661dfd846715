"""Score a population a fixed number of members at a time: memory bounded by the chunk.

EGGROLL (*Evolution Strategies at the Hyperscale*, arXiv 2511.16652) evaluates
populations of hundreds of thousands of low-rank perturbed members. Their
perturbations are small (r·(m+n) numbers per weight), but the activations of
every member at once are not: :class:`Chunked` runs the task's
``evaluate_members`` on ``chunk_size`` members at a time inside one
``lax.map``, so the live activations are those of one chunk. Each member is
scored exactly as it would be unchunked (its own key, its own perturbation).

A population whose perturbations are not yet drawn (:class:`lrne.genome.Drawn`,
``lrne.es(..., store_noise=False)``) is put in evaluation form chunk by chunk
too, so its noise is drawn one chunk at a time: nothing population-sized
exists but the keys, the signs and the fitness.
"""

from __future__ import annotations

import jax

from lrne.errors import ArgumentError
from lrne.genome import Metrics, Population, PyTree
from lrne.tasks.base import Score, Scored, Task, TaskWrapper


class Chunked(TaskWrapper):
    """``task`` scoring its members ``chunk_size`` at a time, one chunk after another.

    Args:
        task: any task; its other hooks are used unchanged.
        chunk_size: members per chunk, >= 1; the population size must be a
            multiple of it. A population of one chunk is scored directly.

    Per-member metrics (summable by the task contract) are summed over chunks.
    The task's ``population_metrics`` see the whole population in evaluation
    form: one that reads members (Classification's ensemble) draws them all.
    """

    def __init__(self, task: Task, chunk_size: int) -> None:
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ArgumentError("chunk_size", f"chunk_size must be an int >= 1, got {chunk_size!r}")
        super().__init__(task)
        self.chunk_size = chunk_size

    def split(self, score: Score, keys: jax.Array, population: Population) -> Scored:
        """``score`` on each chunk of (keys, members) in turn; fitness joined, metrics summed."""
        num_members, size = keys.shape[0], self.chunk_size
        if num_members % size:
            raise ValueError(
                f"the population ({num_members} members) must be a multiple of chunk_size ({size})"
            )
        if num_members == size:
            return score(keys, population)
        by_chunk = lambda x: x.reshape(num_members // size, size, *x.shape[1:])

        def chunk(args: tuple[jax.Array, PyTree]) -> tuple[jax.Array, Metrics]:
            chunk_keys, members = args
            return score(chunk_keys, Population(population.shared, members))

        chunks = (by_chunk(keys), jax.tree.map(by_chunk, population.members))
        fitness, metrics = jax.lax.map(chunk, chunks)
        return fitness.reshape(num_members), jax.tree.map(lambda m: m.sum(axis=0), metrics)
