"""Persistent ES (PES), an unbiased online estimator over truncated unrolls.

Vicol, Metz, Sohl-Dickstein 2021, *Unbiased Gradient Estimation in Unrolled
Computation Graphs with Persistent Evolution Strategies* (arXiv 2112.13835), as
compared in Li, Harrison, Sohl-Dickstein, Smith, Metz 2023, *Noise-Reuse in
Online Evolution Strategies* (arXiv 2304.12180): every window draws a fresh
ε_k, each sign carries its own inner state, and the estimate multiplies the sum
ξ = Σ_k ε_k of the particle's noise since its episode began, ĝ ∝ ξ·(F⁺ − F⁻).
Unbiased; its variance grows with the number of windows in ξ, which is why
NRES, with one ε per episode, does better.

With ``noise_rank`` r > 0, ξ of a 2-D weight is kept as the concatenation of
the T/W window factors (rank r·T/W, one slot per window of the episode), never
as a particle × parameters array.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from lrne.genome import LowRank, PyTree
from lrne.perturb import is_lowrank
from lrne.strategies.online.base import Estimator, online_es, select


def every_window(restart: jax.Array) -> jax.Array:
    """Noise is renewed for every particle every window."""
    return jnp.ones_like(restart)


def empty_sum(noise: PyTree, num_windows: int) -> PyTree:
    """ξ = 0, shaped like ``noise`` with room for ``num_windows`` low-rank draws."""

    def empty(node: Any) -> Any:
        if is_lowrank(node):
            grow = lambda x: jnp.zeros((x.shape[0], num_windows * x.shape[1], x.shape[2]), x.dtype)
            return LowRank(grow(node.U), grow(node.V))
        return jnp.zeros_like(node)

    return jax.tree.map(empty, noise, is_leaf=is_lowrank)


def accumulate(xi: PyTree, noise: PyTree, slot: jax.Array, restart: jax.Array) -> PyTree:
    """ξ ← (restart ? 0 : ξ) + ε; a low-rank ε is written into window ``slot``'s factors."""

    def add(acc: Any, eps: Any) -> Any:
        if is_lowrank(eps):
            rank = eps.U.shape[1]
            write = lambda buf, x, s: jax.lax.dynamic_update_slice(buf, x, (s * rank, 0))
            factor = lambda a, e: jax.vmap(write)(select(restart, jnp.zeros_like(a), a), e, slot)
            return LowRank(factor(acc.U, eps.U), factor(acc.V, eps.V))
        return select(restart, jnp.zeros_like(acc), acc) + eps

    return jax.tree.map(add, xi, noise, is_leaf=is_lowrank)


def the_sum(noise: PyTree, xi: PyTree) -> PyTree:
    """The estimate multiplies ξ, the noise summed since the episode began."""
    del noise
    return xi


PES = Estimator(renews=every_window, multiplies=the_sum, init_memory=empty_sum, remember=accumulate)
"""PES's hooks: fresh ε every window; the estimate multiplies ξ, their sum."""


pes = functools.partial(online_es, PES)
"""``pes(num_particles, sigma, optimizer, truncation_length, horizon, noise_rank=0,
dense_noise=())``: persistent ES with step-unlocked particles (Vicol et al.
2021, arXiv 2112.13835), :func:`~lrne.strategies.online.base.online_es` with
the :data:`PES` hooks; the state's ``accumulated`` is ξ (under
``noise_rank=r``, of rank r·T/W)."""
