"""Learning the parameters of the Lorenz system from its trajectory.

The unrolled-optimization benchmark of Vicol, Metz, Sohl-Dickstein 2021
(*Unbiased Gradient Estimation in Unrolled Computation Graphs with Persistent
Evolution Strategies*, arXiv 2112.13835) as used by Li et al. 2023 (*Noise-Reuse
in Online Evolution Strategies*, arXiv 2304.12180): the Lorenz equations

    ẋ = a(y − x),   ẏ = x(r − z) − y,   ż = xy − b·z

are integrated with explicit Euler steps of dt = 0.005 for T = 2000 steps from a
fixed initial state. θ = (log a, log r) starts at (3.116, 3.7); the ground truth
is a = 10, r = 28 (b = 8/3 stays fixed). The per-step loss is (z_t − z*_t)², so
the objective is the mean over T steps. The system is chaotic, so the loss
surface is rugged and backpropagation through long unrolls explodes: the case
online ES is for.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lrne.errors import ArgumentError
from lrne.genome import Metrics, Population, PyTree
from lrne.nn.perturbed import member_variables
from lrne.tasks.base import Task


class Lorenz(Task):
    """Fit (log a, log r) of a Lorenz system; fitness per step is −(z − z*)².

    Args:
        horizon: T, steps per episode.
        dt: Euler step.
        init_log_a: starting log a (:meth:`init_params`).
        init_log_r: starting log r.
        true_a: a of the system that produced the target trajectory.
        true_r: r of that system.
        b: b of both systems.
        initial_state: (x, y, z) at t = 0 for both systems. The issue and the
            papers fix everything else; (1.2, 1.3, 1.6) is lrne's choice.
    """

    def __init__(
        self,
        horizon: int = 2000,
        dt: float = 0.005,
        init_log_a: float = 3.116,
        init_log_r: float = 3.7,
        true_a: float = 10.0,
        true_r: float = 28.0,
        b: float = 8.0 / 3.0,
        initial_state: tuple[float, float, float] = (1.2, 1.3, 1.6),
    ) -> None:
        if not isinstance(horizon, int) or horizon < 1:
            raise ArgumentError("horizon", f"horizon must be an int >= 1, got {horizon!r}")
        if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
            raise ArgumentError("dt", f"dt must be a finite number > 0, got {dt!r}")
        self.horizon = horizon
        self.dt = float(dt)
        self.b = float(b)
        self.init_log_a = float(init_log_a)
        self.init_log_r = float(init_log_r)
        self.initial_state = jnp.asarray(initial_state, jnp.float32)
        truth = {"log_a": jnp.log(jnp.float32(true_a)), "log_r": jnp.log(jnp.float32(true_r))}
        self.target_z = self.trajectory(truth)[:, 2]
        self.true_params = {"params": truth}

    def init_params(self, key: jax.Array | None = None) -> PyTree:
        """θ at the paper's starting point, as a variables dict."""
        del key
        return {
            "params": {
                "log_a": jnp.array(self.init_log_a, jnp.float32),
                "log_r": jnp.array(self.init_log_r, jnp.float32),
            }
        }

    def dynamics(self, params: PyTree, state: jax.Array) -> jax.Array:
        """One Euler step of the Lorenz system under ``params`` (a params collection)."""
        a, r = jnp.exp(params["log_a"]), jnp.exp(params["log_r"])
        x, y, z = state[..., 0], state[..., 1], state[..., 2]
        rate = jnp.stack([a * (y - x), x * (r - z) - y, x * y - self.b * z], axis=-1)
        return state + self.dt * rate

    def trajectory(self, params: PyTree) -> jax.Array:
        """States after steps 1..T, shape (T, 3)."""

        def body(state: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
            state = self.dynamics(params, state)
            return state, state

        return jax.lax.scan(body, self.initial_state, None, length=self.horizon)[1]

    def loss(self, variables: PyTree) -> jax.Array:
        """The objective at θ (a variables dict): mean over the horizon of (z_t − z*_t)²."""
        return jnp.mean((self.trajectory(variables["params"])[:, 2] - self.target_z) ** 2)

    def differentiable_loss(self, key: jax.Array, variables: PyTree) -> jax.Array:
        """:meth:`loss`: minus the fitness (``key`` unused; the system is deterministic).
        Backprop through the chaotic unroll: its gradient grows with the horizon."""
        del key
        return self.loss(variables)

    def evaluate_members(
        self, keys: jax.Array, population: Population
    ) -> tuple[jax.Array, Metrics]:
        """Fitness (M,) = −the exact objective of each member (whole trajectories)."""
        del keys
        shared, members = population
        loss = lambda member: self.loss(member_variables(shared, member))
        return -jax.vmap(loss)(members), {}

    def step_loss(
        self, params: PyTree, state: jax.Array, t: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(next state, (z_{t+1} − z*_{t+1})²) for one system at episode step t."""
        state = self.dynamics(params, state)
        target = self.target_z[jnp.clip(t, 0, self.horizon - 1)]
        return state, (state[..., 2] - target) ** 2

    def reset(self, keys: jax.Array) -> jax.Array:
        """The initial state for each key, (M, 3); the system is deterministic."""
        return jnp.broadcast_to(self.initial_state, (keys.shape[0], 3))

    def unroll(
        self,
        keys: jax.Array,
        population: Population,
        inner: jax.Array,
        t: jax.Array,
        num_steps: int,
    ) -> tuple[jax.Array, jax.Array]:
        """Advance each member ``num_steps`` steps; fitness (M, num_steps) = −loss."""
        del keys
        shared, members = population  # in evaluation form: θ + δ per member
        params = jax.vmap(lambda m: member_variables(shared, m)["params"])(members)

        def body(state: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
            state, loss = jax.vmap(self.step_loss)(params, state, t + i)
            return state, -loss

        inner, fitness = jax.lax.scan(body, inner, jnp.arange(num_steps))
        return inner, fitness.T
