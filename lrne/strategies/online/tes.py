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

import jax
import jax.numpy as jnp
import optax

from lrne.genome import PyTree
from lrne.strategies.base import ScalarOrSchedule, Strategy
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


def tes(
    num_particles: int,
    sigma: ScalarOrSchedule,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int = 0,
    dense_noise: tuple[str, ...] = (),
) -> Strategy:
    """Truncated ES with step-unlocked particles: fresh ε per window from a shared state.

    Biased where the inner state carries θ's effect (see the module docstring).
    Each generation unrolls 3N copies (N unperturbed); under
    :func:`lrne.sharded_generation_step` N must then be a multiple of the number
    of devices.

    Args:
        num_particles: N; the population of each window has 2N members, [δ; −δ].
        sigma: perturbation std per parameter entry (absolute), > 0, or an optax schedule.
        optimizer: optax optimizer; it receives −ĝ (optax minimizes).
        truncation_length: W, steps unrolled per generation (one update each);
            must divide ``horizon``.
        horizon: T, the episode length of the task (``task.horizon``).
        noise_rank: 0 for dense noise, r > 0 for rank-r noise on every leaf of
            two or more axes (see :func:`lrne.es`).
        dense_noise: params given dense noise under ``noise_rank > 0``.

    Returns:
        A :class:`~lrne.strategies.base.Strategy` with
        :class:`~lrne.strategies.online.base.OnlineESState`, whose ``inner``
        holds the N shared states; see
        :func:`~lrne.strategies.online.base.online_es`.
    """
    return online_es(
        TES, num_particles, sigma, optimizer, truncation_length, horizon, noise_rank, dense_noise
    )
