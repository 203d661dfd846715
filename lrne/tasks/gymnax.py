"""Evaluate a whole population of policies on a gymnax environment.

One jit-compiled function steps members × episodes in lockstep. With
``early_exit`` the rollout stops when every episode is done, and with
``compaction`` the live episodes are gathered into fewer chunks of slots as
their count falls, so the cost follows the steps actually lived rather than
population × max_steps. Every chunk is stepped by the same compiled loop, so
compile time does not grow with the number of buffer sizes. Garbus & Pollack
2025 (arXiv 2504.03037) observed that bad factorized mutants fail fast; this is
what turns that into saved compute.

Every episode's randomness is keyed by its identity (member index, episode
index, step number), never by its buffer slot, so compaction changes no
episode.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
from flax import linen as nn
from gymnax.environments import spaces

from lrne.errors import ArgumentError
from lrne.genome import Population, PyTree
from lrne.nn.layers import thin_kernels
from lrne.nn.perturbed import apply, member_variables
from lrne.normalization import MOMENTS, episode_moments, observe, policy_input, shift_of
from lrne.tasks.base import Task


def make_env(env_id: str) -> tuple[Any, Any]:
    """``gymnax.make`` with a clear error for an unknown id."""
    if env_id not in gymnax.registered_envs:
        raise ArgumentError(
            "env_id",
            f"env_id: unknown gymnax environment {env_id!r}; "
            f"known: {', '.join(gymnax.registered_envs)}",
        )
    return gymnax.make(env_id)


def action_size(env: str | Any, env_params: Any = None) -> int:
    """Number of policy outputs an environment needs: logits or action dims."""
    if isinstance(env, str):
        env, default = make_env(env)
        env_params = env_params or default
    space = env.action_space(env_params or env.default_params)
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    return math.prod(space.shape)


class Unrolled(NamedTuple):
    """Inner states of episodes an online strategy unrolls (leading member axis)."""

    obs: PyTree
    env_state: PyTree
    alive: jax.Array


class _Slots(NamedTuple):
    """A buffer of episodes in flight; slot i holds episode ``episode[i]``."""

    episode: jax.Array  # int32; the total episode count marks an empty slot
    step_key: jax.Array
    obs: PyTree
    env_state: PyTree
    ret: jax.Array
    length: jax.Array
    alive: jax.Array
    moments: tuple | None = None  # (shift, sum, sq) of live observations (normalization)


# Compaction works on chunks of slots: every chunk is stepped by the same compiled
# body, so compile time does not grow with the number of buffer sizes (one copy
# per size compiled 16 copies at 1,024 episodes: 15.9 s for a Breakout ES
# generation). The buffer is at most NUM_CHUNKS chunks of at least MIN_CHUNK slots.
# Measured on benchmarks/early_exit.py (1,024 rank-4 members): 8, 16 and 32
# chunks ran 1.6x, 2.0x and 2.4x faster than one buffer (small chunks stay in
# cache), but a dense shared forward prefers larger batches (16 chunks: 1.55x).
NUM_CHUNKS = 16
MIN_CHUNK = 16
# Steps a chunk runs before the next one takes its turn; compaction is decided
# between blocks, so a block is at most 1/16 of the horizon. A chunk's turn has a
# fixed cost: on the same benchmark, blocks of 1, 4 and 16 steps ran 0.9x, 1.4x
# and 2.0x faster than one buffer.
BLOCK = 16


def chunk_size(num_slots: int) -> int:
    """Slots per chunk for a buffer of ``num_slots`` episodes."""
    return min(num_slots, max(MIN_CHUNK, math.ceil(num_slots / NUM_CHUNKS)))


class Gymnax(Task):
    """Fitness = mean undiscounted return over ``num_episodes`` episodes per member.

    Args:
        env: a gymnax env id (``'CartPole-v1'``) or a gymnax ``Environment``.
        policy: flax module mapping one observation to logits (discrete actions:
            the action is their argmax) or to a pre-squash action (continuous:
            ``tanh`` then scaled to the action box).
        num_episodes: episodes per member, >= 1.
        max_steps: episode length cap; default the env's ``max_steps_in_episode``.
        early_exit: stop when every episode is done. ``False`` runs all episodes
            to ``max_steps`` with finished ones masked (for comparison).
        compaction: with ``early_exit``, the episodes are stepped in chunks of
            slots (at most 16 chunks, each of at least 16 slots), and whenever
            the live ones fill at most ``compaction`` of the chunks in use (and
            fit in fewer), they are gathered into the first chunks and the rest
            are no longer stepped; ``None`` steps one buffer of every episode.
            Must lie in (0, 1).
        env_params: gymnax env params; default the env's defaults.
    """

    def __init__(
        self,
        env: str | Any,
        policy: nn.Module,
        num_episodes: int = 1,
        max_steps: int | None = None,
        early_exit: bool = True,
        compaction: float | None = 0.75,
        env_params: Any = None,
    ) -> None:
        if isinstance(env, str):
            env, default_params = make_env(env)
            env_params = env_params if env_params is not None else default_params
        self.env = env
        self.env_params = env_params if env_params is not None else env.default_params
        self.policy = policy
        if not isinstance(num_episodes, int) or num_episodes < 1:
            raise ArgumentError(
                "num_episodes", f"num_episodes must be an int >= 1, got {num_episodes!r}"
            )
        if max_steps is None:
            max_steps = int(self.env_params.max_steps_in_episode)
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ArgumentError("max_steps", f"max_steps must be an int >= 1, got {max_steps!r}")
        if compaction is not None and not 0 < compaction < 1:
            raise ArgumentError(
                "compaction", f"compaction must be None or in (0, 1), got {compaction!r}"
            )
        self.num_episodes = num_episodes
        self.max_steps = max_steps
        self.early_exit = early_exit
        self.compaction = compaction
        self.action_space = env.action_space(self.env_params)
        self.num_outputs = action_size(env, self.env_params)

        obs_shapes = jax.eval_shape(
            lambda k: self.env.reset_env(k, self.env_params)[0], jax.random.key(0)
        )
        self._obs_template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), obs_shapes)
        params = jax.eval_shape(self.init_params, jax.random.key(0))
        out = jax.eval_shape(self.policy.apply, params, self._obs_template)
        if math.prod(out.shape) != self.num_outputs:
            obs_shape = jax.tree.map(lambda x: x.shape, self._obs_template)
            raise ArgumentError(
                "policy",
                f"policy: outputs shape {out.shape} for one observation of shape {obs_shape}, "
                f"but the environment needs {self.num_outputs} outputs (lrne.nn.MLP reads "
                "the observation's last input_ndim axes as one input)",
            )
        self.thin_kernels = thin_kernels(self.policy, self._obs_template)

    def init_params(self, key: jax.Array) -> PyTree:
        """One member's policy params."""
        return self.policy.init(key, self._obs_template)

    def action(self, variables: PyTree, obs: PyTree) -> jax.Array:
        """The action one member (``variables``, any perturbation included) takes at ``obs``:
        the argmax of its outputs (discrete), or ``tanh`` scaled to the action box.
        Variables with a normalizer (:mod:`lrne.normalization`) act on normalized ``obs``."""
        out = apply(self.policy, *policy_input(variables, obs))
        if isinstance(self.action_space, spaces.Discrete):
            return jnp.argmax(out)
        low, high = self.action_space.low, self.action_space.high
        action = low + 0.5 * (jnp.tanh(out.reshape(self.action_space.shape)) + 1.0) * (high - low)
        return action.astype(self.action_space.dtype)

    def env_step(
        self, key: jax.Array, state: PyTree, action: jax.Array
    ) -> tuple[PyTree, PyTree, jax.Array, jax.Array]:
        """One transition of one episode, without auto-reset: ``(obs, state, reward, done)``,
        ``done`` = terminated or truncated (gymnax's 5- and 6-tuple ``step_env`` alike)."""
        out = self.env.step_env(key, state, action, self.env_params)
        obs, state, reward, terminated = out[:4]
        if len(out) == 6:
            truncated = out[4]
        else:
            truncated = self.env.is_truncated(state, self.env_params)
        done = jnp.logical_or(terminated, truncated)
        return obs, state, jnp.asarray(reward, jnp.float32), done

    def _step(self, act: Any, slots: _Slots, t: jax.Array) -> _Slots:
        keys = jax.vmap(jax.random.fold_in, (0, None))(slots.step_key, t)
        actions = act(slots.obs)
        obs, env_state, reward, done = jax.vmap(self.env_step)(keys, slots.env_state, actions)
        alive = slots.alive
        if slots.moments is not None:
            slots = slots._replace(moments=observe(slots.moments, slots.obs, alive))
        return slots._replace(
            obs=obs,
            env_state=env_state,
            ret=slots.ret + jnp.where(alive, reward, 0.0),
            length=slots.length + alive.astype(jnp.int32),
            alive=alive & ~done & (t + 1 < self.max_steps),
        )

    def fresh_slots(self, keys: jax.Array) -> _Slots:
        """One fresh episode per key (episode ids 0, 1, ...), reset and ready to step."""
        total = keys.shape[0]
        reset_keys, step_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
        obs, env_state = jax.vmap(self.env.reset_env, (0, None))(reset_keys, self.env_params)
        return _Slots(
            episode=jnp.arange(total, dtype=jnp.int32),
            step_key=step_keys,
            obs=obs,
            env_state=env_state,
            ret=jnp.zeros(total, jnp.float32),
            length=jnp.zeros(total, jnp.int32),
            alive=jnp.ones(total, bool),
        )

    def _acting(self, population: Population) -> Any:
        """obs (M, ...) -> actions (M, ...) for every member of ``population``, in order."""
        shared, members = population
        act = lambda member, obs: self.action(member_variables(shared, member), obs)
        return lambda obs: jax.vmap(act)(members, obs)

    def evaluate_members(self, keys: jax.Array, population: Population) -> tuple[jax.Array, dict]:
        """Fitness (M,): each member's mean return over ``num_episodes`` episodes.

        Member ``m`` draws its episodes' randomness from ``keys[m]``.

        Metrics: ``env_steps`` (steps the episodes lived) and
        ``env_steps_computed`` (slot-steps executed, including masked ones); with a
        normalizer in the shared variables, the live steps' ``observation_moments``.
        """
        num_members = keys.shape[0]
        per_member = self.num_episodes
        total = num_members * per_member
        episode = jnp.arange(total, dtype=jnp.int32)
        member = episode // per_member
        keys = jax.vmap(lambda m, e: jax.random.fold_in(keys[m], e))(member, episode % per_member)
        slots = self.fresh_slots(keys)
        shift = shift_of(population)
        if shift is not None:  # sum the live observations (lrne.normalization)
            zeros = jnp.zeros(slots.obs.shape, jnp.float32)
            slots = slots._replace(moments=(jnp.broadcast_to(shift, zeros.shape), zeros, zeros))

        # With one chunk (total <= MIN_CHUNK) compaction has nothing to drop:
        # the single buffer runs the same steps and compiles less.
        if self.early_exit and self.compaction is not None and chunk_size(total) < total:
            slots, computed = self._run_compacted(population, slots, per_member)
        else:
            # One flat vmap over slots: a nested member × episode vmap defeats the
            # multiply-sum form of factorized layers on XLA:CPU (measured 10x slower).
            if per_member > 1:
                population = population.select(jnp.repeat(jnp.arange(num_members), per_member))
            act = self._acting(population)
            if self.early_exit:
                slots, computed = self._run_one_buffer(act, slots)
            else:
                slots = jax.lax.fori_loop(
                    0, self.max_steps, lambda i, s: self._step(act, s, i), slots
                )
                computed = jnp.array(total * self.max_steps, jnp.int32)
        # Slots may have been reordered and padded: scatter back by episode.
        returns = jnp.zeros(total, jnp.float32).at[slots.episode].set(slots.ret, mode="drop")
        lengths = jnp.zeros(total, jnp.int32).at[slots.episode].set(slots.length, mode="drop")

        fitness = returns.reshape(num_members, per_member).mean(axis=1)
        metrics = {"env_steps": jnp.sum(lengths), "env_steps_computed": computed}
        if shift is not None:
            metrics[MOMENTS] = episode_moments(slots.moments, slots.episode, slots.length, total)
        return fitness, metrics

    def fresh_fitness(self, key: jax.Array, params: PyTree, num_episodes: int = 32) -> jax.Array:
        """Mean return of ``params`` over ``num_episodes`` new episodes drawn from ``key``
        (the same environment, policy and step cap)."""
        fresh = Gymnax(
            self.env,
            self.policy,
            num_episodes=num_episodes,
            max_steps=self.max_steps,
            early_exit=self.early_exit,
            compaction=self.compaction,
            env_params=self.env_params,
        )
        return Task.fresh_fitness(fresh, key, params)

    @property
    def horizon(self) -> int:
        """T for online strategies: the episode length cap ``max_steps``."""
        return self.max_steps

    def reset(self, keys: jax.Array) -> Unrolled:
        """Fresh episodes, one per key: the inner states online strategies unroll."""
        obs, env_state = jax.vmap(self.env.reset_env, (0, None))(keys, self.env_params)
        return Unrolled(obs=obs, env_state=env_state, alive=jnp.ones(keys.shape[0], bool))

    def unroll(
        self,
        keys: jax.Array,
        population: Population,
        inner: Unrolled,
        t: jax.Array,
        num_steps: int,
    ) -> tuple[Unrolled, jax.Array]:
        """Step every member's episode ``num_steps`` times: (inner, rewards (M, num_steps)).

        An episode that ends stays ended until its online strategy resets it at
        the horizon: its later rewards are 0 (``inner.alive`` is the done mask),
        so the window rewards sum to the episode return over the horizon. Step
        ``i`` of a window draws its randomness from ``fold_in(keys[m], t[m] + i)``:
        members sharing a key (an antithetic pair) share the environment's noise.
        """
        act = self._acting(population)

        def body(inner: Unrolled, i: jax.Array) -> tuple[Unrolled, jax.Array]:
            step_keys = jax.vmap(jax.random.fold_in)(keys, t + i)
            obs, env_state, reward, done = jax.vmap(self.env_step)(
                step_keys, inner.env_state, act(inner.obs)
            )
            alive = inner.alive & (t + i < self.max_steps)
            reward = jnp.where(alive, reward, 0.0)
            return Unrolled(obs, env_state, alive & ~done), reward

        inner, rewards = jax.lax.scan(body, inner, jnp.arange(num_steps))
        return inner, rewards.T

    def _run_one_buffer(self, act: Any, slots: _Slots) -> tuple[_Slots, jax.Array]:
        """Step every slot until all episodes ended or time is up: (slots, slot-steps)."""
        size = slots.alive.shape[0]

        def cond(carry: tuple) -> jax.Array:
            slots, t = carry
            return (t < self.max_steps) & jnp.any(slots.alive)

        def body(carry: tuple) -> tuple:
            slots, t = carry
            return self._step(act, slots, t), t + 1

        slots, t = jax.lax.while_loop(cond, body, (slots, jnp.array(0, jnp.int32)))
        return slots, t * size

    def _run_compacted(
        self, population: Population, slots: _Slots, per_member: int
    ) -> tuple[_Slots, jax.Array]:
        """Early exit with compaction: (final slots, slot-steps computed).

        The buffer is split into chunks of equal size; only the first ``active``
        chunks are stepped, each in turn for a block of up to ``BLOCK`` steps (a
        chunk whose episodes all ended stops early). Between blocks, once the live episodes
        fill at most ``compaction`` of the active chunks and fit in fewer, the
        slots are reordered live-first (no episode is dropped; the members are
        gathered to match) and the trailing chunks are left out. One compiled
        step serves every buffer size, so compile time does not grow with the
        number of compactions (the former one-``while_loop``-per-size design
        compiled 16 copies at 1,024 episodes).
        """
        total = slots.alive.shape[0]
        chunk = chunk_size(total)
        steps_per_block = max(1, min(BLOCK, self.max_steps // 16))
        size = -(-total // chunk) * chunk
        if size > total:  # pad with empty, dead slots
            slots = jax.tree.map(lambda x: x[jnp.minimum(jnp.arange(size), total - 1)], slots)
            real = jnp.arange(size) < total
            slots = slots._replace(
                episode=jnp.where(real, slots.episode, total), alive=slots.alive & real
            )
        # Members in slot order, from the unexpanded population.
        gather = lambda episode: population.select(jnp.minimum(episode, total - 1) // per_member)
        slice_ = lambda tree, start: jax.tree.map(
            lambda x: jax.lax.dynamic_slice_in_dim(x, start, chunk), tree
        )

        def run_chunk(c: jax.Array, carry: tuple) -> tuple:
            slots, members, t, computed = carry
            start = c * chunk
            act = self._acting(Population(population.shared, slice_(members, start)))

            def cond(inner: tuple) -> jax.Array:
                i, part = inner
                return (i < steps_per_block) & (t + i < self.max_steps) & jnp.any(part.alive)

            def body(inner: tuple) -> tuple:
                i, part = inner
                return i + 1, self._step(act, part, t + i)

            steps, part = jax.lax.while_loop(
                cond, body, (jnp.array(0, jnp.int32), slice_(slots, start))
            )
            slots = jax.tree.map(
                lambda x, y: jax.lax.dynamic_update_slice_in_dim(x, y, start, 0), slots, part
            )
            return slots, members, t, computed + steps * chunk

        def compact(slots: _Slots) -> tuple[_Slots, PyTree]:
            # A stable live-first order; episodes that ended keep their results.
            order = jnp.argsort(~slots.alive, stable=True)
            slots = jax.tree.map(lambda x: x[order], slots)
            return slots, gather(slots.episode).members

        def cond(carry: tuple) -> jax.Array:
            slots, _, t, _, _ = carry
            return (t < self.max_steps) & jnp.any(slots.alive)

        def block(carry: tuple) -> tuple:
            slots, members, t, computed, active = carry
            slots, members, t, computed = jax.lax.fori_loop(
                0, active, run_chunk, (slots, members, t, computed)
            )
            live = jnp.sum(slots.alive)
            needed = (live + chunk - 1) // chunk
            shrink = (needed < active) & (live <= self.compaction * active * chunk)
            slots, members = jax.lax.cond(shrink, compact, lambda s: (s, members), slots)
            return slots, members, t + steps_per_block, computed, jnp.where(shrink, needed, active)

        carry = (
            slots,
            gather(slots.episode).members,
            jnp.array(0, jnp.int32),
            jnp.array(0, jnp.int32),
            jnp.array(size // chunk, jnp.int32),
        )
        slots, _, _, computed, _ = jax.lax.while_loop(cond, block, carry)
        return slots, computed
