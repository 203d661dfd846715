"""Per-member parameter perturbations, dense or low-rank, as pytrees.

A perturbation pytree mirrors a ``params`` collection. Each entry is either a
dense array δ of the param's shape, or, for a param of two or more axes under
low-rank noise, a :class:`~lrne.genome.LowRank` ``(U (r, m), V (r, n))`` meaning
δ = Uᵀ·V reshaped to the param's shape: the param is read as an m×n matrix, its
first k axes by the rest (:func:`matrix_split`: the k that makes m + n smallest,
which for a Dense, Conv or ConvTranspose kernel or an attention projection is
the (∏ in-axes × ∏ out-axes) matrix the layer multiplies by). Which leaves get
low-rank noise depends on their shape alone, never on their names; the layer
that consumes a leaf applies its δ (:mod:`lrne.nn.perturbed`), and a δ no layer
consumed is an error. With U, V standard normal and U scaled by ``sigma / sqrt(r)``, each
entry of δ has mean 0 and variance sigma² (EGGROLL, "Evolution Strategies at
the Hyperscale", arXiv 2511.16652). A population shares one base W: low-rank
terms are added inside the forward pass as ``x·Uᵀ·V`` (see
:mod:`lrne.nn.perturbed`), so a member's dense W + δ is never formed while
evaluating.

U and V are stored rank-major so that ``x·Uᵀ`` reduces over contiguous memory
and ``h·V`` is vectorized over the output axis.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from lrne.genome import Drawn, LowRank, PyTree, path_str


def member_leaf_keys(key: jax.Array, num_leaves: int, member: jax.Array) -> jax.Array:
    """Keys (num_leaves,) of one member's mutation: ``fold_in(split(key, num_leaves)[i],
    member)`` for leaf i, computed as one vectorized hash (a ``fold_in`` per leaf
    compiles a hash loop each; the keys are the same, bit for bit)."""
    return jax.vmap(jax.random.fold_in, (0, None))(jax.random.split(key, num_leaves), member)


def gaussian_noise(
    key: jax.Array, shape: tuple[int, ...], dtype: Any, scale: jax.typing.ArrayLike
) -> jax.Array:
    """``scale × N(0, 1)`` of ``shape``, drawn so that ``x + noise`` has one set of bits.

    XLA:CPU contracts ``x + a·b`` into a fused multiply-add wherever one fusion
    holds both, and a program whose population is split over devices fuses
    the draw differently from one that is not (each device also slices its
    members out of it). With ``a·b`` rounded in one program and exact in the
    other, a mutated member differed by an ulp between 1 and 2 devices.
    Rounding ``scale`` and the draw each to half the significand (12 of
    float32's 24 bits) makes their product exact, so the sum is rounded once,
    the same way, fused or not. Each draw moves by under 2⁻¹² of its value.
    """
    info = jnp.finfo(dtype)
    bits = (info.nmant + 1) // 2 - 1

    def halve(v: jax.Array) -> jax.Array:
        return jax.lax.reduce_precision(v, exponent_bits=info.nexp, mantissa_bits=bits)

    return halve(jnp.asarray(scale, dtype)) * halve(jax.random.normal(key, shape, dtype))


def is_lowrank(node: Any) -> bool:
    return isinstance(node, LowRank)


def matrix_split(shape: tuple[int, ...]) -> int:
    """How many leading axes of a param form the rows of its low-rank matricization.

    The k in [1, ndim) that minimizes m + n, m = ∏ shape[:k], n = ∏ shape[k:]:
    the fewest numbers per rank (r·(m + n)), and no more than the split of
    the layer that consumes the param (a DenseGeneral's in-axes by its
    features, a Conv kernel's window and in-channels by its out-channels).
    Ties go to the larger k. Depends on the shape alone, so every program,
    replay and device draws the same noise.
    """
    candidates = range(1, len(shape))
    return min(candidates, key=lambda k: (math.prod(shape[:k]) + math.prod(shape[k:]), -k))


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(m, n): the matrix a param of ``shape`` is read as by low-rank noise."""
    k = matrix_split(shape)
    return math.prod(shape[:k]), math.prod(shape[k:])


def dense_noise_match(path: tuple, names: frozenset[str]) -> bool:
    """Whether a param's path (``'Dense_0/kernel'``) is named in ``names``: the whole
    path, or its end after a ``/`` (``'kernel'``, ``'Dense_0/kernel'``)."""
    printable = path_str(path)
    return any(printable == n or printable.endswith("/" + n) for n in names)


def sample(
    key: jax.Array,
    params: PyTree,
    sigma: jax.typing.ArrayLike,
    noise_rank: int,
    dense_noise: frozenset[str] = frozenset(),
) -> PyTree:
    """One member's perturbation δ for ``params`` (any pytree: a params collection,
    a dict, a raw array).

    ``noise_rank=0``: dense Gaussian noise of std sigma on every leaf.
    ``noise_rank=r``: every leaf with two or more axes gets
    δ = (sigma/√r)·UᵀV with U, V ~ N(0, 1) of shapes (r, m), (r, n)
    (:func:`matrix_shape`), whatever its name; 0-D and 1-D leaves (biases,
    norms) and the leaves named in ``dense_noise`` (:func:`dense_noise_match`)
    get dense noise.
    """
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(paths_leaves))
    # Row i: split(keys[i]), the (U, V) keys of a low-rank leaf: one vectorized hash
    # where a split per leaf compiles a hash loop each (same keys, bit for bit).
    pairs = jax.vmap(jax.random.split)(keys)
    out = []
    for i, (path, leaf) in enumerate(paths_leaves):
        lowrank = noise_rank > 0 and jnp.ndim(leaf) >= 2
        if lowrank and not dense_noise_match(path, dense_noise):
            m, n = matrix_shape(leaf.shape)
            scale = sigma / math.sqrt(noise_rank)
            u = scale * jax.random.normal(pairs[i, 0], (noise_rank, m), leaf.dtype)
            v = jax.random.normal(pairs[i, 1], (noise_rank, n), leaf.dtype)
            out.append(LowRank(u, v))
        else:
            out.append(gaussian_noise(keys[i], jnp.shape(leaf), jnp.result_type(leaf), sigma))
    return jax.tree.unflatten(treedef, out)


def draw(perturbations: PyTree, params: PyTree) -> PyTree:
    """The perturbations (leading member axis) of ``params`` that a :class:`~lrne.genome.Drawn`
    stands for; anything else is returned as it is.

    Member i gets ``sign[i] · sample(key[i], params, sigma, noise_rank)``, bit for
    bit the δ (or its negation, U negated for a low-rank one) that the same key
    gives when drawn up front.
    """
    if not isinstance(perturbations, Drawn):
        return perturbations
    d = perturbations
    draw_one = lambda k, sigma: sample(k, params, sigma, d.noise_rank, d.dense_noise)
    delta = jax.vmap(draw_one)(d.key, d.sigma)

    def signed(node: Any) -> Any:
        x = node.U if is_lowrank(node) else node
        x = x * d.sign.astype(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return LowRank(x, node.V) if is_lowrank(node) else x

    return jax.tree.map(signed, delta, is_leaf=is_lowrank)


def negate(perturbation: PyTree) -> PyTree:
    """-δ; for a low-rank δ = UᵀV only U is negated."""
    return jax.tree.map(lambda d: -d, perturbation, is_leaf=is_lowrank)


def antithetic(perturbations: PyTree) -> PyTree:
    """[δ; −δ] along the member axis: the antithetic population of N draws (2N members)."""
    return jax.tree.map(
        lambda pos, neg: jnp.concatenate([pos, neg]), perturbations, negate(perturbations)
    )


def weighted_sum(weights: jax.Array, perturbations: PyTree, params: PyTree) -> PyTree:
    """Σ_i weights_i · δ_i over a population of perturbations (leading axis P) of ``params``.

    Low-rank entries are contracted as (U·diag(w))ᵀ·V over the stacked (P·r)
    axis, forming only the m×n result (reshaped to the param's shape), never a
    P×m×n array.
    """

    def combine(node: Any, param: jax.Array) -> jax.Array:
        if is_lowrank(node):
            u, v = node.U, node.V  # (P, r, m), (P, r, n)
            scaled = (u * weights[:, None, None]).reshape(-1, u.shape[-1])
            return (scaled.T @ v.reshape(-1, v.shape[-1])).reshape(jnp.shape(param))
        return jnp.tensordot(weights, node, axes=1)

    return jax.tree.map(combine, perturbations, params, is_leaf=is_lowrank)


def dense(delta: Any, param: jax.Array) -> jax.Array:
    """One member's δ of ``param`` as a dense array of the param's shape."""
    return delta.dense().reshape(jnp.shape(param)) if is_lowrank(delta) else delta


def apply(params: PyTree, perturbation: PyTree) -> PyTree:
    """params + δ for one member (dense): for export, black-box evaluation and tests,
    never inside a model's population evaluation."""
    add = lambda delta, leaf: leaf + dense(delta, leaf)
    return jax.tree.map(add, perturbation, params, is_leaf=is_lowrank)


def matmul(x: jax.Array, delta: LowRank) -> jax.Array:
    """``x·δ`` over the last axis of x for a low-rank δ, without forming δ."""
    # Plain dots: under vmap with a shared base W these become batched dots,
    # measured faster on XLA:CPU than multiply-sum when δ is a runtime operand
    # (rank 1, 1024 members, 400-256-256-3 MLP: 1.01 vs 2.49 ms per step).
    return (x @ delta.U.T) @ delta.V


def matmul_t(x: jax.Array, delta: LowRank) -> jax.Array:
    """``x·δᵀ`` over the last axis of x (a tied decoder's ``x·Eᵀ`` term)."""
    return (x @ delta.V.T) @ delta.U


def rows(delta: LowRank, ids: jax.Array) -> jax.Array:
    """Rows ``ids`` of δ = UᵀV: (..., n), without forming δ."""
    return jnp.moveaxis(jnp.take(delta.U, ids, axis=1), 0, -1) @ delta.V


def split(perturbation: PyTree) -> tuple[PyTree, PyTree]:
    """(dense part, low-rank part): each a pytree of the same structure, ``None`` elsewhere."""
    dense = jax.tree.map(lambda d: None if is_lowrank(d) else d, perturbation, is_leaf=is_lowrank)
    lowrank = jax.tree.map(lambda d: d if is_lowrank(d) else None, perturbation, is_leaf=is_lowrank)
    return dense, lowrank
