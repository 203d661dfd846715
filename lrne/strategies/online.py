"""Online evolution strategies over truncated unrolls: NRES, PES, TES and FullES.

Li, Harrison, Sohl-Dickstein, Smith, Metz 2023, *Noise-Reuse in Online
Evolution Strategies* (arXiv 2304.12180). The objective is the mean per-step
fitness of an unrolled system over a horizon of T steps,
L(θ) = (1/T) Σ_t f_t(s_t(θ), θ). Each of N particles keeps its own antithetic
pair of inner states (s⁺, s⁻) and its own step counter t ∈ [0, T), and every
generation unrolls all particles W steps (the truncation length) and updates θ
once. The estimators differ only in which noise a window uses and which noise
the estimate multiplies:

- **NRES** (noise-reuse ES): a particle keeps the same ε from its episode's
  first step to its last and resamples it when the episode ends;
  ĝ ∝ ε·(F⁺ − F⁻). Unbiased, and of the unbiased online estimators the one with
  the least variance.
- **PES** (persistent ES, Vicol, Metz, Sohl-Dickstein 2021): fresh ε_k every
  window, the estimate multiplies the sum ξ = Σ_k ε_k since the episode began.
  Unbiased.
- **TES** (truncated ES): fresh ε every window and both signs restart from a
  shared unperturbed state; biased (it ignores the effect of θ on the state).
- **FullES**: NRES with W = T, one update per full episode.

Here F± is the fitness summed over a particle's masked-in window steps, ε = δ/σ
and ĝ = Σ_i δ_i·(F⁺_i − F⁻_i) / (2σ²·n), with n the number of masked-in
(particle, step) pairs, so ĝ estimates ∇ of the Gaussian-smoothed L.

**Step-unlocked workers.** Particle i starts at a random multiple of W in
[0, T): its first episode is cut short to end after T − offset steps, so the
particles' positions in their episodes are spread over the horizon and a window
mixes early and late steps. Estimates from those first, shortened episodes are
biased (the state at offset is a fresh one); the first T − W steps, by which
every particle has started a real episode, are a burn-in whose gradients are
discarded. Without step-unlocking, all workers see the same steps at once,
which the paper shows costs NRES its advantage.

Noise may be low-rank (``noise_rank``): NRES then stores only r·(m+n) numbers
per 2-D weight and particle, and PES stores its sum ξ as the concatenation of
the window factors (rank r·T/W), never a particle × parameters array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from lrne import perturb
from lrne.perturb import Population
from lrne.strategies.base import Metrics
from lrne.strategies.checks import check_int, check_positive

PyTree = Any
METHODS = ("nres", "pes", "tes", "full")


class Unrollable(Protocol):
    """A task an online strategy can unroll W steps at a time.

    ``horizon``: T, the episode length. ``reset(keys)``: fresh inner states, one
    per key (leading axis). ``unroll(keys, population, inner, t, num_steps)``:
    advance each member's inner state ``num_steps`` steps under its variables
    (``population`` is a :class:`~lrne.perturb.Population`; ``t`` (M,) is each
    member's step in its episode) and return the new inner states and the
    per-step fitness (M, num_steps), higher is better. Members given the same
    key see the same randomness.
    """

    horizon: int

    def reset(self, keys: jax.Array) -> PyTree: ...

    def unroll(
        self, keys: jax.Array, population: Population, inner: PyTree, t: jax.Array, num_steps: int
    ) -> tuple[PyTree, jax.Array]: ...


class OnlineESState(NamedTuple):
    """State of an online ES.

    Attributes:
        mean: the variables dict ``{"params": θ, ...}``.
        opt_state: optimizer state for ``mean["params"]``.
        noise: each particle's current perturbation δ (leading axis N).
        accumulated: PES only: each particle's ξ since its episode began
            (low-rank leaves as T/W rank-r slots); ``None`` otherwise.
        inner: inner states, (2N, ...) as [+; −] (TES: the N shared states).
        t: (N,) each particle's step in its current episode.
        steps: steps unrolled per particle so far (burn-in clock).
        generation: updates so far.
    """

    mean: PyTree
    opt_state: optax.OptState
    noise: PyTree
    accumulated: PyTree
    inner: PyTree
    t: jax.Array
    steps: jax.Array
    generation: jax.Array


class OnlineStrategy(NamedTuple):
    """An online ES as pure functions of (task, state, key).

    ``init(key, params, task) -> state``.
    ``estimate(task, state, key) -> (state, gradient, metrics)``: unroll every
    particle one window and return the ascent-direction estimate ĝ of
    ∇L(θ) without changing θ (zero during burn-in).
    ``step(task, state, key) -> (state, metrics)``: ``estimate`` plus one
    optimizer update; what :func:`lrne.generation_step` calls.
    """

    init: Callable[[jax.Array, PyTree, Unrollable], OnlineESState]
    estimate: Callable[
        [Unrollable, OnlineESState, jax.Array], tuple[OnlineESState, PyTree, Metrics]
    ]
    step: Callable[[Unrollable, OnlineESState, jax.Array], tuple[OnlineESState, Metrics]]


def _where(mask: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """Per-member select: leaves carry the member axis first."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


def _stack(*trees: PyTree) -> PyTree:
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *trees)


