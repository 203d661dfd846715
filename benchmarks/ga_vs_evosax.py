"""GA generation time: lrne (rank 0 and rank 4) vs evosax SimpleGA + GymnaxProblem.

Breakout-MinAtar, population 256, MLP 400→256→256→3 (tanh) on flattened
observations, one episode per member run to the full 1000 steps (early exit off
for all three), argmax actions. Same process, warm, median of interleaved
generations. Writes benchmarks/results/ga_vs_evosax.json.

    python benchmarks/ga_vs_evosax.py [--quick]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from common import median, time_interleaved
from evosax.algorithms import SimpleGA
from evosax.problems import GymnaxProblem
from flax import linen as nn
from harness import goal, script

import lrne

ENV = "Breakout-MinAtar"
FULL = {"population_size": 256, "hidden": [256, 256], "episode_steps": 1000, "repetitions": 5}
QUICK = {**FULL, "population_size": 16, "hidden": [32, 32], "episode_steps": 50}
TARGETS = {"speedup_rank0": (">=", 0.9), "speedup_rank4": (">=", 10.0)}


class EvosaxPolicy(nn.Module):
    """The same network in evosax's policy signature ``apply(params, obs, key)``."""

    hidden: tuple[int, ...]
    num_outputs: int

    @nn.compact
    def __call__(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        x = obs.reshape(-1)
        for width in self.hidden:
            x = nn.tanh(nn.Dense(width)(x))
        return jnp.argmax(nn.Dense(self.num_outputs)(x))


def evosax_generation(strategy, params, problem, problem_state):
    """One jitted evosax generation: ask, evaluate, tell (evosax minimizes)."""

    @jax.jit
    def step(state, key):
        key_ask, key_eval, key_tell = jax.random.split(key, 3)
        population, state = strategy.ask(key_ask, state, params)
        returns, _, _ = problem.eval(key_eval, population, problem_state)
        state, _ = strategy.tell(key_tell, population, -returns, state, params)
        return state

    return step


def evosax_step(population_size: int, hidden: tuple[int, ...], steps: int, key: jax.Array):
    problem = GymnaxProblem(
        ENV, EvosaxPolicy(hidden, 3), episode_length=steps, use_normalize_obs=False
    )
    solution = problem.sample(key)
    strategy = SimpleGA(population_size=population_size, solution=solution)
    params = strategy.default_params
    population = jax.vmap(problem.sample)(jax.random.split(key, population_size))
    state = strategy.init(key, population, jnp.zeros(population_size), params)
    return evosax_generation(strategy, params, problem, problem.init(key)), state


def lrne_step(population_size: int, hidden: tuple[int, ...], steps: int, rank: int, key):
    # input_ndim=3: one (10, 10, 4) observation, flattened, is one input.
    policy = lrne.nn.MLP(hidden, 3, rank=rank, input_ndim=3)
    task = lrne.tasks.Gymnax(ENV, policy, max_steps=steps, early_exit=False)
    strategy = lrne.ga(population_size, num_elites=population_size // 16, sigma=0.1)
    state = strategy.init(key, task.init_params(key))
    generation = jax.jit(lrne.generation_step(strategy, task))
    return (lambda state, key: generation(state, key)[0]), state


def run(args) -> dict:
    population, hidden, steps = args.population_size, tuple(args.hidden), args.episode_steps
    key = jax.random.key(0)
    runs = {
        "evosax": evosax_step(population, hidden, steps, key),
        "lrne_rank0": lrne_step(population, hidden, steps, 0, key),
        "lrne_rank4": lrne_step(population, hidden, steps, 4, key),
    }
    times, first = time_interleaved(runs, args.repetitions, jax.random.key(1))
    s = {name: median(t) for name, t in times.items()}
    return {
        "evosax_s_per_gen": s["evosax"],
        "lrne_rank0_s_per_gen": s["lrne_rank0"],
        "lrne_rank4_s_per_gen": s["lrne_rank4"],
        "speedup_rank0": s["evosax"] / s["lrne_rank0"],
        "speedup_rank4": s["evosax"] / s["lrne_rank4"],
        "setup": {"env": ENV, "mlp": [400, *hidden, 3], "early_exit": False},
        "all_s_per_gen": times,
        "first_call_s": first,
    }


def table(ga: dict) -> str:
    """Markdown: seconds per generation of each method and the speedups over evosax."""
    setup = ga["setup"]
    return "\n".join(
        [
            f"**GA generation time** (`benchmarks/ga_vs_evosax.py`): {setup['env']}, population "
            f"{setup['population_size']}, MLP {'→'.join(map(str, setup['mlp']))}, one episode of "
            f"{setup['episode_steps']} steps per member, early exit off; median of "
            f"{setup['repetitions']} warm interleaved generations.",
            "",
            "| method | s / generation | speedup vs evosax | target |",
            "| --- | ---: | ---: | ---: |",
            f"| evosax 0.3 `SimpleGA` + `GymnaxProblem` | {ga['evosax_s_per_gen']:.3f} | 1.00 | |",
            f"| lrne GA, dense (rank 0) | {ga['lrne_rank0_s_per_gen']:.3f} | "
            f"{ga['speedup_rank0']:.2f} | {goal(TARGETS, 'speedup_rank0')} |",
            f"| lrne GA, factorized (rank 4) | {ga['lrne_rank4_s_per_gen']:.3f} | "
            f"{ga['speedup_rank4']:.2f} | {goal(TARGETS, 'speedup_rank4')} |",
            "",
            f"Machine: {ga['machine']}.",
        ]
    )


if __name__ == "__main__":
    script(__file__)
