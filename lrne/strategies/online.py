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


class Schedule(NamedTuple):
    """Static settings and pure bookkeeping of an online ES, shared by every front end.

    :func:`online_es` drives it with a task; :mod:`lrne.integrations.evosax`
    drives it from evosax's ``ask``/``tell``, where the user unrolls.
    """

    method: str
    num_particles: int
    sigma: float
    window: int
    horizon: int
    noise_rank: int

    @property
    def burn_in(self) -> int:
        """Steps whose estimates are discarded: until every shortened first episode ends."""
        return self.horizon - self.window

    @property
    def num_windows(self) -> int:
        return self.horizon // self.window

    def offsets(self, key: jax.Array) -> jax.Array:
        """Step-unlocked starting steps: random multiples of W in [0, T)."""
        draws = jax.random.randint(key, (self.num_particles,), 0, self.num_windows)
        return (self.window * draws).astype(jnp.int32)

    def draw(self, key: jax.Array, params: PyTree) -> PyTree:
        """Fresh noise for every particle (leading axis N), keyed by particle index."""
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(self.num_particles))
        sample = lambda k: perturb.sample(k, params, self.sigma, self.noise_rank)
        return jax.vmap(sample)(keys)

    def empty_accumulated(self, noise: PyTree) -> PyTree:
        return _slots(noise, self.num_windows) if self.method == "pes" else None

    def next_window(
        self, key: jax.Array, t: jax.Array, noise: PyTree, accumulated: PyTree, params: PyTree
    ) -> tuple[jax.Array, jax.Array, PyTree, PyTree]:
        """(restart, t, noise, accumulated) at the start of a window.

        A particle whose episode ended (t = T) restarts at t = 0. NRES and FullES
        draw new noise only then; PES and TES draw it every window, and PES adds
        it to ξ (cleared on restart).
        """
        restart = t >= self.horizon
        t = jnp.where(restart, 0, t)
        fresh = self.draw(key, params)
        noise = _where(restart, fresh, noise) if self.method in ("nres", "full") else fresh
        if self.method == "pes":
            accumulated = _accumulate(accumulated, noise, t // self.window, restart)
        return restart, t, noise, accumulated

    def gradient(
        self,
        steps: jax.Array,
        noise: PyTree,
        accumulated: PyTree,
        positive: jax.Array,
        negative: jax.Array,
    ) -> tuple[PyTree, jax.Array, jax.Array]:
        """(ĝ, n, number of non-finite particles) from window fitness sums F± (N,).

        ``steps`` is the step count before the window; the burn-in mask covers
        whole windows because T − W is a multiple of W.
        """
        masked_in = steps >= self.burn_in
        diff = positive - negative
        finite = jnp.isfinite(diff)
        count = jnp.where(masked_in, jnp.sum(finite) * self.window, 0)
        weights = jnp.where(finite & masked_in, diff, 0.0) / (
            2 * self.sigma**2 * jnp.maximum(count, 1)
        )
        gradient = perturb.weighted_sum(weights, accumulated if self.method == "pes" else noise)
        return gradient, count, jnp.sum(~finite)


def check_online_settings(
    method: str,
    num_particles: int,
    sigma: float,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int,
) -> Schedule:
    """Validate the settings of an online ES (clear errors at construction)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_int("num_particles", num_particles, 1)
    check_int("truncation_length", truncation_length, 1)
    check_int("horizon", horizon, 1)
    check_int("noise_rank", noise_rank, 0)
    check_positive("sigma", sigma)
    if truncation_length > horizon:
        raise ValueError(
            f"truncation_length must be <= horizon ({horizon}), got {truncation_length}"
        )
    if horizon % truncation_length:
        raise ValueError(
            f"truncation_length must divide horizon, got {truncation_length} and {horizon}"
        )
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer must be an optax GradientTransformation, got {optimizer!r}")
    return Schedule(method, num_particles, float(sigma), truncation_length, horizon, noise_rank)


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
    schedule = check_online_settings(
        method, num_particles, sigma, optimizer, truncation_length, horizon, noise_rank
    )
    window = truncation_length
    particles = jnp.arange(num_particles)

    def check_task(task: Unrollable) -> None:
        if getattr(task, "horizon", None) != horizon:
            raise ValueError(
                f"task.horizon is {getattr(task, 'horizon', None)!r} but the strategy "
                f"was built with horizon={horizon}"
            )

    def reset(task: Unrollable, key: jax.Array) -> PyTree:
        fresh = task.reset(jax.vmap(jax.random.fold_in, (None, 0))(key, particles))
        return fresh if method == "tes" else _stack(fresh, fresh)

    def init(key: jax.Array, params: PyTree, task: Unrollable) -> OnlineESState:
        check_task(task)
        if "params" not in params:
            raise ValueError("params must be a flax variables dict with a 'params' collection")
        key_offset, key_noise, key_inner = jax.random.split(key, 3)
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.result_type(x)), params)
        noise = schedule.draw(key_noise, params["params"])
        return OnlineESState(
            mean=params,
            opt_state=optimizer.init(params["params"]),
            noise=noise,
            accumulated=schedule.empty_accumulated(noise),
            inner=reset(task, key_inner),
            t=schedule.offsets(key_offset),
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
        restart, t, noise, accumulated = schedule.next_window(
            key_noise, state.t, state.noise, state.accumulated, state.mean["params"]
        )
        paired = restart if method == "tes" else jnp.concatenate([restart, restart])
        inner = _where(paired, reset(task, key_reset), state.inner)

        keys = jax.vmap(jax.random.fold_in, (None, 0))(key_unroll, particles)
        signed = perturb.antithetic(noise)
        copies = 2
        if method == "tes":  # a third, unperturbed copy carries the shared state
            signed = _stack(jax.tree.map(jnp.zeros_like, noise), signed)
            inner = _stack(inner, inner, inner)
            copies = 3
        population = Population(shared=state.mean, members={"perturb": signed})
        inner, fitness = task.unroll(
            jnp.tile(keys, copies), population, inner, jnp.tile(t, copies), window
        )
        if method == "tes":
            inner = jax.tree.map(lambda x: x[:num_particles], inner)
            fitness = fitness[num_particles:]

        sums = jnp.sum(fitness, axis=1)
        gradient, count, nonfinite = schedule.gradient(
            state.steps, noise, accumulated, sums[:num_particles], sums[num_particles:]
        )
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
            "num_nonfinite": nonfinite,
            "episodes_started": jnp.sum(restart),
        }
        return state, gradient, metrics

    def step(
        task: Unrollable, state: OnlineESState, key: jax.Array
    ) -> tuple[OnlineESState, Metrics]:
        state, gradient, metrics = estimate(task, state, key)
        params = state.mean["params"]
        updates, opt_state = masked_update(
            optimizer, gradient, state.opt_state, params, metrics["num_masked_in"]
        )
        state = state._replace(
            mean={**state.mean, "params": optax.apply_updates(params, updates)},
            opt_state=opt_state,
            generation=state.generation + 1,
        )
        return state, {**metrics, "update_norm": optax.tree.norm(updates)}

    return OnlineStrategy(init, estimate, step)


def masked_update(
    optimizer: optax.GradientTransformation,
    gradient: PyTree,
    opt_state: optax.OptState,
    params: PyTree,
    count: jax.Array,
) -> tuple[PyTree, optax.OptState]:
    """Optimizer step on the ascent estimate ĝ; zero updates and the old state when n = 0.

    During burn-in nothing is masked in: θ and the optimizer are left alone.
    """
    descent = jax.tree.map(jnp.negative, gradient)
    updates, new_state = optimizer.update(descent, opt_state, params)
    use = count > 0
    updates = jax.tree.map(lambda u: jnp.where(use, u, jnp.zeros_like(u)), updates)
    new_state = jax.tree.map(lambda a, b: jnp.where(use, a, b), new_state, opt_state)
    return updates, new_state


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
