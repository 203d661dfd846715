"""Subspace (sparse) mutations: each child perturbs only a random subset of parameters.

Whitaker & Whitley 2023, *Sparse Mutation Decompositions: Fine Tuning Deep
Neural Networks with Subspace Evolution* (arXiv 2302.05832). Their code is not
public; lrne's definition:

- Every entry of every mutable leaf (a dense kernel, a bias, each factor A and
  B of a factorized weight) is in a child's subspace independently with
  probability ``density``; entries outside it get no noise, entries inside get
  the unchanged Gaussian noise of the strategy. So a child moves in an
  expected ``density`` fraction of the coordinates, at the same per-coordinate
  scale as a dense mutation.
- ``"dynamic"``: a fresh mask each generation for every child.
- ``"static"``: a child inherits its lineage's mask. A lineage starts when a
  child is born from an unmutated root (the initial or pretrained params); its
  descendants keep its mask for good.
- A mask is a pure function of a key (Bernoulli draws), regenerated when
  needed; no full-size mask is stored per member.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lrne.errors import ArgumentError
from lrne.genome import PyTree

MASKS = ("dynamic", "static")


def check_subspace(density: Any, mask: Any) -> None:
    if not isinstance(density, int | float) or not 0 < density <= 1:
        raise ArgumentError("density", f"density must be in (0, 1], got {density!r}")
    if mask not in MASKS:
        raise ArgumentError("mask", f"mask must be one of {MASKS}, got {mask!r}")


def subspace_mask(key: jax.Array, params: PyTree, density: float) -> PyTree:
    """A bool pytree shaped like ``params``: each entry True with probability ``density``.

    Leaf i draws from ``fold_in(key, i)``, so a mask depends only on the key and
    the params' structure.
    """
    leaves, treedef = jax.tree.flatten(params)
    masks = [
        jax.random.bernoulli(jax.random.fold_in(key, i), density, jnp.shape(leaf))
        for i, leaf in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, masks)


def lineage_ids(
    parent_lineage: jax.Array, generation: jax.Array, population_size: int, num_elites: int
) -> jax.Array:
    """Lineage of each child: the parent's, or a new id if the parent is a root (−1).

    New ids are unique over the run: generation·population_size + the child's slot.
    """
    fresh = generation * population_size + num_elites + jnp.arange(parent_lineage.shape[0])
    return jnp.where(parent_lineage < 0, fresh, parent_lineage).astype(jnp.int32)
