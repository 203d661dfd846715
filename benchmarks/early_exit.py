"""Compaction vs one buffer run until all are done, at uniform episode lengths.

CartPole-v1 with its failure thresholds lifted and each episode's length drawn
uniformly from [1, T] at reset (from the episode's own key), population 1024,
MLP 4→256→256→2 policy at rank 4. Both evaluations stop when every episode is
done; one also compacts live episodes into smaller buffers as they finish.
Writes benchmarks/results/early_exit.json.

    python benchmarks/early_exit.py [--quick]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from common import median, time_interleaved
from flax import struct
from gymnax.environments import environment
from harness import goal, script

import lrne

FULL = {
    "population_size": 1024,
    "horizon_T": 500,
    "hidden": [256, 256],
    "rank": 4,
    "compaction": 0.75,
    "repetitions": 5,
}
QUICK = {**FULL, "population_size": 64, "horizon_T": 50, "hidden": [32, 32]}
TARGETS = {"speedup_compaction": (">=", 1.6)}


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


def run(args) -> dict:
    cartpole, params = lrne.tasks.make_env("CartPole-v1")
    lifted = params.replace(
        x_threshold=1e9, theta_threshold_radians=1e9, max_steps_in_episode=10**9
    )
    horizon = args.horizon_T
    env = UniformLength(cartpole, lifted, horizon)
    policy = lrne.nn.MLP(tuple(args.hidden), 2, rank=args.rank)
    compacted = lrne.tasks.Gymnax(env, policy, max_steps=horizon, compaction=args.compaction)
    one_buffer = lrne.tasks.Gymnax(env, policy, max_steps=horizon, compaction=None)
    key = jax.random.key(0)
    members = jax.vmap(compacted.init_params)(jax.random.split(key, args.population_size))
    members = lrne.Population(shared={}, members=members)  # a GA population's shape

    evaluate = {
        "compacted": jax.jit(compacted.evaluate),
        "one_buffer": jax.jit(one_buffer.evaluate),
    }
    runs = {name: (lambda _, k, f=f: f(key, members), None) for name, f in evaluate.items()}
    times, first = time_interleaved(runs, args.repetitions, key)

    fit_c, m_c = evaluate["compacted"](key, members)
    fit_o, m_o = evaluate["one_buffer"](key, members)
    return {
        "speedup_compaction": median(times["one_buffer"]) / median(times["compacted"]),
        "identical_fraction": float(np.mean(np.asarray(fit_c) == np.asarray(fit_o))),
        "compacted_s": median(times["compacted"]),
        "one_buffer_s": median(times["one_buffer"]),
        "env_steps_lived": int(m_c["env_steps"]),
        "slot_steps_compacted": int(m_c["env_steps_computed"]),
        "slot_steps_one_buffer": int(m_o["env_steps_computed"]),
        "mean_episode_length": float(jnp.mean(fit_o)),
        "setup": {
            "env": "CartPole-v1, thresholds lifted, length ~ U{1..T}",
            "mlp": [4, *args.hidden, 2],
        },
        "all_s": times,
        "first_call_s": first,
    }


def table(ee: dict) -> str:
    """Markdown: one buffer against compaction, seconds and slot-steps."""
    setup = ee["setup"]
    return "\n".join(
        [
            f"**Early exit with compaction** (`benchmarks/early_exit.py`): population "
            f"{setup['population_size']}, MLP {'×'.join(map(str, setup['mlp'][1:-1]))} "
            f"at rank {setup['rank']}, CartPole-v1 with lengths uniform over "
            f"[1, {setup['horizon_T']}]; both stop when all episodes are done.",
            "",
            "| evaluation | s / evaluation | slot-steps executed | returns identical | target |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| one buffer until all done | {ee['one_buffer_s']:.3f} | "
            f"{ee['slot_steps_one_buffer']:,} | | |",
            f"| compaction at {setup['compaction']} occupancy | {ee['compacted_s']:.3f} | "
            f"{ee['slot_steps_compacted']:,} | {ee['identical_fraction']:.0%} | |",
            f"| **speedup_compaction** | **{ee['speedup_compaction']:.2f}** | | | "
            f"{goal(TARGETS, 'speedup_compaction')} |",
            "",
            f"Machine: {ee['machine']}. Steps lived by the episodes: {ee['env_steps_lived']:,}.",
        ]
    )


if __name__ == "__main__":
    script(__file__)
