"""Truncated ES (TES), a biased online estimator over truncated unrolls.

As compared in Li, Harrison, Sohl-Dickstein, Smith, Metz 2023, *Noise-Reuse in
Online Evolution Strategies* (arXiv 2304.12180): every window draws a fresh ε
and both signs restart from a shared state that an unperturbed copy of the
particle carries from window to window; ĝ ∝ ε·(F⁺ − F⁻). It ignores how θ
shaped the state the window starts from, so where the state carries θ's effect
it is biased; its variance does not grow with the episode.

Three copies of each particle are unrolled, [unperturbed, +δ, −δ], next to
each other (so a device of a split task holds all of a particle's copies with
its shared state); the unperturbed copy is added by the evaluation hook and is
not part of the population or its fitness.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lrne.genome import PyTree
from lrne.strategies.online.base import Estimator, online_es
from lrne.strategies.online.pes import every_window


def shared_state(tree: PyTree) -> PyTree:
    """One carried inner state per particle, shared by both signs."""
    return tree


def with_unperturbed_copy(members: PyTree, carried: PyTree) -> tuple[PyTree, PyTree]:
    """[0, δ_i, −δ_i] for each particle i, next to each other, from [δ; −δ]; every copy
    starts from the particle's shared state (with its key and step)."""

    def copies(x: jax.Array) -> jax.Array:
        signed = x.reshape((2, -1, *x.shape[1:]))  # (2, N, ...)
        three = jnp.concatenate([jnp.zeros_like(signed[:1]), signed])  # (3, N, ...)
        return jnp.moveaxis(three, 0, 1).reshape((-1, *x.shape[1:]))

    return jax.tree.map(copies, members), jax.tree.map(lambda x: jnp.repeat(x, 3, 0), carried)


def unperturbed_state(inner: PyTree, fitness: jax.Array) -> tuple[PyTree, jax.Array]:
    """Carry the unperturbed copy's state; the population's fitness is the signed
    copies', as [F⁺; F⁻]."""
    first = lambda x: x.reshape((-1, 3, *x.shape[1:]))[:, 0]
    signed = fitness.reshape(-1, 3)[:, 1:].T.reshape(-1)
    return jax.tree.map(first, inner), signed


TES = Estimator(
    renews=every_window,
    carry=shared_state,
    expand=with_unperturbed_copy,
    collect=unperturbed_state,
)
"""TES's hooks: fresh ε every window, both signs from one shared, unperturbed state."""


tes = functools.partial(online_es, TES)
"""``tes(num_particles, sigma, optimizer, truncation_length, horizon, noise_rank=0,
dense_noise=())``: truncated ES with step-unlocked particles, fresh ε per
window from a shared state, :func:`~lrne.strategies.online.base.online_es`
with the :data:`TES` hooks. Biased where the inner state carries θ's effect
(see the module docstring). Each generation unrolls 3N copies (N
unperturbed); under :func:`lrne.sharded_generation_step` N must then be a
multiple of the number of devices. The state's ``inner`` holds the N shared
states."""
