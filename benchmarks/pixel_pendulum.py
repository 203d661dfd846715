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

import argparse
import math

import jax
import numpy as np
import optax
from common import PeriodicScore, machine, write

import lrne
from lrne.callbacks import TimeLimit
from lrne.saved import run_keys

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=sorted(SETTINGS), default="es")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--eval-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="setting overrides, key=value")
    parser.add_argument("--name", default=None, help="output name (default by method)")
    parser.add_argument("--quick", action="store_true", help="seconds-long run, 16×16 pixels")
    args = parser.parse_args()
    setting = dict(SETTINGS[args.method])
    for item in args.set:
        name, value = item.split("=", 1)
        setting[name] = type(setting[name])(value)
    seconds, every, size = args.minutes * 60, args.eval_seconds, 32
    if args.quick:
        seconds, every, size = 6.0, 2.0, 16
        setting["population"] = 16
    task = build(setting, size)
    answer = (
        (lambda s: s.mean)
        if args.method == "es"
        else (lambda s: jax.tree.map(lambda x: x[0], s.elites))
    )
    fresh = lambda params: task.fresh_fitness(jax.random.key(99), params, 32)
    clock = TimeLimit(seconds)
    scores = PeriodicScore(fresh, answer, clock, every)
    result = lrne.run(
        strategy_for(args.method, setting),
        task,
        run_keys(args.seed)[0],  # as `lrne train` derives it from run.seed
        10**9,
        callbacks=[clock, scores],
    )
    final_params = answer(result.state)
    final = episode_returns(task, final_params, jax.random.key(1000), 128)
    out = {
        "machine": machine(),
        "quick": args.quick,
        "method": args.method,
        "setting": setting,
        "image": f"{size}x{size}, 2 frames",
        "seconds": seconds,
        "generations": result.generation,
        "first_generation_seconds": result.history[0]["seconds"],
        "final_return": float(np.mean(final)),
        "final_return_ci95": float(1.96 * final.std(ddof=1) / math.sqrt(len(final))),
        "final_episodes": 128,
        "best_curve_return": max(r["score"] for r in scores.rows),
        "curve": scores.rows,
    }
    write(args.name or f"pixel_pendulum_{args.method}" + ("_quick" if args.quick else ""), out)


if __name__ == "__main__":
    main()
