"""Population rollouts: early exit and compaction change no episode."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import struct
from gymnax.environments import environment, spaces

import lrne
from lrne.nn import MLP
from lrne.tasks import Gymnax
from lrne.tasks.gymnax import MIN_CHUNK, NUM_CHUNKS, chunk_size


@struct.dataclass
class CounterState(environment.EnvState):
    pass


@struct.dataclass
class CounterParams(environment.EnvParams):
    max_steps_in_episode: int = 1000


class Counter(environment.Environment):
    """Observation = step count; reward 1 per step; action 1 ends the episode."""

    @property
    def default_params(self):
        return CounterParams()

    def step_env(self, key, state, action, params):
        state = CounterState(time=state.time + 1)
        obs = jnp.array([state.time], jnp.float32)
        return obs, state, jnp.float32(1.0), action == 1, {}

    def reset_env(self, key, params):
        return jnp.zeros(1, jnp.float32), CounterState(time=0)

    def action_space(self, params):
        return spaces.Discrete(2)


class Threshold(nn.Module):
    """Logits [k + 0.5 - t, t - k - 0.5]: action 1 from step t = k + 1 on, no ties."""

    @nn.compact
    def __call__(self, obs):
        k = self.param("k", nn.initializers.zeros_init(), ())
        margin = obs[0] - (k + 0.5)
        return jnp.stack([-margin, margin])


def closed_form_returns(k, max_steps):
    # Steps t = 0..k take action 0, step k + 1 takes action 1 and ends: k + 2 steps.
    return np.minimum(np.asarray(k) + 2, max_steps).astype(np.float32)


@pytest.mark.parametrize(
    ("early_exit", "compaction", "num_episodes"),
    [(False, None, 1), (True, None, 1), (True, 0.75, 1), (True, 0.5, 3)],
)
def test_closed_form_returns(early_exit, compaction, num_episodes):
    max_steps = 50
    k = jnp.asarray(np.random.default_rng(0).integers(0, 70, size=40), jnp.float32)
    task = Gymnax(
        Counter(),
        Threshold(),
        num_episodes=num_episodes,
        max_steps=max_steps,
        early_exit=early_exit,
        compaction=compaction,
    )
    population = lrne.Population({}, {"params": {"k": k}})
    fitness, metrics = jax.jit(task.evaluate)(jax.random.key(0), population)
    expected = closed_form_returns(k, max_steps)
    np.testing.assert_array_equal(fitness, expected)
    assert int(metrics["env_steps"]) == int(expected.sum()) * num_episodes
    computed = int(metrics["env_steps_computed"])
    if early_exit and compaction:
        # Compaction executes fewer slot-steps than one buffer run to the longest episode.
        assert computed < 40 * num_episodes * int(expected.max())
    elif early_exit:
        assert computed == 40 * num_episodes * int(expected.max())
    else:
        assert computed == 40 * num_episodes * max_steps


def integer_mlp(key, num_members, task):
    """Integer weights on binary observations: every logit is an exact integer,
    so no float rounding can differ between buffer sizes."""
    keys = jax.random.split(key, num_members)
    members = jax.vmap(task.init_params)(keys)
    return lrne.Population({}, jax.tree.map(lambda x: jnp.round(x * 40.0), members))


def test_compacted_equals_masked_on_minatar_breakout():
    policy = MLP((16,), 3, activation=nn.relu, input_ndim=3)
    settings = {"num_episodes": 2, "max_steps": 300}
    masked = Gymnax("Breakout-MinAtar", policy, early_exit=False, **settings)
    compacted = Gymnax("Breakout-MinAtar", policy, compaction=0.5, **settings)
    population = integer_mlp(jax.random.key(1), 24, masked)
    run_masked, run_compacted = jax.jit(masked.evaluate), jax.jit(compacted.evaluate)
    key = jax.random.key(2)
    fit_masked, m_masked = run_masked(key, population)
    fit_compact, m_compact = run_compacted(key, population)
    np.testing.assert_array_equal(fit_compact, fit_masked)
    assert int(m_compact["env_steps"]) == int(m_masked["env_steps"])
    assert int(m_compact["env_steps_computed"]) < int(m_masked["env_steps_computed"])
    assert len(set(np.asarray(fit_masked).tolist())) > 1  # episodes really differ
    # Same key, same results; another key, other episodes (Breakout's ball starts
    # at a random side), alike in both modes.
    again, _ = run_compacted(key, population)
    np.testing.assert_array_equal(again, fit_compact)
    other, m_other = run_compacted(jax.random.key(3), population)
    assert np.sum(np.asarray(other) != np.asarray(fit_compact)) >= 3
    assert int(m_other["env_steps"]) != int(m_compact["env_steps"])
    np.testing.assert_array_equal(other, run_masked(jax.random.key(3), population)[0])


def test_continuous_actions_are_squashed_into_the_box(key):
    task = Gymnax("Pendulum-v1", MLP((8,), 1), max_steps=20)
    params = task.init_params(key)
    obs, _ = task.env.reset_env(key, task.env_params)
    big = jax.tree.map(lambda x: 100.0 * x, params)
    action = task.action(big, obs)
    assert action.shape == (1,) and bool(jnp.all(jnp.abs(action) <= 2.0))
    population = lrne.Population({}, jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params))
    fitness, metrics = jax.jit(task.evaluate)(key, population)
    assert fitness.shape == (2,) and bool(jnp.all(jnp.isfinite(fitness)))
    assert int(metrics["env_steps"]) == 40


def test_construction_errors():
    with pytest.raises(ValueError, match="env_id: unknown gymnax environment 'Nope-v0'"):
        Gymnax("Nope-v0", MLP((4,), 2))
    with pytest.raises(ValueError, match="policy: outputs shape"):
        Gymnax("CartPole-v1", MLP((4,), 3))
    with pytest.raises(ValueError, match="compaction must be"):
        Gymnax("CartPole-v1", MLP((4,), 2), compaction=1.0)
    with pytest.raises(ValueError, match="num_episodes must be"):
        Gymnax("CartPole-v1", MLP((4,), 2), num_episodes=0)


def test_chunks_cover_the_buffer_in_a_bounded_number_of_pieces():
    for slots in (1, 7, 16, 40, 256, 1000, 1024, 4096):
        chunk = chunk_size(slots)
        assert min(slots, MIN_CHUNK) <= chunk <= slots
        assert -(-slots // chunk) <= NUM_CHUNKS


def test_gymnax_registry_is_what_we_validate_against():
    assert "CartPole-v1" in gymnax.registered_envs
    assert lrne.tasks.action_size("CartPole-v1") == 2
    assert lrne.tasks.action_size("Pendulum-v1") == 1


# MNISTBandit-bsuite downloads MNIST when made; this machine has no network.
OFFLINE_ENVS = [e for e in gymnax.registered_envs if e != "MNISTBandit-bsuite"]
# One env per kind of observation (scalar, vector, grid, image) and action
# (discrete, continuous) in the default run; each env costs a compile of its
# dynamics (up to 3 s for a MinAtar game), so the rest are marked slow.
REPRESENTATIVE = {
    "CartPole-v1",
    "Pendulum-v1",
    "Catch-bsuite",
    "FrozenLake-misc",
    "Breakout-MinAtar",
    "Reacher-misc",
}


@pytest.mark.parametrize(
    "env_id",
    [e if e in REPRESENTATIVE else pytest.param(e, marks=pytest.mark.slow) for e in OFFLINE_ENVS],
)
def test_every_gymnax_env_evaluates(env_id):
    env, env_params = gymnax.make(env_id)
    obs_ndim = len(env.observation_space(env_params).shape)
    policy = MLP((8,), lrne.tasks.action_size(env_id), rank=2, input_ndim=obs_ndim)
    task = Gymnax(env_id, policy, num_episodes=2, max_steps=20)
    members = jax.vmap(task.init_params)(jax.random.split(jax.random.key(0), 4))
    fitness, metrics = jax.jit(task.evaluate)(jax.random.key(1), lrne.Population({}, members))
    assert fitness.shape == (4,) and bool(jnp.all(jnp.isfinite(fitness)))
    assert 0 < int(metrics["env_steps"]) <= 4 * 2 * 20
