"""Reproduce Garbus & Pollack 2025: factorized vs full vs small networks under the GA.

Garbus & Pollack, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037). Three arms per task, evolved by the same
truncation GA with elitism and the paper's mutation scale (σ = 0.01 of each
tensor's init std; √σ on each factor):

- factorized: the full architecture with every weight matrix stored as A·B of
  rank 4 (transformer: q, k, v, o and feed-forward at rank 4, embedding rank 4);
- full: the same architecture, dense;
- small: a narrow dense network (transformer: width 4, feed-forward 16).

Tasks, scaled to 2 CPU cores: (i) a character-level transformer language
model on tiny Shakespeare (the paper: TinyStories), fitness −cross-entropy on a
fixed batch; (ii) MinAtar Breakout and SpaceInvaders with the MinAtar CNN (the
paper: Atari); (iii) Pendulum-v1 from 32×32 pixels, 2 stacked frames, stride-2
CNN (the paper: CarRacing). Each (task, arm) is compiled once and run for every
seed; wall time and env steps are recorded per generation. Final fitness: the
GA's best member scored on 16 fresh episodes (RL) or its training loss (LM).

Writes benchmarks/results/paper_a.json and paper_a_<task>.png.

    python benchmarks/paper_a.py [--quick] [--tasks lm breakout ...]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from common import RESULTS, corpus, machine, mean_ci95, write

import lrne
from lrne.nn.transformer import Transformer

ARMS = ("factorized", "full", "small")
TASKS = ("lm", "breakout", "space_invaders", "pendulum_pixels")


def rank_sum_p(x: list[float], y: list[float]) -> float:
    """Exact two-sided p-value of the Wilcoxon rank-sum (Mann–Whitney) test.

    Enumerates every split of the pooled values into groups of len(x) and
    len(y) (mid-ranks for ties): fine for the few seeds here.
    """
    pooled = np.asarray(x + y, float)
    order = pooled.argsort()
    ranks = np.empty(len(pooled))
    ranks[order] = np.arange(1, len(pooled) + 1)
    for value in np.unique(pooled):  # mid-ranks
        tied = pooled == value
        ranks[tied] = ranks[tied].mean()
    expected = len(x) * (len(pooled) + 1) / 2
    observed = abs(ranks[: len(x)].sum() - expected)
    sums = [ranks[list(c)].sum() for c in itertools.combinations(range(len(pooled)), len(x))]
    return float(np.mean([abs(s - expected) >= observed - 1e-9 for s in sums]))


def build(task: str, arm: str, quick: bool, text: str):
    """(task object, is_rl) for one task and arm."""
    if task == "lm":
        vocab = len(lrne.tasks.LanguageModel.vocabulary(text))
        model = Transformer.preset(arm, vocab, **({"num_blocks": 1} if quick else {}))
        context, batch = (16, 4) if quick else (32, 16)
        return (
            lrne.tasks.LanguageModel(
                model, text, context=context, batch_size=batch, fresh_batches=False
            ),
            False,
        )
    max_steps = 50 if quick else None
    if task == "pendulum_pixels":
        env = lrne.wrappers.pixel_pendulum(size=16 if quick else 32, frames=2)
        shapes = {"full": {}, "factorized": {"rank": 4}, "small": {"channels": 4, "hidden": 8}}
        policy = lrne.nn.MinAtarCNN(1, strides=(2, 2), **{"hidden": 64, **shapes[arm]})
        return lrne.tasks.Gymnax(env, policy, num_episodes=1, max_steps=max_steps), True
    env_id = {"breakout": "Breakout-MinAtar", "space_invaders": "SpaceInvaders-MinAtar"}[task]
    shapes = {"full": {}, "factorized": {"rank": 4}, "small": {"channels": 4, "hidden": 16}}
    policy = lrne.nn.MinAtarCNN(lrne.tasks.action_size(env_id), **shapes[arm])
    return lrne.tasks.Gymnax(env_id, policy, num_episodes=2, max_steps=max_steps), True


def run_arm(task_name: str, arm: str, settings: dict, text: str) -> dict:
    """Every seed of one (task, arm): per-generation curves, times and final fitness."""
    task, is_rl = build(task_name, arm, settings["quick"], text)
    population, generations = settings["population"], settings["generations"][task_name]
    strategy = lrne.ga(population, settings["num_elites"], settings["sigma"])
    params = task.init_params(jax.random.key(0))
    seeds = []
    for seed in range(settings["seeds"]):
        # lrne.run compiles the generation step once for all seeds of an arm.
        key_run, key_test = jax.random.split(jax.random.key(seed))
        result = lrne.run(strategy, task, key_run, generations)
        history, best = result.history, result.state.best_params
        seeds.append(
            {
                "curve": [row["best_fitness"] for row in history],
                "seconds": [row["seconds"] for row in history],
                "env_steps": [row.get("env_steps", row.get("tokens", 0)) for row in history],
                # RL: the best member on 16 fresh episodes; LM: its training fitness.
                "final": (
                    lrne.evaluate_best(task, best, key_test, num_episodes=16)
                    if is_rl
                    else history[-1]["best_fitness"]
                ),
            }
        )
        if not is_rl:  # evaluate_best of a language model: minus the held-out loss
            seeds[-1]["final_eval_loss"] = -lrne.evaluate_best(task, best, key_test)
    window = settings["window"]
    first = [s for seed in seeds for s in seed["seconds"][1 : 1 + window]]  # [0] compiles
    last = [s for seed in seeds for s in seed["seconds"][-window:]]
    steps_first = [s for seed in seeds for s in seed["env_steps"][:window]]
    steps_last = [s for seed in seeds for s in seed["env_steps"][-window:]]
    finals = [seed["final"] for seed in seeds]
    result = {
        "final_fitness": mean_ci95(finals),
        "final_fitness_per_seed": finals,
        "num_params": lrne.count_params(params),
        "genome_bytes": lrne.genome_bytes(params),
        "seconds_per_generation_first": statistics.fmean(first) if first else None,
        "seconds_per_generation_last": statistics.fmean(last),
        "env_steps_per_generation_first": statistics.fmean(steps_first),
        "env_steps_per_generation_last": statistics.fmean(steps_last),
        "compile_and_first_generation_s": statistics.fmean(seed["seconds"][0] for seed in seeds),
        "curve_mean": np.mean([seed["curve"] for seed in seeds], axis=0).tolist(),
        "curve_ci95": ci95_halfwidth([seed["curve"] for seed in seeds]),
    }
    if not is_rl:
        result["final_eval_loss"] = mean_ci95([seed["final_eval_loss"] for seed in seeds])
    return result


def ci95_halfwidth(curves: list[list[float]]) -> list[float]:
    """Per generation, the 95% CI half-width over seeds (0 with one seed)."""
    columns = np.asarray(curves).T
    return [mean_ci95(list(c))["ci95"] if len(c) > 1 else 0.0 for c in columns]


def plot(task: str, arms: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for arm, data in arms.items():
        mean, ci = np.asarray(data["curve_mean"]), np.asarray(data["curve_ci95"])
        sign = -1.0 if task == "lm" else 1.0
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, sign * mean, label=f"{arm} ({data['num_params']:,} params)")
        ax.fill_between(x, sign * (mean - ci), sign * (mean + ci), alpha=0.25)
    ax.set_xlabel("generation")
    ax.set_ylabel("best training loss (nats/char)" if task == "lm" else "best return")
    ax.set_title(f"{task}: GA, mean ± 95% CI over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def findings(tasks: dict) -> dict:
    """The paper's claims, checked on these numbers (p < 0.05, rank-sum)."""
    out = {}
    for task, arms in tasks.items():
        f = {arm: arms[arm]["final_fitness"]["mean"] for arm in arms}
        p = {other: arms["factorized"][f"p_vs_{other}"] for other in ("full", "small")}
        out[task] = {
            "factorized_ge_full": f["factorized"] >= f["full"],
            "factorized_gt_full_significant": f["factorized"] > f["full"] and p["full"] < 0.05,
            "factorized_gt_small_significant": f["factorized"] > f["small"] and p["small"] < 0.05,
            "full_gt_factorized_significant": f["full"] > f["factorized"] and p["full"] < 0.05,
            "factorized_less_time_per_generation_last": arms["factorized"][
                "seconds_per_generation_last"
            ]
            < arms["full"]["seconds_per_generation_last"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=TASKS,
        help="default: all; with --quick, all but space_invaders (its compile is the slowest)",
    )
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    if args.quick:
        settings = dict(population=8, num_elites=2, seeds=2, window=1)
        settings["generations"] = dict(lm=3, breakout=3, space_invaders=3, pendulum_pixels=3)
    else:
        settings = dict(population=64, num_elites=8, seeds=5, window=5)
        settings["generations"] = dict(lm=150, breakout=150, space_invaders=60, pendulum_pixels=40)
    settings |= {"quick": args.quick, "sigma": 0.01}
    if args.tasks is None:
        args.tasks = [t for t in TASKS if not (args.quick and t == "space_invaders")]
    if args.seeds is not None:
        settings["seeds"] = args.seeds
    text = corpus(args.quick)  # quick: generated, nothing read outside the repository

    start = time.perf_counter()
    tasks: dict = {}
    for task in args.tasks:
        tasks[task] = {arm: run_arm(task, arm, settings, text) for arm in ARMS}
        factorized = tasks[task]["factorized"]["final_fitness_per_seed"]
        for other in ("full", "small"):
            p = rank_sum_p(factorized, tasks[task][other]["final_fitness_per_seed"])
            tasks[task]["factorized"][f"p_vs_{other}"] = p
        print(f"{task}: done at {time.perf_counter() - start:.0f}s", flush=True)
    result = {
        "machine": machine(),
        "settings": {k: v for k, v in settings.items()},
        "tasks": tasks,
        "findings": findings(tasks),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "note": "final_fitness: LM = −training loss (nats/char) of the best member; RL = "
        "best member's mean return on 16 fresh episodes. p_vs_*: exact two-sided rank-sum "
        "test over seeds. seconds_per_generation_first: generations 2..6 (the first "
        "compiles); last: the final 5.",
    }
    name = "paper_a_quick" if args.quick else "paper_a"
    write(name, result)
    if not args.quick:
        for task, arms in tasks.items():
            plot(task, arms, RESULTS / f"paper_a_{task}.png")


if __name__ == "__main__":
    main()
