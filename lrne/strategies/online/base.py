"""Online evolution strategies over truncated unrolls: the machinery every estimator shares.

Li, Harrison, Sohl-Dickstein, Smith, Metz 2023, *Noise-Reuse in Online
Evolution Strategies* (arXiv 2304.12180). The objective is the mean per-step
fitness of an unrolled system over a horizon of T steps,
L(θ) = (1/T) Σ_t f_t(s_t(θ), θ). Each of N particles keeps its own inner
states and its own step counter t ∈ [0, T); every generation unrolls all
particles one window of W steps (the truncation length) and updates θ once:

- ``ask`` starts a window: a particle whose episode ended (t = T) restarts at
  t = 0, noise is renewed where the estimator says so, and the population is
  the antithetic pair [δ; −δ] (2N members over the shared mean).
- ``evaluate`` (the hook :func:`lrne.generation_step` calls) resets the
  restarted particles' inner states and unrolls W steps with
  ``task.unroll``; the fitness of a member is its sum over the window. The
  inner states are boxed in :class:`~lrne.genome.Local`: on a task split over
  devices each device keeps its members' states and unrolls only those, and
  only the window sums cross devices.
- ``tell`` forms ĝ = Σ_i m_i·(F⁺_i − F⁻_i) / (2σ²·n), with m_i what the
  estimator multiplies (δ_i, or PES's accumulated ξ_i) and n the number of
  masked-in (particle, step) pairs, so ĝ estimates ∇ of the Gaussian-smoothed
  L, and takes one optimizer step on it.

An estimator is a set of hooks (:class:`Estimator`): when noise is renewed,
what the estimate multiplies (and the memory that needs), how many copies of
each particle are unrolled and how their inner states are carried. The
modules :mod:`~lrne.strategies.online.nres`, :mod:`~lrne.strategies.online.pes`
and :mod:`~lrne.strategies.online.tes` supply them; nothing here branches on
which estimator it runs.

**Step-unlocked particles.** Particle i starts at a random multiple of W in
[0, T): its first episode is cut short to end after T − offset steps, so the
particles' positions in their episodes are spread over the horizon and a window
mixes early and late steps. Estimates from those first, shortened episodes are
biased (the state at the offset is a fresh one); the first T − W steps, by which
every particle has started a real episode, are a burn-in whose estimates are
discarded (θ and the optimizer state are left alone). Without step-unlocking,
all particles see the same steps at once, which the paper shows costs NRES its
advantage.

The answer of an online ES is its mean: ``state.best_params`` is
``state.mean``; ``state.best_fitness`` is the best finite window fitness seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrne import perturb
from lrne.errors import ArgumentError
from lrne.fitness import finite_mean, no_best
from lrne.genome import Local, Metrics, Population, PyTree, params_of, with_params
from lrne.nn.perturbed import PERTURB, prepare
from lrne.strategies import base as shared
from lrne.strategies.base import ScalarOrSchedule, Strategy


class OnlineESState(NamedTuple):
    """State of an online ES.

    Attributes:
        mean: the genome θ (flax variables, or any pytree); the strategy's answer.
        opt_state: optimizer state for the mean's params.
        noise: each particle's perturbation δ of the current window (leading axis N).
        accumulated: the estimator's memory of past noise (PES: ξ since the
            episode began, low-rank leaves as T/W concatenated window factors);
            ``None`` for estimators without one.
        inner: the particles' inner states in the estimator's carried layout
            (NRES, PES: [s⁺; s⁻], 2N; TES: the N shared states), boxed in
            :class:`~lrne.genome.Local` (``state.inner.value``); ``None`` when
            initialized without a task (an external driver unrolls).
        t: (N,) each particle's step in its current episode.
        steps: steps unrolled per particle so far (the burn-in clock).
        restart: (N,) which particles started an episode with this window.
        generation: updates so far.
        best_fitness: the best finite window fitness (a member's sum over a
            window) seen so far.
        sigma: (N,) the σ each particle's current noise was drawn with.
    """

    mean: PyTree
    opt_state: optax.OptState
    noise: PyTree
    accumulated: PyTree
    inner: PyTree
    t: jax.Array
    steps: jax.Array
    restart: jax.Array
    generation: jax.Array
    best_fitness: jax.Array
    sigma: jax.Array

    @property
    def best_params(self) -> PyTree:
        """The mean: an online ES answers with θ, not with a perturbed member."""
        return self.mean


def select(mask: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """Per-member ``where``: leaves carry the member axis first, ``mask`` is (M,)."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


