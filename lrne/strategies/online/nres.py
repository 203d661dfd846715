"""Noise-reuse ES (NRES) and FullES, online estimators over truncated unrolls.

Li, Harrison, Sohl-Dickstein, Smith, Metz 2023, *Noise-Reuse in Online
Evolution Strategies* (arXiv 2304.12180). NRES: a particle keeps the same ε
from its episode's first step to its last and draws a new one only when its
episode restarts; the estimate multiplies that ε, ĝ ∝ ε·(F⁺ − F⁻), each sign
carrying its own inner state. Unbiased, and of the unbiased online estimators
the one with the least variance. FullES is NRES with one window per episode
(W = T): antithetic ES with one update per full unroll.

With ``noise_rank`` r > 0, a particle's ε of a 2-D weight is stored as its
rank-r factors, r·(m + n) numbers, for the whole episode.

Example:
    >>> import jax, jax.numpy as jnp, optax, lrne
    >>> # an unrollable task: every one of the T = 8 steps scores f
    >>> task = lrne.tasks.Function(lambda x: -jnp.sum(x**2), jnp.ones(3), horizon=8)
    >>> strategy = lrne.nres(8, 0.1, optax.sgd(0.05), 2, task.horizon)  # W = 2
    >>> key = jax.random.key(0)
    >>> state = strategy.init(key, task.init_params(key), task)
    >>> state, metrics = jax.jit(lrne.generation_step(strategy, task))(state, key)
    >>> state.mean.shape  # the answer: the mean, updated once per window
    (3,)
"""

from __future__ import annotations

import functools

import jax
import optax

from lrne.strategies.base import ScalarOrSchedule, Strategy
from lrne.strategies.online.base import Estimator, online_es


def on_restart(restart: jax.Array) -> jax.Array:
    """Noise is renewed only for the particles whose episode restarts."""
    return restart


NRES = Estimator(renews=on_restart)
"""NRES's hooks: one ε per particle per episode (the defaults multiply ε itself)."""


nres = functools.partial(online_es, NRES)
"""``nres(num_particles, sigma, optimizer, truncation_length, horizon, noise_rank=0,
dense_noise=())``: noise-reuse ES with step-unlocked particles (Li et al. 2023,
arXiv 2304.12180), :func:`~lrne.strategies.online.base.online_es` with the
:data:`NRES` hooks; the arguments and the state are documented there."""


def full_es(
    num_particles: int,
    sigma: ScalarOrSchedule,
    optimizer: optax.GradientTransformation,
    horizon: int,
    noise_rank: int = 0,
    dense_noise: tuple[str, ...] = (),
) -> Strategy:
    """FullES: antithetic ES with one update per full episode; :func:`nres` with W = T.

    Every generation unrolls each particle's pair through a whole episode of T
    steps with one ε, so the estimate is the offline ES gradient of L(θ); the
    cost is one update per T steps. Particles are not step-unlocked (every
    offset is 0) and there is no burn-in.

    Args:
        num_particles: N; the population of each generation has 2N members, [δ; −δ].
        sigma: perturbation std per parameter entry (absolute), > 0, or an optax schedule.
        optimizer: optax optimizer; it receives −ĝ (optax minimizes).
        horizon: T, the episode length of the task (``task.horizon``), also the
            truncation length.
        noise_rank: 0 for dense noise, r > 0 for rank-r noise on every leaf of
            two or more axes (see :func:`lrne.es`).
        dense_noise: params given dense noise under ``noise_rank > 0``.

    Returns:
        ``nres(num_particles, sigma, optimizer, horizon, horizon, noise_rank)``.
    """
    return nres(num_particles, sigma, optimizer, horizon, horizon, noise_rank, dense_noise)
