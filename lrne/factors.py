"""Pure maps between factor pytrees and dense pytrees, and genome sizes.

A factorized weight is a dict ``{"A": A, "B": B}`` standing where the dense
param would be (see :mod:`lrne.nn.layers`); its dense value is A·B contracted
over the rank axis: A (..., r) · B (r, out) -> (..., out).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from lrne.nn.models import layer_rank

PyTree = Any

FACTORIZABLE = ("kernel", "embedding")


def is_factors(node: Any) -> bool:
    """True for a factorized weight: a mapping with exactly the keys A and B."""
    return isinstance(node, Mapping) and set(node.keys()) == {"A", "B"}


def materialize(params: PyTree) -> PyTree:
    """Replace every factor pair by its product A·B.

    The result is the params pytree of the same architecture at ``rank=0``:
    applying the dense model to it gives the factorized model's outputs (within
    float tolerance). Use it to export or inspect a genome, never inside
    population evaluation.
    """

    def product(node: Any) -> Any:
        if is_factors(node):
            return jnp.tensordot(node["A"], node["B"], axes=1)
        return node

    return jax.tree.map(product, params, is_leaf=is_factors)


def _leaf_name(path: tuple) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def factorize(dense_params: PyTree, rank: int) -> PyTree:
    """Truncated-SVD factorization of every kernel and embedding table.

    Each ``kernel``/``embedding`` leaf with ndim >= 2 is reshaped to a matrix
    (all axes but the last, by the last) and replaced by ``{"A", "B"}`` with
    A = U_r·sqrt(S_r), B = sqrt(S_r)·V_rᵀ, the best rank-r approximation in
    Frobenius norm. Following :func:`lrne.nn.layer_rank`, a matrix whose
    min(in, out) is not above ``rank`` stays dense, so the result has the
    structure of the same model built with ``rank``.

    Args:
        dense_params: params of a model at ``rank=0``.
        rank: target rank, >= 1.

    Returns:
        The factorized params pytree.
    """
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"factorize: rank must be an int >= 1, got {rank!r}")

    def split(path: tuple, leaf: jax.Array) -> Any:
        if _leaf_name(path) not in FACTORIZABLE or leaf.ndim < 2:
            return leaf
        rows, cols = math.prod(leaf.shape[:-1]), leaf.shape[-1]
        r = layer_rank(rank, rows, cols)
        if r == 0:
            return leaf
        u, s, vt = jnp.linalg.svd(leaf.reshape(rows, cols), full_matrices=False)
        root = jnp.sqrt(s[:r])
        a = (u[:, :r] * root).reshape(*leaf.shape[:-1], r)
        return {"A": a, "B": root[:, None] * vt[:r]}

    return jax.tree_util.tree_map_with_path(split, dense_params)


def count_params(params: PyTree) -> int:
    """Number of scalars in the genome."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def genome_bytes(params: PyTree) -> int:
    """Bytes the genome occupies (sum of leaf sizes times item sizes)."""
    return sum(
        math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(params)
    )
