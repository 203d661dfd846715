"""Typed genome nodes and the shared type aliases: the bottom of lrne.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037): a weight matrix is stored as factors
W = A·B of rank r and evolution searches the factors.

A genome is a flax variables pytree in which some param values are typed
nodes (``flax.struct.PyTreeNode``, the way flax's ``Partitioned`` boxes a
value), found with ``isinstance`` or ``is_leaf`` — never by dict keys:

- :class:`Factors` ``(A, B)``: a factorized weight, W = A·B contracted over the
  rank axis: A (..., r) · B (r, out) -> (..., out). lrne's layers store it.
- :class:`TransposedFactors` ``(At, B)``: the evaluation layout of a 2-D
  :class:`Factors`, At = Aᵀ, so that ``x·A`` reduces over contiguous memory.
  It exists only while a population is evaluated; genomes store
  :class:`Factors`.
- :class:`LowRank` ``(U, V)``: a low-rank perturbation δ = Uᵀ·V of a 2-D
  param (m×n), U (r, m), V (r, n), stored rank-major.
- :class:`Drawn` ``(key, sign)``: a population's perturbations before they are
  drawn, a key and a sign per member (:func:`lrne.perturb.draw` draws them).

Outside genomes, :class:`Local` boxes per-member strategy state (an online
ES's inner states) that a sharded step keeps split over devices.

This module imports nothing from the rest of lrne.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
PyTree = Any
Metrics = dict[str, jax.Array]

# Param names that hold a weight matrix (a flax Dense/Conv kernel, an Embed table).
FACTORIZABLE = ("kernel", "embedding")


class Factors(struct.PyTreeNode):
    """A factorized weight W = A·B: A (..., r), B (r, out); no frozen base matrix."""

    A: Array
    B: Array

    @property
    def rank(self) -> int:
        return self.B.shape[0]

    def dense(self) -> Array:
        """W = A·B, contracted over the rank axis."""
        return jnp.tensordot(self.A, self.B, axes=1)


class TransposedFactors(struct.PyTreeNode):
    """The evaluation layout of a 2-D :class:`Factors`: At = Aᵀ (r, in), B (r, out)."""

    At: Array
    B: Array

    def dense(self) -> Array:
        return self.At.T @ self.B


class TransposedKernel(struct.PyTreeNode):
    """The evaluation layout of a thin dense kernel of an lrne layer: Wt = Wᵀ (out, in)."""

    Wt: Array

    def dense(self) -> Array:
        return self.Wt.T


class LowRank(struct.PyTreeNode):
    """A low-rank perturbation δ = Uᵀ·V: U (r, m), V (r, n).

    The param it perturbs has m·n entries and two or more axes, read as an m×n
    matrix (its leading axes by the rest: :func:`lrne.perturb.matrix_split`);
    ``dense()`` gives that matrix, :func:`lrne.perturb.dense` the param's shape.
    """

    U: Array
    V: Array

    def dense(self) -> Array:
        return self.U.T @ self.V

    def __neg__(self) -> LowRank:
        return LowRank(-self.U, self.V)


class Drawn(struct.PyTreeNode):
    """A population's perturbations, not yet drawn: member i's δ is
    ``sign[i] · lrne.perturb.sample(key[i], params, sigma[i], noise_rank, dense_noise)``.

    EGGROLL (arXiv 2511.16652) regenerates noise from seeds instead of storing
    it. A population that carries :class:`Drawn` holds a key and a sign per
    member; its perturbations are drawn where they are used
    (:func:`lrne.perturb.draw`): chunk by chunk under
    :class:`lrne.tasks.Chunked`, and again for the update.
    """

    key: Array  # (P,) typed keys; antithetic pairs share one
    sign: Array  # (P,) +1.0 or -1.0
    sigma: Array  # (P,) the noise std of the generation (a schedule's value)
    noise_rank: int = struct.field(pytree_node=False)
    dense_noise: frozenset[str] = struct.field(pytree_node=False, default=frozenset())


class Population(NamedTuple):
    """A population as shared variables plus per-member variables: one shape for every strategy.

    ``shared`` has no member axis (ES: ``{"params": mean}``; GA and Metropolis:
    ``{}``); every leaf of ``members`` has a leading member axis (ES:
    ``{"perturb": δ}``; GA: the members' whole variables). Member i is
    ``shared`` overlaid with ``members[i]``
    (:func:`lrne.nn.perturbed.member_variables`).
    """

    shared: PyTree
    members: PyTree

    @property
    def size(self) -> int:
        """Number of members (the leading axis of ``members``)."""
        return jax.tree.leaves(self.members)[0].shape[0]

    def select(self, index: Any) -> Population:
        """Members ``index`` (an int array or a slice); the shared part is kept whole."""
        return Population(self.shared, jax.tree.map(lambda x: x[index], self.members))

    def slice(self, start: Any, size: int) -> Population:
        """``size`` members from ``start`` (traced start allowed)."""
        take = lambda x: jax.lax.dynamic_slice_in_dim(x, start, size)
        return Population(self.shared, jax.tree.map(take, self.members))


class Local(struct.PyTreeNode):
    """A box for per-member state that stays where its members are evaluated.

    Every leaf of ``value`` has a leading member axis (e.g. an online ES's
    inner states). Under :func:`lrne.sharded_generation_step` each device keeps
    only its contiguous part of that axis (:func:`lrne.distributed.replicate`
    places it so), and the step never gathers it; on one device it is the
    whole value. Found with ``isinstance``, like the other typed nodes.
    """

    value: PyTree


def is_variables(tree: Any) -> bool:
    """A flax variables dict: a mapping with a ``params`` collection."""
    return isinstance(tree, Mapping) and "params" in tree


def params_of(genome: PyTree) -> PyTree:
    """What a strategy searches in a genome: the ``params`` collection of flax
    variables, or the whole pytree (a raw array, a dict of arrays)."""
    return genome["params"] if is_variables(genome) else genome


def with_params(genome: PyTree, params: PyTree) -> PyTree:
    """``genome`` with :func:`params_of` replaced by ``params`` (the inverse)."""
    return {**genome, "params": params} if is_variables(genome) else params


def is_local(x: Any) -> bool:
    """``is_leaf`` for tree maps that treat a :class:`Local` box as one unit."""
    return isinstance(x, Local)


def is_node(x: Any) -> bool:
    """``is_leaf`` for tree maps that treat every typed genome node as one unit."""
    return isinstance(x, Factors | TransposedFactors | TransposedKernel | LowRank)


def as_dense(x: Any) -> Any:
    """A typed node's dense value; any other leaf as it is."""
    return x.dense() if is_node(x) else x


def materialize(params: PyTree) -> PyTree:
    """Replace every factorized weight by its product A·B.

    The result is the params pytree of the same architecture at ``rank=0``:
    applying the dense model to it gives the factorized model's outputs (within
    float tolerance). Use it to export or inspect a genome, never inside
    population evaluation.
    """
    return jax.tree.map(as_dense, params, is_leaf=is_node)


def layer_rank(rank: int, fan_in: int, fan_out: int) -> int:
    """The rank a model gives one layer: ``rank`` where it is below min(in, out).

    A factorization at rank >= min(in, out) has more parameters than the dense
    matrix and no less expressivity, so such layers (e.g. a 3-action output
    head at rank 4) stay dense.
    """
    return rank if rank < min(fan_in, fan_out) else 0


def leaf_name(path: tuple) -> str:
    """The last key of a pytree path, as a string."""
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", getattr(last, "idx", last))))


def param_name(path: tuple) -> str:
    """The name of the flax param a leaf belongs to: the last dict key of its path.

    For a plain param it is the leaf's own name; for the factor ``A`` of a
    :class:`Factors` stored as ``kernel`` it is ``"kernel"``.
    """
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return str(names[-1]) if names else ""


def is_weight_matrix(path: tuple, leaf: Any) -> bool:
    """A 2-D weight a layer multiplies by: a ``kernel``/``embedding`` matrix or a factor of one.

    Such leaves are what a layer can perturb with a low-rank δ inside its
    matmul; other 2-D params (a DenseGeneral bias of shape (2, 3), a learned
    position table added to the input) are not multiplied by anything.
    """
    return jnp.ndim(leaf) == 2 and param_name(path) in FACTORIZABLE


def path_str(path: tuple) -> str:
    """A pytree path as 'Dense_0/kernel/A'."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def factorize(dense_params: PyTree, rank: int) -> PyTree:
    """Truncated-SVD factorization of every kernel and embedding table.

    Each ``kernel``/``embedding`` leaf with ndim >= 2 is reshaped to a matrix
    (all axes but the last, by the last) and replaced by :class:`Factors` with
    A = U_r·sqrt(S_r), B = sqrt(S_r)·V_rᵀ, the best rank-r approximation in
    Frobenius norm. Following :func:`layer_rank`, a matrix whose min(in, out)
    is not above ``rank`` stays dense, so the result has the structure of the
    same lrne model built with ``rank``.

    Args:
        dense_params: params of a model at ``rank=0``.
        rank: target rank, >= 1.

    Returns:
        The factorized params pytree.
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"factorize: rank must be an int >= 1, got {rank!r}")

    def split(path: tuple, leaf: Array) -> Any:
        if leaf_name(path) not in FACTORIZABLE or leaf.ndim < 2:
            return leaf
        rows, cols = math.prod(leaf.shape[:-1]), leaf.shape[-1]
        r = layer_rank(rank, rows, cols)
        if r == 0:
            return leaf
        u, s, vt = jnp.linalg.svd(leaf.reshape(rows, cols), full_matrices=False)
        root = jnp.sqrt(s[:r])
        a = (u[:, :r] * root).reshape(*leaf.shape[:-1], r)
        return Factors(a, root[:, None] * vt[:r])

    return jax.tree_util.tree_map_with_path(split, dense_params)


