"""Pendulum-v1 from pixels: an lrne run that learns, against the clock.

Pendulum-v1 rendered into 32×32 grey images with the last 2 frames stacked
(``lrne.wrappers.pixel_pendulum``), the stride-2 MinAtar CNN
(``lrne.nn.MinAtarCNN(1, strides=(2, 2))``, continuous torque through tanh),
trained by lrne low-rank ES (registry ``es_lowrank``) or the factorized GA
(registry ``ga``) for ``--minutes`` of wall-clock (compiling included). Every
``--eval-seconds`` the answer (ES: the mean; GA: the top elite) is scored on
32 fresh episodes, off the clock; the final answer on 128. Random policies
score about −1200; the target is ≥ −400 within 30 minutes.

Writes ``benchmarks/results/pixel_pendulum_<method>.json``.

    python benchmarks/pixel_pendulum.py --method es [--minutes 30] [--set sigma=0.05]
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from common import Snapshots, mean_ci95
from harness import goal, overridden, read_each, script

import lrne
from lrne.callbacks import TimeLimit
from lrne.rundir import run_keys

SETTINGS = {
    "es": {
        "population": 256,
        "sigma": 0.03,
        "learning_rate": 0.02,
        "episodes": 2,
        "hidden": 64,
        "rank": 0,
    },
    "ga": {"population": 256, "sigma": 0.1, "episodes": 1, "hidden": 64, "rank": 4},
}
FULL = {"minutes": 30.0, "eval_seconds": 60.0, "seed": 0, "size": 32, "final_episodes": 128}
QUICK = {**FULL, "minutes": 0.1, "eval_seconds": 2.0, "size": 16}
TARGETS = {"*/final_return": (">=", -400.0)}


def build(setting: dict, size: int = 32):
    env = lrne.wrappers.pixel_pendulum(size=size, frames=2)
    policy = lrne.nn.MinAtarCNN(
        1, rank=int(setting["rank"]), hidden=int(setting["hidden"]), strides=(2, 2)
    )
    return lrne.tasks.Gymnax(env, policy, num_episodes=int(setting["episodes"]))


def strategy_for(method: str, setting: dict) -> lrne.Strategy:
    population = int(setting["population"])
    if method == "es":
        return lrne.strategies.make(
            "es_lowrank",
            population,
            sigma=setting["sigma"],
            optimizer=optax.adam(setting["learning_rate"]),
        )
    return lrne.strategies.make(
        "ga", population, sigma=setting["sigma"], num_elites=max(1, population // 8)
    )


def episode_returns(task, params, key: jax.Array, episodes: int) -> np.ndarray:
    """Returns of ``episodes`` fresh episodes: ``episodes`` copies of ``params``, one each."""
    single = lrne.tasks.Gymnax(task.env, task.policy, num_episodes=1)
    copies = jax.tree.map(lambda x: np.broadcast_to(x, (episodes, *x.shape)), params)
    fitness, _ = jax.jit(single.evaluate)(key, lrne.Population({}, copies))
    return np.asarray(fitness)


def arguments(parser) -> None:
    parser.add_argument("--method", choices=sorted(SETTINGS), default="es")
    parser.add_argument("--set", nargs="*", default=[], help="setting overrides, key=value")
    parser.add_argument("--name", default=None, help="output name (default by method)")


def output(args) -> str:
    return args.name or f"pixel_pendulum_{args.method}"


def run(args) -> dict:
    setting = overridden(SETTINGS[args.method], args.set)
    if args.quick:
        setting["population"] = 16
    seconds, size = args.minutes * 60, args.size
    task = build(setting, size)
    answer = (
        (lambda s: s.mean)
        if args.method == "es"
        else (lambda s: jax.tree.map(lambda x: x[0], s.elites))
    )
    fresh = lambda params: task.fresh_fitness(jax.random.key(99), params, 32)
    clock = TimeLimit(seconds)
    scores = Snapshots(clock, answer, args.eval_seconds, score=fresh)
    result = lrne.run(
        strategy_for(args.method, setting),
        task,
        run_keys(args.seed)[0],  # as `lrne train` derives it from run.seed
        10**9,
        callbacks=[clock, scores],
    )
    final = episode_returns(task, answer(result.state), jax.random.key(1000), args.final_episodes)
    final = mean_ci95(final.tolist())
    return {
        "method": args.method,
        "setting": setting,
        "image": f"{size}x{size}, 2 frames",
        "seconds": seconds,
        "generations": result.generation,
        "first_generation_seconds": scores.compile_seconds,
        "final_return": final["mean"],
        "final_return_ci95": final["ci95"],
        "final_episodes": args.final_episodes,
        "best_curve_return": max(r["score"] for r in scores.rows),
        "curve": scores.rows,
    }


def load(suffix: str = "") -> dict:
    """Every method's committed run: ``pixel_pendulum_<method>.json``."""
    return read_each("pixel_pendulum_{}" + suffix, SETTINGS)


def table(runs: dict) -> str:
    """Markdown: each run's final answer and best snapshot, against the target."""
    lines = [
        "| method | setting | image | minutes | generations | final return | best snapshot "
        "| target |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs.values():
        setting = ", ".join(f"{k} {v}" for k, v in run["setting"].items())
        lines.append(
            f"| {run['method']} | {setting} | {run['image']} | {run['seconds'] / 60:.0f} | "
            f"{run['generations']:,} | {run['final_return']:.1f} ± "
            f"{run['final_return_ci95']:.1f} | {run['best_curve_return']:.1f} | "
            f"{goal(TARGETS, '*/final_return')} |"
        )
    machines = sorted({run["machine"] for run in runs.values()})
    lines += ["", f"Final return: fresh episodes, mean ± 95% CI. Machine: {'; '.join(machines)}."]
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