def _slots(noise: PyTree, num_slots: int) -> PyTree:
    """Zeros shaped like ``noise`` with room for ``num_slots`` low-rank draws."""

    def empty(node: Any) -> Any:
        if perturb.is_lowrank(node):
            return {
                k: jnp.zeros((v.shape[0], num_slots * v.shape[1], v.shape[2]), v.dtype)
                for k, v in node.items()
            }
        return jnp.zeros_like(node)

    return jax.tree.map(empty, noise, is_leaf=perturb.is_lowrank)


def _accumulate(acc: PyTree, noise: PyTree, slot: jax.Array, restart: jax.Array) -> PyTree:
    """ξ ← (restart ? 0 : ξ) + ε, a low-rank ε written into window ``slot``."""

    def add(a: Any, e: Any) -> Any:
        if perturb.is_lowrank(e):
            rank = e["U"].shape[1]
            write = lambda buf, x, s: jax.lax.dynamic_update_slice(buf, x, (s * rank, 0))
            return {
                k: jax.vmap(write)(_where(restart, jnp.zeros_like(a[k]), a[k]), e[k], slot)
                for k in ("U", "V")
            }
        return _where(restart, jnp.zeros_like(a), a) + e

    return jax.tree.map(add, acc, noise, is_leaf=perturb.is_lowrank)


