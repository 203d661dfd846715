"""The floor: one generation against env stepping alone plus the shared forward alone.

If perturbing a policy were free, a generation would cost what stepping the
environments costs plus what one forward pass of the unperturbed network over
the same batch costs. This script measures, in one process, interleaved, warm
medians, for each env:

- ``generation``: one jitted ``lrne.generation_step`` (ask, evaluate, tell);
- ``env``: the same episodes stepped the same number of times by the same
  stepping code (``Gymnax._step``), every action 0, no network;
- ``forward``: the network with ONE set of params (the GA's rank-4 factors, the
  ES's dense mean) applied to the same batch of observations once per step,
  for the same number of steps, with no env.

``ga_over_floor = generation / (env + forward)`` for the factorized GA
(population 256, rank 4, 32 elites), ``es_over_floor`` likewise for low-rank ES
(population 1024, rank-1 noise on a dense network). Episodes run to the full
length (early exit off), so every arm steps the same slots. Networks: MLP
400→256→256→3 on Breakout-MinAtar (1000 steps), 4→64→64→2 on CartPole-v1 (500
steps), tanh, argmax actions. ``ga_population_sweep`` repeats the GA's three
timings on Breakout at populations 64 to 512: ``extra_us_per_member_step`` =
(generation − floor) / (population × steps), the cost the members' own
factors add. Writes ``benchmarks/results/floor.json``.

    python benchmarks/floor.py [--quick] [--repetitions 7]
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import optax
from common import machine, median, time_interleaved, write

import lrne
from lrne.tasks.gymnax import Gymnax, _Slots

ENVS = {"Breakout-MinAtar": ((256, 256), 1000), "CartPole-v1": ((64, 64), 500)}
QUICK = {"Breakout-MinAtar": ((32, 32), 50), "CartPole-v1": ((16, 16), 50)}


def task_for(env_id: str, hidden: tuple[int, ...], steps: int, rank: int) -> Gymnax:
    env, env_params = lrne.tasks.make_env(env_id)
    ndim = len(env.observation_space(env_params).shape)
    policy = lrne.nn.MLP(hidden, lrne.tasks.action_size(env_id), rank=rank, input_ndim=ndim)
    return Gymnax(env_id, policy, max_steps=steps, early_exit=False)


def slots(task: Gymnax, key: jax.Array, size: int) -> _Slots:
    """``size`` fresh episodes, laid out as ``Gymnax.evaluate_members`` lays them out."""
    return task.fresh_slots(jax.random.split(key, size))


def env_only(task: Gymnax, size: int):
    """``step(total, key)``: every episode stepped ``max_steps`` times with action 0."""

    @jax.jit
    def step(total: jax.Array, key: jax.Array) -> jax.Array:
        start = slots(task, key, size)
        zero = lambda obs: jnp.zeros(size, task.action_space.dtype)
        done = jax.lax.fori_loop(0, task.max_steps, lambda t, s: task._step(zero, s, t), start)
        return total + jnp.sum(done.ret)

    return step


def forward_only(task: Gymnax, params: Any, size: int):
    """``step(total, key)``: the shared network on ``size`` observations, ``max_steps`` times.

    The observations are fresh env observations, shifted by the step index so
    that no pass can be hoisted out of the loop; the actions are summed.
    """
    act = jax.vmap(task.action, (None, 0))

    @jax.jit
    def step(total: jax.Array, key: jax.Array) -> jax.Array:
        obs = slots(task, key, size).obs.astype(jnp.float32)

        def body(t: jax.Array, acc: jax.Array) -> jax.Array:
            return acc + jnp.sum(act(params, obs + t.astype(jnp.float32)))

        return total + jax.lax.fori_loop(0, task.max_steps, body, jnp.zeros((), jnp.int32))

    return step


def generation(strategy: lrne.Strategy, task: Gymnax, params: Any):
    step = jax.jit(lrne.generation_step(strategy, task))
    state = strategy.init(jax.random.key(0), params)
    return (lambda s, k: step(s, k)[0]), state


def measure(env_id: str, hidden: tuple[int, ...], steps: int, reps: int, quick: bool) -> dict:
    key = jax.random.key(0)
    rows: dict[str, Any] = {}
    arms = {
        "ga": (4, 16 if quick else 256, lambda p: lrne.ga(p, num_elites=p // 8, sigma=0.1)),
        "es": (0, 64 if quick else 1024, lambda p: lrne.es(p, 0.05, optax.sgd(0.01), 1)),
    }
    for arm, (rank, population, make) in arms.items():
        task = task_for(env_id, hidden, steps, rank)
        params = task.init_params(key)
        runs = {
            "generation": generation(make(population), task, params),
            "env": (env_only(task, population), jnp.zeros((), jnp.float32)),
            "forward": (forward_only(task, params, population), jnp.zeros((), jnp.int32)),
        }
        times, first = time_interleaved(runs, reps, jax.random.key(1))
        medians = {name: median(t) for name, t in times.items()}
        floor = medians["env"] + medians["forward"]
        rows[arm] = {
            "population_size": population,
            "rank": rank if arm == "ga" else 0,
            "noise_rank": 1 if arm == "es" else None,
            "generation_s": medians["generation"],
            "env_s": medians["env"],
            "forward_s": medians["forward"],
            "floor_s": floor,
            "over_floor": medians["generation"] / floor,
            "all_s": times,
            "first_call_s": first,
        }
    return {
        "ga_over_floor": rows["ga"]["over_floor"],
        "es_over_floor": rows["es"]["over_floor"],
        "mlp": [*hidden],
        "episode_steps": steps,
        **rows,
    }


def ga_population_sweep(populations: list[int], hidden, steps: int, reps: int) -> dict:
    """The GA's generation, env-only and forward-only times on Breakout per population."""
    task = task_for("Breakout-MinAtar", hidden, steps, 4)
    params = task.init_params(jax.random.key(0))
    runs = {}
    for p in populations:
        runs[f"generation/{p}"] = generation(lrne.ga(p, num_elites=p // 8, sigma=0.1), task, params)
        runs[f"env/{p}"] = (env_only(task, p), jnp.zeros((), jnp.float32))
        runs[f"forward/{p}"] = (forward_only(task, params, p), jnp.zeros((), jnp.int32))
    times, _ = time_interleaved(runs, reps, jax.random.key(1))
    rows = {}
    for p in populations:
        gen, env, fwd = (median(times[f"{n}/{p}"]) for n in ("generation", "env", "forward"))
        rows[str(p)] = {
            "generation_s": gen,
            "env_s": env,
            "forward_s": fwd,
            "over_floor": gen / (env + fwd),
            "extra_us_per_member_step": (gen - env - fwd) / (p * steps) * 1e6,
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    args = parser.parse_args()
    sizes = QUICK if args.quick else ENVS
    envs = {}
    for env_id in args.envs:
        hidden, steps = sizes[env_id]
        envs[env_id] = measure(env_id, hidden, steps, args.repetitions, args.quick)
        print(env_id, {k: round(v, 3) for k, v in envs[env_id].items() if "over" in k})
    populations = [8, 16] if args.quick else [64, 128, 256, 512]
    hidden, steps = sizes["Breakout-MinAtar"]
    sweep = ga_population_sweep(populations, hidden, steps, args.repetitions)
    result = {
        "envs": envs,
        "ga_population_sweep": sweep,
        "ga_over_floor": {e: r["ga_over_floor"] for e, r in envs.items()},
        "es_over_floor": {e: r["es_over_floor"] for e, r in envs.items()},
        "targets": {"ga_over_floor": 1.3, "es_over_floor": 1.1},
        "machine": machine(),
        "setup": {"early_exit": False, "repetitions": args.repetitions, "quick": args.quick},
    }
    write("floor_quick" if args.quick else "floor", result)


if __name__ == "__main__":
    main()