def count_params(params: PyTree) -> int:
    """Number of scalars in the genome."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def genome_bytes(params: PyTree) -> int:
    """Bytes the genome occupies (sum of leaf sizes times item sizes)."""
    return sum(
        math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(params)
    )


def evaluation_layout(params: PyTree, thin_kernels: frozenset[str] = frozenset()) -> PyTree:
    """Relayout for evaluation: each 2-D :class:`Factors` becomes :class:`TransposedFactors`.

    ``x·A`` then reduces over contiguous memory (measured on XLA:CPU for a
    rank-4 400-256-256-3 MLP at 256 members: 3x faster per step). XLA does not
    hoist the transpose out of a rollout loop by itself, so evaluators apply
    this once per generation. Only typed factor nodes change, which only lrne's
    layers store, and the thin dense kernels whose paths (``'Dense_2/kernel'``)
    are in ``thin_kernels``: those of lrne's own layers, found by tracing the
    model (:func:`lrne.nn.layers.thin_kernels`), which become
    :class:`TransposedKernel` (policy heads: measured 16% of a factorized GA
    generation on Breakout). So a stock flax layer never sees the relayout.
    """

    def visit(path: tuple, node: Any) -> Any:
        if isinstance(node, Factors) and node.A.ndim == 2:
            return TransposedFactors(node.A.T, node.B)
        if path_str(path) in thin_kernels and jnp.ndim(node) == 2:
            return TransposedKernel(node.T)
        return node

    return jax.tree_util.tree_map_with_path(visit, params, is_leaf=is_node)
