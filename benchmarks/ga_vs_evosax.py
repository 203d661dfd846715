"""GA generation time: lrne (rank 0 and rank 4) vs evosax SimpleGA + GymnaxProblem.

Breakout-MinAtar, population 256, MLP 400→256→256→3 (tanh) on flattened
observations, one episode per member run to the full 1000 steps (early exit off
for all three), argmax actions. Same process, warm, median of interleaved
generations. Writes benchmarks/results/ga_vs_evosax.json.

    python benchmarks/ga_vs_evosax.py [--quick]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from common import machine, median, time_interleaved, write
from evosax.algorithms import SimpleGA
from evosax.problems import GymnaxProblem
from flax import linen as nn

import lrne

ENV = "Breakout-MinAtar"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    population, hidden, steps = (16, (32, 32), 50) if args.quick else (256, (256, 256), 1000)
    key = jax.random.key(0)
    runs = {
        "evosax": evosax_step(population, hidden, steps, key),
        "lrne_rank0": lrne_step(population, hidden, steps, 0, key),
        "lrne_rank4": lrne_step(population, hidden, steps, 4, key),
    }
    times, first = time_interleaved(runs, args.repetitions, jax.random.key(1))
    evosax_s = median(times["evosax"])
    result = {
        "evosax_s_per_gen": evosax_s,
        "lrne_rank0_s_per_gen": median(times["lrne_rank0"]),
        "lrne_rank4_s_per_gen": median(times["lrne_rank4"]),
        "speedup_rank0": evosax_s / median(times["lrne_rank0"]),
        "speedup_rank4": evosax_s / median(times["lrne_rank4"]),
        "machine": machine(),
        "setup": {
            "env": ENV,
            "population_size": population,
            "mlp": [400, *hidden, 3],
            "episode_steps": steps,
            "early_exit": False,
            "repetitions": args.repetitions,
            "quick": args.quick,
        },
        "all_s_per_gen": times,
        "first_call_s": first,
    }
    write("ga_vs_evosax_quick" if args.quick else "ga_vs_evosax", result)


if __name__ == "__main__":
    main()
