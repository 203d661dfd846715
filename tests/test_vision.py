"""Vision RL: the factorized MinAtar CNN on four games, and Pendulum from pixels."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.pendulum import EnvState

import lrne
from lrne.wrappers.pixels import PixelObservation, render_pendulum


def pendulum_state(theta: float) -> EnvState:
    return EnvState(theta=jnp.float32(theta), theta_dot=0.0, last_u=0.0, time=0)


@pytest.mark.parametrize("theta", [0.0, 0.7, math.pi / 2, 2.5, math.pi, -1.2, 4.0])
def test_renderer_draws_the_rod_at_the_state_angle(theta):
    """The intensity-weighted direction from the pivot is the rod's: up at θ = 0,
    counter-clockwise for θ > 0 (x = −sin θ, y = cos θ with y pointing up)."""
    size = 32
    image = np.asarray(render_pendulum(pendulum_state(theta), size))
    assert image.shape == (size, size) and image.min() >= 0 and image.max() <= 1
    centre = (size - 1) / 2
    rows, cols = np.mgrid[0:size, 0:size]
    x, y = cols - centre, centre - rows
    far = (np.hypot(x, y) > 3) * image  # away from the pivot, where all angles meet
    angle = math.atan2(-(far * x).sum(), (far * y).sum())  # θ from (x, y) = (−sin θ, cos θ)
    error = (angle - theta + math.pi) % (2 * math.pi) - math.pi
    assert abs(error) < 0.05, (theta, angle)
    tip = (
        round(centre - 0.4 * size * math.cos(theta)),
        round(centre - 0.4 * size * math.sin(theta)),
    )
    assert image[tip] > 0.3
    opposite = (
        round(centre + 0.4 * size * math.cos(theta)),
        round(centre + 0.4 * size * math.sin(theta)),
    )
    assert image[opposite] == 0.0


def test_wrapper_stacks_frames_and_keeps_the_dynamics():
    env = lrne.wrappers.pixel_pendulum(size=16, frames=2)
    params = env.default_params
    obs, state = env.reset_env(jax.random.key(0), params)
    assert obs.shape == (16, 16, 2)
    np.testing.assert_array_equal(obs[..., 0], obs[..., 1])
    inner_env = env.env
    action = jnp.array([1.5])
    obs2, state2, reward, done, _ = env.step_env(jax.random.key(1), state, action, params)
    _, inner2, inner_reward, inner_done, _ = inner_env.step_env(
        jax.random.key(1), state.inner, action, params
    )
    assert float(reward) == float(inner_reward) and bool(done) == bool(inner_done)
    np.testing.assert_array_equal(obs2[..., 0], obs[..., 1])
    np.testing.assert_allclose(obs2[..., 1], render_pendulum(inner2, 16))
    assert int(state2.time) == 1
    assert env.observation_space(params).shape == (16, 16, 2)
    assert env.action_space(params).shape == inner_env.action_space(params).shape
    with pytest.raises(ValueError, match="frames"):
        PixelObservation(inner_env, lambda s: render_pendulum(s, 8), frames=0)


def test_pixel_policy_population_evaluates_with_continuous_actions():
    env = lrne.wrappers.pixel_pendulum(size=16, frames=2)
    policy = lrne.nn.MinAtarCNN(1, rank=2, channels=4, hidden=8, strides=(2, 2))
    task = lrne.tasks.Gymnax(env, policy, max_steps=20)
    strategy = lrne.ga(4, 1, 0.5)
    state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)))
    state, metrics = jax.jit(lrne.generation_step(strategy, task))(state, jax.random.key(2))
    assert int(metrics["env_steps"]) == 4 * 20  # Pendulum never ends early
    assert float(metrics["fitness_max"]) < 0  # Pendulum rewards are costs


@pytest.mark.parametrize(
    "env_id",
    [
        "Breakout-MinAtar",
        # Each game costs a compile of its dynamics; the GA step is the same.
        pytest.param("SpaceInvaders-MinAtar", marks=pytest.mark.slow),
        pytest.param("Asterix-MinAtar", marks=pytest.mark.slow),
        pytest.param("Freeway-MinAtar", marks=pytest.mark.slow),
    ],
)
def test_factorized_cnn_policy_plays_minatar(env_id):
    policy = lrne.nn.MinAtarCNN(lrne.tasks.action_size(env_id), rank=4)
    task = lrne.tasks.Gymnax(env_id, policy, max_steps=10)
    params = task.init_params(jax.random.key(0))
    assert params["params"]["Dense_0"]["kernel"].rank == 4  # factorized
    strategy = lrne.ga(4, 1, 0.1)
    state = strategy.init(jax.random.key(1), params)
    state, metrics = jax.jit(lrne.generation_step(strategy, task))(state, jax.random.key(2))
    assert 0 < int(metrics["env_steps"]) <= 4 * 10
    assert bool(jnp.isfinite(metrics["fitness_max"]))
