"""Per-member parameter perturbations, dense or low-rank, as pytrees.

A perturbation pytree mirrors a ``params`` collection. Each entry is either a
dense array δ of the param's shape, or, for a 2-D param (m×n) under low-rank
noise, a :class:`~lrne.genome.LowRank` ``(U (r, m), V (r, n))`` meaning
δ = Uᵀ·V. With U, V standard normal and U scaled by ``sigma / sqrt(r)``, each
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

from lrne.genome import Drawn, LowRank, PyTree, is_weight_matrix


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


def sample(key: jax.Array, params: PyTree, sigma: float, noise_rank: int) -> PyTree:
    """One member's perturbation δ for ``params`` (a params collection).

    ``noise_rank=0``: dense Gaussian noise of std sigma on every leaf.
    ``noise_rank=r``: 2-D weight matrices (:func:`lrne.genome.is_weight_matrix`:
    a ``kernel`` or ``embedding``, or a factor A, B of one) get
    δ = (sigma/√r)·UᵀV with U, V ~ N(0, 1) of shapes (r, m), (r, n); other
    leaves (biases, norms, conv kernels, any other 2-D param, which no layer
    multiplies by) get dense noise.
    """
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(paths_leaves))
    out = []
    for (path, leaf), k in zip(paths_leaves, keys, strict=True):
        if noise_rank > 0 and is_weight_matrix(path, leaf):
            key_u, key_v = jax.random.split(k)
            m, n = leaf.shape
            scale = sigma / math.sqrt(noise_rank)
            u = scale * jax.random.normal(key_u, (noise_rank, m), leaf.dtype)
            v = jax.random.normal(key_v, (noise_rank, n), leaf.dtype)
            out.append(LowRank(u, v))
        else:
            out.append(gaussian_noise(k, leaf.shape, leaf.dtype, sigma))
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
    delta = jax.vmap(lambda k: sample(k, params, d.sigma, d.noise_rank))(d.key)

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


def weighted_sum(weights: jax.Array, perturbations: PyTree) -> PyTree:
    """Σ_i weights_i · δ_i over a population of perturbations (leading axis P).

    Low-rank entries are contracted as (U·diag(w))ᵀ·V over the stacked (P·r)
    axis, forming only the m×n result, never a P×m×n array.
    """

    def combine(node: Any) -> jax.Array:
        if is_lowrank(node):
            u, v = node.U, node.V  # (P, r, m), (P, r, n)
            scaled = (u * weights[:, None, None]).reshape(-1, u.shape[-1])
            return scaled.T @ v.reshape(-1, v.shape[-1])
        return jnp.tensordot(weights, node, axes=1)

    return jax.tree.map(combine, perturbations, is_leaf=is_lowrank)


def apply(params: PyTree, perturbation: PyTree) -> PyTree:
    """params + δ for one member (dense): for export and tests, not evaluation."""
    add = lambda delta, leaf: leaf + (delta.dense() if is_lowrank(delta) else delta)
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