def online_es(
    method: str,
    num_particles: int,
    sigma: float,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int = 0,
) -> OnlineStrategy:
    """The shared machinery behind :func:`nres`, :func:`pes`, :func:`tes`, :func:`full_es`.

    Args:
        method: one of ``"nres"``, ``"pes"``, ``"tes"``, ``"full"``.
        num_particles: N antithetic pairs (2N inner states are unrolled).
        sigma: perturbation std per parameter entry, > 0.
        optimizer: optax optimizer; it receives -ĝ (optax minimizes).
        truncation_length: W, steps per window; must divide ``horizon``.
        horizon: T, the episode length of the task (``task.horizon``).
        noise_rank: 0 for dense noise, r > 0 for rank-r noise on 2-D weights.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_int("num_particles", num_particles, 1)
    check_int("truncation_length", truncation_length, 1)
    check_int("horizon", horizon, 1)
    check_int("noise_rank", noise_rank, 0)
    check_positive("sigma", sigma)
    if horizon % truncation_length:
        raise ValueError(
            f"truncation_length must divide horizon, got {truncation_length} and {horizon}"
        )
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer must be an optax GradientTransformation, got {optimizer!r}")
    window, num_windows = truncation_length, horizon // truncation_length
    burn_in = horizon - window
    particles = jnp.arange(num_particles)

    def check_task(task: Unrollable) -> None:
        if getattr(task, "horizon", None) != horizon:
            raise ValueError(
                f"task.horizon is {getattr(task, 'horizon', None)!r} but the strategy "
                f"was built with horizon={horizon}"
            )

    def draw(key: jax.Array, mean: PyTree) -> PyTree:
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, particles)
        return jax.vmap(lambda k: perturb.sample(k, mean["params"], sigma, noise_rank))(keys)

    def reset(task: Unrollable, key: jax.Array) -> PyTree:
        fresh = task.reset(jax.vmap(jax.random.fold_in, (None, 0))(key, particles))
        return fresh if method == "tes" else _stack(fresh, fresh)

    def init(key: jax.Array, params: PyTree, task: Unrollable) -> OnlineESState:
        check_task(task)
        if "params" not in params:
            raise ValueError("params must be a flax variables dict with a 'params' collection")
        key_offset, key_noise, key_inner = jax.random.split(key, 3)
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.result_type(x)), params)
        offsets = window * jax.random.randint(key_offset, (num_particles,), 0, num_windows)
        noise = draw(key_noise, params)
        accumulated = _slots(noise, num_windows) if method == "pes" else None
        return OnlineESState(
            mean=params,
            opt_state=optimizer.init(params["params"]),
            noise=noise,
            accumulated=accumulated,
            inner=reset(task, key_inner),
            t=offsets.astype(jnp.int32),
            steps=jnp.array(0, jnp.int32),
            generation=jnp.array(0, jnp.int32),
        )

    def estimate(
        task: Unrollable, state: OnlineESState, key: jax.Array
    ) -> tuple[OnlineESState, PyTree, Metrics]:
        check_task(task)
        key_noise, key_reset, key_unroll = jax.random.split(
            jax.random.fold_in(key, state.generation), 3
        )
        restart = state.t >= horizon
        t = jnp.where(restart, 0, state.t)
        paired = restart if method == "tes" else jnp.concatenate([restart, restart])
        inner = _where(paired, reset(task, key_reset), state.inner)

        fresh = draw(key_noise, state.mean)
        noise = _where(restart, fresh, state.noise) if method in ("nres", "full") else fresh
        accumulated = state.accumulated
        if method == "pes":
            accumulated = _accumulate(accumulated, noise, t // window, restart)

        keys = jax.vmap(jax.random.fold_in, (None, 0))(key_unroll, particles)
        signed = [noise, perturb.negate(noise)]
        copies = 2
        if method == "tes":
            signed.insert(0, jax.tree.map(jnp.zeros_like, noise))
            inner = _stack(inner, inner, inner)
            copies = 3
        population = Population(shared=state.mean, members={"perturb": _stack(*signed)})
        inner, fitness = task.unroll(
            jnp.tile(keys, copies), population, inner, jnp.tile(t, copies), window
        )
        if method == "tes":
            inner = jax.tree.map(lambda x: x[:num_particles], inner)
            fitness = fitness[num_particles:]

        mask = (state.steps + jnp.arange(window)) >= burn_in
        pos, neg = fitness[:num_particles], fitness[num_particles:]
        diff = jnp.sum(jnp.where(mask, pos - neg, 0.0), axis=1)
        finite = jnp.isfinite(diff)
        count = jnp.sum(finite) * jnp.sum(mask)
        weights = jnp.where(finite, diff, 0.0) / (2 * sigma**2 * jnp.maximum(count, 1))
        gradient = perturb.weighted_sum(weights, accumulated if method == "pes" else noise)

        state = state._replace(
            noise=noise,
            accumulated=accumulated,
            inner=inner,
            t=t + window,
            steps=state.steps + window,
        )
        all_finite = jnp.isfinite(fitness)
        metrics = {
            "fitness_mean": jnp.sum(jnp.where(all_finite, fitness, 0.0))
            / jnp.maximum(jnp.sum(all_finite), 1),
            "num_masked_in": count,
            "num_nonfinite": jnp.sum(~finite),
            "episodes_started": jnp.sum(restart),
        }
        return state, gradient, metrics

    def step(
        task: Unrollable, state: OnlineESState, key: jax.Array
    ) -> tuple[OnlineESState, Metrics]:
        state, gradient, metrics = estimate(task, state, key)
        params = state.mean["params"]
        descent = jax.tree.map(jnp.negative, gradient)
        updates, opt_state = optimizer.update(descent, state.opt_state, params)
        # During burn-in nothing is masked in: leave θ and the optimizer alone.
        use = metrics["num_masked_in"] > 0
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(use, a, b), new, old)
        state = state._replace(
            mean={**state.mean, "params": keep(optax.apply_updates(params, updates), params)},
            opt_state=keep(opt_state, state.opt_state),
            generation=state.generation + 1,
        )
        return state, {**metrics, "update_norm": jnp.where(use, optax.tree.norm(updates), 0.0)}

    return OnlineStrategy(init, estimate, step)


def nres(
    num_particles: int,
    sigma: float,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int = 0,
) -> OnlineStrategy:
    """Noise-reuse ES (Li et al. 2023, arXiv 2304.12180): one ε per particle episode.

    See :func:`online_es` for the arguments and the module docstring for the
    estimator.
    """
    return online_es(
        "nres", num_particles, sigma, optimizer, truncation_length, horizon, noise_rank
    )


def pes(
    num_particles: int,
    sigma: float,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int = 0,
) -> OnlineStrategy:
    """Persistent ES (Vicol et al. 2021, arXiv 2112.13835): fresh ε per window, ξ = Σ ε.

    See :func:`online_es` for the arguments.
    """
    return online_es("pes", num_particles, sigma, optimizer, truncation_length, horizon, noise_rank)


def tes(
    num_particles: int,
    sigma: float,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int = 0,
) -> OnlineStrategy:
    """Truncated ES: fresh ε per window from a shared unperturbed state (biased).

    See :func:`online_es` for the arguments.
    """
    return online_es("tes", num_particles, sigma, optimizer, truncation_length, horizon, noise_rank)


def full_es(
    num_particles: int,
    sigma: float,
    optimizer: optax.GradientTransformation,
    horizon: int,
    noise_rank: int = 0,
) -> OnlineStrategy:
    """FullES: antithetic ES with one update per full episode (NRES with W = T).

    See :func:`online_es` for the arguments.
    """
    return online_es("full", num_particles, sigma, optimizer, horizon, horizon, noise_rank)