def stack(*trees: PyTree) -> PyTree:
    """Concatenate trees along the member axis."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *trees)


def paired(tree: PyTree) -> PyTree:
    """Carry hook of NRES and PES: each sign keeps its own copy, [x; x] (2N)."""
    return stack(tree, tree)


def no_memory(noise: PyTree, num_windows: int) -> None:
    del noise, num_windows


def keep_memory(memory: PyTree, noise: PyTree, slot: jax.Array, restart: jax.Array) -> PyTree:
    del noise, slot, restart
    return memory


def the_noise(noise: PyTree, memory: PyTree) -> PyTree:
    del memory
    return noise


def unchanged(members: PyTree, carried: PyTree) -> tuple[PyTree, PyTree]:
    return members, carried


def whole(tree: PyTree) -> PyTree:
    return tree


def parts(task: Any) -> tuple[Callable[[PyTree], PyTree], Callable[[PyTree], PyTree]]:
    """The task's ``(local, gather)`` (:meth:`lrne.tasks.Task.local`); identities if it has none."""
    return getattr(task, "local", whole), getattr(task, "gather", whole)


class Estimator(NamedTuple):
    """The hooks that make an online estimator; :func:`online_es` does the rest.

    Attributes:
        renews: ``restart (N,) -> (N,) bool``: the particles that draw fresh
            noise this window (NRES: those whose episode restarts; PES, TES: all).
        multiplies: ``(noise, memory) -> m``: the per-particle perturbation the
            estimate multiplies (default: the window's noise δ).
        init_memory: ``(noise, num_windows) -> memory``: the initial memory the
            estimate needs beyond δ (PES: ξ); default none.
        remember: ``(memory, noise, slot, restart) -> memory``: the memory after
            a window's noise is drawn; ``slot = t // W`` is the window's index
            in its episode, ``restart`` (N,) the particles that restarted.
        carry: ``(N, ...) tree -> carried tree``: how inner states are kept
            between windows, applied to per-particle trees (fresh states, the
            reset and unroll keys, the steps t, the restart mask). Default
            :func:`paired`: [s⁺; s⁻].
        expand: ``(members, carried) -> (members, carried)``: from the
            population's members (2N: [δ; −δ]) and trees in the carried layout
            (the inner states, each copy's key and step t) to what is unrolled;
            every unrolled copy of particle i shares its key and t.
        collect: ``(inner, fitness) -> (inner, fitness)``: from the unrolled
            inner states and window fitness sums to the carried inner states
            and the population's window fitness (2N).

    A task split over devices unrolls contiguous parts of the expanded members
    on its devices, each with the same part of the carried trees (the inner
    states never leave their device). So ``carry``, ``expand`` and ``collect``
    must act particle by particle, keeping a contiguous part of the carried
    layout aligned with the same part of the unrolled one: [x; x] for both
    (NRES, PES), or each particle's copies next to each other (TES).
    """

    renews: Callable[[jax.Array], jax.Array]
    multiplies: Callable[[PyTree, PyTree], PyTree] = the_noise
    init_memory: Callable[[PyTree, int], PyTree] = no_memory
    remember: Callable[[PyTree, PyTree, jax.Array, jax.Array], PyTree] = keep_memory
    carry: Callable[[PyTree], PyTree] = paired
    expand: Callable[[PyTree, PyTree], tuple[PyTree, PyTree]] = unchanged
    collect: Callable[[PyTree, jax.Array], tuple[PyTree, jax.Array]] = unchanged


def check_online_settings(
    num_particles: int,
    sigma: ScalarOrSchedule,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int,
) -> None:
    """Construction-time checks shared by every online estimator."""
    shared.check_int("num_particles", num_particles, 1)
    shared.check_scalar_or_schedule("sigma", sigma)
    shared.check_optimizer(optimizer)
    shared.check_int("horizon", horizon, 1)
    shared.check_int("truncation_length", truncation_length, 1)
    shared.check_int("noise_rank", noise_rank, 0)
    if truncation_length > horizon:
        raise ArgumentError(
            "truncation_length",
            f"truncation_length must be <= horizon ({horizon}), got {truncation_length}",
        )
    if horizon % truncation_length:
        raise ArgumentError(
            "truncation_length",
            f"truncation_length must divide horizon, got {truncation_length} and {horizon}",
        )


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


