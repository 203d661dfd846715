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

from typing import Any

import jax
import jax.numpy as jnp
import optax
from common import median, time_interleaved
from harness import goal, script

import lrne
from lrne.tasks.gymnax import Gymnax, _Slots

FULL = {
    # env: [MLP hidden widths, episode steps]
    "envs": {"Breakout-MinAtar": [[256, 256], 1000], "CartPole-v1": [[64, 64], 500]},
    "ga_population": 256,
    "es_population": 1024,
    "sweep_populations": [64, 128, 256, 512],
    "repetitions": 7,
}
QUICK = {
    **FULL,
    "envs": {"Breakout-MinAtar": [[32, 32], 50], "CartPole-v1": [[16, 16], 50]},
    "ga_population": 16,
    "es_population": 64,
    "sweep_populations": [8, 16],
}
TARGETS = {"ga_over_floor/*": ("<=", 1.3), "es_over_floor/*": ("<=", 1.1)}


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


def measure(env_id: str, hidden: tuple[int, ...], steps: int, args) -> dict:
    key = jax.random.key(0)
    rows: dict[str, Any] = {}
    arms = {
        "ga": (4, args.ga_population, lambda p: lrne.ga(p, num_elites=p // 8, sigma=0.1)),
        "es": (0, args.es_population, lambda p: lrne.es(p, 0.05, optax.sgd(0.01), 1)),
    }
    for arm, (rank, population, make) in arms.items():
        task = task_for(env_id, hidden, steps, rank)
        params = task.init_params(key)
        runs = {
            "generation": generation(make(population), task, params),
            "env": (env_only(task, population), jnp.zeros((), jnp.float32)),
            "forward": (forward_only(task, params, population), jnp.zeros((), jnp.int32)),
        }
        times, first = time_interleaved(runs, args.repetitions, jax.random.key(1))
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


def arguments(parser) -> None:
    parser.add_argument("--envs", nargs="+", dest="only", choices=list(FULL["envs"]))


def run(args) -> dict:
    envs = {}
    for env_id in args.only or args.envs:
        hidden, steps = args.envs[env_id]
        envs[env_id] = measure(env_id, tuple(hidden), steps, args)
        print(env_id, {k: round(v, 3) for k, v in envs[env_id].items() if "over" in k})
    hidden, steps = args.envs["Breakout-MinAtar"]
    sweep = ga_population_sweep(args.sweep_populations, tuple(hidden), steps, args.repetitions)
    return {
        "envs": envs,
        "ga_population_sweep": sweep,
        "ga_over_floor": {e: r["ga_over_floor"] for e, r in envs.items()},
        "es_over_floor": {e: r["es_over_floor"] for e, r in envs.items()},
        "setup": {"early_exit": False},
    }


def table(fl: dict) -> str:
    """Markdown: each arm's generation against its floor, env and forward alone."""
    lines = [
        "**The floor** (`benchmarks/floor.py`): one generation against what stepping the "
        "same episodes alone (action 0, no network) plus one forward pass of the "
        "unperturbed network over the same batch alone cost, same process, interleaved.",
        "",
        "| env | arm | generation s | env s | forward s | floor s | over floor | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {"ga": "GA, rank 4", "es": "low-rank ES, rank-1 noise"}
    for env, row in fl["envs"].items():
        for arm in ("ga", "es"):
            r = row[arm]
            lines.append(
                f"| {env} (MLP {'×'.join(map(str, row['mlp']))}, {row['episode_steps']} steps) | "
                f"{names[arm]}, population {r['population_size']} | {r['generation_s']:.3f} | "
                f"{r['env_s']:.3f} | {r['forward_s']:.3f} | {r['floor_s']:.3f} | "
                f"**{r['over_floor']:.2f}** | {goal(TARGETS, arm + '_over_floor/*')} |"
            )
    sweep = fl.get("ga_population_sweep")
    if sweep:
        extra = [r["extra_us_per_member_step"] for r in sweep.values()]
        lines += [
            "",
            "The GA's own factors cost "
            f"{min(extra):.2f}–{max(extra):.2f} µs per member-step beyond the floor at "
            f"populations {', '.join(sweep)} on Breakout (over floor: "
            + ", ".join(f"{r['over_floor']:.2f}" for r in sweep.values())
            + ").",
        ]
    return "\n".join([*lines, "", f"Machine: {fl['machine']}."])


if __name__ == "__main__":
    script(__file__)
