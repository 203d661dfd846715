"""Truncated ES (TES), a biased online estimator over truncated unrolls.

As compared in Li, Harrison, Sohl-Dickstein, Smith, Metz 2023, *Noise-Reuse in
Online Evolution Strategies* (arXiv 2304.12180): every window draws a fresh ε
and both signs restart from a shared state that an unperturbed copy of the
particle carries from window to window; ĝ ∝ ε·(F⁺ − F⁻). It ignores how θ
shaped the state the window starts from, so where the state carries θ's effect
it is biased; its variance does not grow with the episode.

Three copies of each particle are unrolled, [unperturbed; +δ; −δ]; the
unperturbed copy is added by the evaluation hook and is not part of the
population or its fitness.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lrne.genome import PyTree
from lrne.strategies.base import Strategy
from lrne.strategies.online.base import Estimator, online_es, stack
from lrne.strategies.online.pes import every_window


def shared_state(tree: PyTree) -> PyTree:
    """One carried inner state per particle, shared by both signs."""
    return tree


def with_unperturbed_copy(members: PyTree, inner: PyTree) -> tuple[PyTree, PyTree]:
    """[0; δ; −δ] from [δ; −δ], each copy starting from the particle's shared state."""
    half = jax.tree.leaves(members)[0].shape[0] // 2
    zero = jax.tree.map(lambda x: jnp.zeros_like(x[:half]), members)
    return stack(zero, members), stack(inner, inner, inner)


def unperturbed_state(inner: PyTree, fitness: jax.Array) -> tuple[PyTree, jax.Array]:
    """Carry the unperturbed copy's state; the population's fitness is the signed copies'."""
    num_particles = fitness.shape[0] // 3
    return jax.tree.map(lambda x: x[:num_particles], inner), fitness[num_particles:]


TES = Estimator(
    renews=every_window,
    carry=shared_state,
    expand=with_unperturbed_copy,
    collect=unperturbed_state,
)


def tes(
    num_particles: int,
    sigma: float,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int = 0,
) -> Strategy:
    """Truncated ES with step-unlocked particles: fresh ε per window from a shared state.

    Biased where the inner state carries θ's effect (see the module docstring).
    Each generation unrolls 3N copies (N unperturbed); under
    :func:`lrne.sharded_generation_step` N must then be a multiple of the number
    of devices.

    Args:
        num_particles: N; the population of each window has 2N members, [δ; −δ].
        sigma: perturbation std per parameter entry, > 0.
        optimizer: optax optimizer; it receives −ĝ (optax minimizes).
        truncation_length: W, steps unrolled per generation (one update each);
            must divide ``horizon``.
        horizon: T, the episode length of the task (``task.horizon``).
        noise_rank: 0 for dense noise, r > 0 for rank-r noise on 2-D weights.

    Returns:
        A :class:`~lrne.strategies.base.Strategy` with
        :class:`~lrne.strategies.online.base.OnlineESState`, whose ``inner``
        holds the N shared states; see
        :func:`~lrne.strategies.online.base.online_es`.
    """
    return online_es(TES, num_particles, sigma, optimizer, truncation_length, horizon, noise_rank)
