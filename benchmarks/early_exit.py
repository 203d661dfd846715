"""Compaction vs one buffer run until all are done, at uniform episode lengths.

CartPole-v1 with its failure thresholds lifted and each episode's length drawn
uniformly from [1, T] at reset (from the episode's own key), population 1024,
MLP 4→256→256→2 policy at rank 4. Both evaluations stop when every episode is
done; one also compacts live episodes into smaller buffers as they finish.
Writes benchmarks/results/early_exit.json.

    python benchmarks/early_exit.py [--quick]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from common import machine, median, time_interleaved, write
from flax import struct
from gymnax.environments import environment

import lrne


@struct.dataclass
class LimitState(environment.EnvState):
    inner: environment.EnvState
    limit: jax.Array


class UniformLength(environment.Environment):
    """Wraps an env: its own terminations off, episode ends after U{1..T} steps."""

    def __init__(self, env, env_params, horizon: int):
        super().__init__()
        self.env, self.inner_params, self.horizon = env, env_params, horizon

    @property
    def default_params(self):
        return environment.EnvParams(max_steps_in_episode=self.horizon)

    def reset_env(self, key, params):
        key_reset, key_limit = jax.random.split(key)
        obs, inner = self.env.reset_env(key_reset, self.inner_params)
        limit = jax.random.randint(key_limit, (), 1, self.horizon + 1)
        return obs, LimitState(time=0, inner=inner, limit=limit)

    def step_env(self, key, state, action, params):
        obs, inner, reward, _, _ = self.env.step_env(key, state.inner, action, self.inner_params)
        time = state.time + 1
        return (
            obs,
            LimitState(time=time, inner=inner, limit=state.limit),
            reward,
            time >= state.limit,
            {},
        )

    def action_space(self, params):
        return self.env.action_space(self.inner_params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--compaction", type=float, default=0.75)
    args = parser.parse_args()
    population, horizon, hidden = (64, 50, (32, 32)) if args.quick else (1024, 500, (256, 256))

    cartpole, params = lrne.tasks.make_env("CartPole-v1")
    lifted = params.replace(
        x_threshold=1e9, theta_threshold_radians=1e9, max_steps_in_episode=10**9
    )
    env = UniformLength(cartpole, lifted, horizon)
    policy = lrne.nn.MLP(hidden, 2, rank=4)
    compacted = lrne.tasks.Gymnax(env, policy, max_steps=horizon, compaction=args.compaction)
    one_buffer = lrne.tasks.Gymnax(env, policy, max_steps=horizon, compaction=None)
    key = jax.random.key(0)
    members = jax.vmap(compacted.init_params)(jax.random.split(key, population))
    members = lrne.Population(shared={}, members=members)  # a GA population's shape

    evaluate = {
        "compacted": jax.jit(compacted.evaluate),
        "one_buffer": jax.jit(one_buffer.evaluate),
    }
    runs = {name: (lambda _, k, f=f: f(key, members), None) for name, f in evaluate.items()}
    times, first = time_interleaved(runs, args.repetitions, key)

    fit_c, m_c = evaluate["compacted"](key, members)
    fit_o, m_o = evaluate["one_buffer"](key, members)
    identical = float(np.mean(np.asarray(fit_c) == np.asarray(fit_o)))
    result = {
        "speedup_compaction": median(times["one_buffer"]) / median(times["compacted"]),
        "identical_fraction": identical,
        "compacted_s": median(times["compacted"]),
        "one_buffer_s": median(times["one_buffer"]),
        "env_steps_lived": int(m_c["env_steps"]),
        "slot_steps_compacted": int(m_c["env_steps_computed"]),
        "slot_steps_one_buffer": int(m_o["env_steps_computed"]),
        "mean_episode_length": float(jnp.mean(fit_o)),
        "machine": machine(),
        "setup": {
            "env": "CartPole-v1, thresholds lifted, length ~ U{1..T}",
            "population_size": population,
            "horizon_T": horizon,
            "mlp": [4, *hidden, 2],
            "rank": 4,
            "compaction": args.compaction,
            "repetitions": args.repetitions,
            "quick": args.quick,
        },
        "all_s": times,
        "first_call_s": first,
    }
    write("early_exit_quick" if args.quick else "early_exit", result)


if __name__ == "__main__":
    main()