class RecordedEstimate(NamedTuple):
    """State of :func:`record_estimate`: the last ascent estimate ĝ it was given."""

    ascent: PyTree


def record_estimate() -> optax.GradientTransformation:
    """An "optimizer" that leaves θ alone and keeps the last estimate ĝ in its state.

    For reading an online ES's estimates at a fixed θ (tests, variance
    benchmarks): after a masked-in window, ``state.opt_state.ascent`` is that
    window's ĝ; during burn-in it keeps its previous value (zeros at first).
    """

    def init(params: PyTree) -> RecordedEstimate:
        return RecordedEstimate(jax.tree.map(jnp.zeros_like, params))

    def update(
        updates: PyTree, state: RecordedEstimate, params: PyTree = None
    ) -> tuple[PyTree, RecordedEstimate]:
        del state, params
        return jax.tree.map(jnp.zeros_like, updates), RecordedEstimate(
            jax.tree.map(jnp.negative, updates)
        )

    return optax.GradientTransformation(init, update)


def online_es(
    estimator: Estimator,
    num_particles: int,
    sigma: ScalarOrSchedule,
    optimizer: optax.GradientTransformation,
    truncation_length: int,
    horizon: int,
    noise_rank: int = 0,
    dense_noise: tuple[str, ...] = (),
) -> Strategy:
    """An online ES from an estimator's hooks: ``nres``, ``pes`` and ``tes`` are this
    function with their hooks bound (``functools.partial(online_es, NRES)``...).

    Args:
        estimator: the estimator's :class:`Estimator` hooks.
        num_particles: N; the population has 2N members, [δ; −δ].
        sigma: perturbation std per parameter entry (absolute), > 0, or an optax
            schedule of the generation: a particle's noise keeps the σ it was
            drawn with (``sigma`` of :class:`OnlineESState`) until it is renewed.
        optimizer: optax optimizer; it receives −ĝ (optax minimizes).
        truncation_length: W, steps per window (one update each); must divide
            ``horizon``.
        horizon: T, the episode length of the task (``task.horizon``).
        noise_rank: 0 for dense noise, r > 0 for rank-r noise on every leaf of
            two or more axes (see :func:`lrne.es`).
        dense_noise: params given dense noise under ``noise_rank > 0`` (see
            :func:`lrne.es`).

    Returns:
        A :class:`~lrne.strategies.base.Strategy` with :class:`OnlineESState`.
        ``init(key, params, task=None)``: with a task (an
        :class:`~lrne.tasks.Unrollable`) the state holds the particles' inner
        states and ``evaluate`` unrolls them; without one, ``inner`` is
        ``None`` and the caller unrolls the population of ``ask`` one window
        and passes the members' window fitness sums to ``tell``.
    """
    check_online_settings(num_particles, sigma, optimizer, truncation_length, horizon, noise_rank)
    dense_noise = shared.check_dense_noise(dense_noise)
    window = truncation_length
    num_windows = horizon // window
    burn_in = horizon - window  # a multiple of W: the mask covers whole windows
    population_size = 2 * num_particles

    def particle_keys(key: jax.Array) -> jax.Array:
        return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_particles))

    def draw(key: jax.Array, params: PyTree, sigma_now: jax.Array) -> PyTree:
        """Fresh noise for every particle (leading axis N), keyed by particle index."""
        sample = lambda k: perturb.sample(k, params, sigma_now, noise_rank, dense_noise)
        return jax.vmap(sample)(particle_keys(key))

    def sigma_at(generation: jax.Array) -> jax.Array:
        return jnp.asarray(shared.at_generation(sigma, generation), jnp.float32)

    def check_task(task: Any) -> None:
        if getattr(task, "horizon", None) != horizon:
            raise ValueError(
                f"task.horizon is {getattr(task, 'horizon', None)!r} but the strategy "
                f"was built with horizon={horizon}"
            )

    def init(key: jax.Array, params: PyTree, task: Any = None) -> OnlineESState:
        if task is not None:
            check_task(task)
        key_offset, key_noise, key_inner = jax.random.split(key, 3)
        params = shared.typed(params)
        sigma_now = sigma_at(jnp.array(0, jnp.int32))
        noise = draw(key_noise, params_of(params), sigma_now)
        offsets = window * jax.random.randint(key_offset, (num_particles,), 0, num_windows)
        inner = None
        if task is not None:
            # typed: a task's fresh states may be weak-typed (gymnax Pendulum's last_u);
            # the step returns them strong, which would retrace it once.
            inner = Local(shared.typed(task.reset(estimator.carry(particle_keys(key_inner)))))
        return OnlineESState(
            mean=params,
            opt_state=optimizer.init(params_of(params)),
            noise=noise,
            accumulated=estimator.init_memory(noise, num_windows),
            inner=inner,
            t=offsets.astype(jnp.int32),
            steps=jnp.array(0, jnp.int32),
            restart=jnp.zeros(num_particles, bool),
            generation=jnp.array(0, jnp.int32),
            best_fitness=no_best(),
            sigma=jnp.full((num_particles,), sigma_now),
        )

    def ask(key: jax.Array, state: OnlineESState) -> tuple[Population, OnlineESState]:
        key = jax.random.fold_in(key, state.generation)
        restart = state.t >= horizon
        t = jnp.where(restart, 0, state.t)
        renews = estimator.renews(restart)
        sigma_now = jnp.where(renews, sigma_at(state.generation), state.sigma)
        fresh = draw(key, params_of(state.mean), sigma_at(state.generation))
        noise = select(renews, fresh, state.noise)
        accumulated = estimator.remember(state.accumulated, noise, t // window, restart)
        state = state._replace(
            noise=noise, accumulated=accumulated, t=t, restart=restart, sigma=sigma_now
        )
        return Population(state.mean, {PERTURB: perturb.antithetic(noise)}), state

    def evaluate(
        key: jax.Array, state: OnlineESState, population: Population, task: Any
    ) -> tuple[jax.Array, Metrics, OnlineESState]:
        check_task(task)
        # The inner states are this program's part (on a task split over
        # devices, this device's); every other per-member input is whole here,
        # and `local` takes the matching part of it.
        local, gather = parts(task)
        key_reset, key_unroll = jax.random.split(jax.random.fold_in(key, state.generation))
        # Both signs of a restarted particle start from the same fresh state (same key).
        fresh = task.reset(local(estimator.carry(particle_keys(key_reset))))
        inner = select(local(estimator.carry(state.restart)), fresh, state.inner.value)
        # Every copy of a particle shares its key: the pair sees the same task noise.
        carried = (
            local(estimator.carry(particle_keys(key_unroll))),
            local(estimator.carry(state.t)),
        )
        members, (inner, (keys, t)) = estimator.expand(population.members, (inner, carried))
        unrolled = prepare(Population(population.shared, local(members)))
        inner, rewards = task.unroll(keys, unrolled, inner, t, window)
        # Only the window sums cross devices.
        inner, fitness = estimator.collect(inner, gather(jnp.sum(rewards, axis=1)))
        return fitness, {}, state._replace(inner=Local(inner))

    def tell(
        key: jax.Array, state: OnlineESState, population: Population, fitness: jax.Array
    ) -> tuple[OnlineESState, Metrics]:
        del key, population
        diff = fitness[:num_particles] - fitness[num_particles:]
        finite = jnp.isfinite(diff)
        masked_in = state.steps >= burn_in
        count = jnp.where(masked_in, jnp.sum(finite) * window, 0)
        weights = jnp.where(finite & masked_in, diff, 0.0)
        weights = weights / (2 * state.sigma**2 * jnp.maximum(count, 1))
        params = params_of(state.mean)
        gradient = perturb.weighted_sum(
            weights, estimator.multiplies(state.noise, state.accumulated), params
        )
        updates, opt_state = masked_update(optimizer, gradient, state.opt_state, params, count)
        state = state._replace(
            mean=with_params(state.mean, optax.apply_updates(params, updates)),
            opt_state=opt_state,
            t=state.t + window,
            steps=state.steps + window,
        )
        return state, {
            "fitness_mean": finite_mean(fitness) / window,
            "num_masked_in": count,
            "episodes_started": jnp.sum(state.restart),
            "update_norm": optax.tree.norm(updates),
        }

    return Strategy(init, ask, shared.tracked(tell, population_size), evaluate)
