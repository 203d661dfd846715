"""Reproduce Garbus & Pollack 2025 at fair settings: factorized vs full vs small under the GA.

Garbus & Pollack, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037). Three arms per task, evolved by the same
truncation GA with elitism. The mutation is σ × each tensor's init std, and
√σ × init std on each factor A, B of a factorized weight, so at one σ a
factorized weight moves far more than a dense one. To compare the arms
fairly, each gets its own σ:

1. sweep: σ ∈ ``FULL["sigmas"]`` per arm, 3 seeds each;
2. best: each arm at its best σ (by mean final score), 5 new seeds;
3. matched: the factorized arm at the σ where its measured std(ΔW)/std(W)
   (one mutation, averaged over its weight matrices) equals the full arm's at
   the full arm's best σ, 5 new seeds.

- factorized: the full architecture with every weight matrix stored as A·B of
  rank 4 (transformer: q, k, v, o and feed-forward at rank 4, embedding rank 4);
- full: the same architecture, dense;
- small: a narrow dense network (transformer: width 4, feed-forward 16).

Tasks, scaled to 2 CPU cores: (i) a character-level transformer language
model on tiny Shakespeare (the paper: TinyStories), fitness −cross-entropy on a
fresh batch of windows each generation; (ii) MinAtar Breakout and SpaceInvaders
with the MinAtar CNN (the paper: Atari); (iii) Pendulum-v1 from 32×32 pixels,
2 stacked frames, stride-2 CNN (the paper: CarRacing). Each (task, arm, σ) is
compiled once and run for every seed; wall time and env steps are recorded per
generation. Final score:
the last generation's top elite on 32 fresh episodes (RL) or minus its
held-out loss (LM, fresh training batch every generation).

Writes benchmarks/results/paper_a/<task>.json and <task>.png.

    python benchmarks/paper_a.py --task {lm,breakout,space_invaders,pendulum_pixels} [--quick]
"""

from __future__ import annotations

import itertools
import math
import statistics
import tempfile
from pathlib import Path

import jax
import numpy as np
from common import band_plot, corpus, mean_ci95, write_config
from harness import RESULTS, pm, read_each, script

import lrne
from lrne.rundir import run_keys

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


ENV_IDS = {"breakout": "Breakout-MinAtar", "space_invaders": "SpaceInvaders-MinAtar"}


def sections(task: str, arm: str, quick: bool, text: str) -> dict:
    """The ``[task]`` and ``[model]`` config sections of one task and arm.

    ``text``: the LM corpus as a file path (unused by the RL tasks).
    """
    rank = 4 if arm == "factorized" else 0
    if task == "lm":
        model = {"kind": "transformer", "preset": arm} | ({"num_blocks": 1} if quick else {})
        context, batch = (16, 4) if quick else (32, 16)
        lm = {"kind": "language_model", "text": text, "context": context, "batch_size": batch}
        return {"task": lm, "model": model}
    rollout = {"max_steps": 50} if quick else {}
    if task == "pendulum_pixels":
        model = {"kind": "minatar_cnn", "rank": rank, "hidden": 64, "strides": [2, 2]}
        model |= {"channels": 4, "hidden": 8} if arm == "small" else {}
        pixels = {"kind": "pixel_pendulum", "size": 16 if quick else 32, "frames": 2}
        return {"task": pixels | {"num_episodes": 1} | rollout, "model": model}
    model = {"kind": "minatar_cnn", "rank": rank}
    model |= {"channels": 4, "hidden": 16} if arm == "small" else {}
    gymnax = {"kind": "gymnax", "env": ENV_IDS[task], "num_episodes": 2}
    return {"task": gymnax | rollout, "model": model}


def arm_config(task: str, arm: str, sigma: float, seed: int, settings: dict, text: str):
    """The ``lrne train`` config of one run: ``configs/paper_a/`` holds the chosen ones.

    ``lrne train --config`` on it runs the same generations (the run key comes
    from ``run.seed`` as here), the same GA, task and network.
    """
    from lrne.config import Config

    run = {
        "seed": seed,
        "generations": settings["generations"][task],
        "checkpoint_every": 0,
        "output": f"runs/paper_a/{task}_{arm}",
    }
    strategy = {"name": "ga", "population_size": settings["population"], "sigma": sigma}
    strategy["num_elites"] = settings["num_elites"]
    return Config.from_dict(
        {"run": run, "strategy": strategy, **sections(task, arm, settings["quick"], text)}
    )


def build(task: str, arm: str, quick: bool, text: str = ""):
    """The task object for one task and arm, built by its config sections."""
    from lrne.config import Config

    config = Config.from_dict(sections(task, arm, quick, text))
    return config.task.build(config.model)[0]


def weight_leaves(params) -> list:
    """2-D weight matrices (kernels, embeddings) of one member's variables, A·B formed (numpy)."""
    dense = jax.tree.map(
        lambda x: np.asarray(x.A) @ np.asarray(x.B) if isinstance(x, lrne.Factors) else x,
        params,
        is_leaf=lambda x: isinstance(x, lrne.Factors),
    )
    flat = jax.tree_util.tree_flatten_with_path(dense)[0]
    return [np.asarray(leaf) for path, leaf in flat if lrne.genome.is_weight_matrix(path, leaf)]


def unit_mutations(params, settings: dict) -> list:
    """The GA's children at σ = 1, as deltas from the parent (numpy), one per child.

    The GA adds ``scale × normal draw`` with scale σ × init std (dense
    tensors) or √σ × init std (factors), the draw not depending on σ, so a
    child at any σ is the parent plus the unit delta rescaled (:func:`mutated`).
    """
    strategy = lrne.ga(settings["population"], settings["num_elites"], 1.0)
    state = jax.jit(strategy.init)(jax.random.key(1), params)
    population, _ = jax.jit(strategy.ask)(jax.random.key(2), state)  # one program, not op by op
    members = jax.device_get(population.members)
    parent = jax.device_get(params)
    return [
        jax.tree.map(lambda c, p, m=m: c[m] - p, members, parent)
        for m in range(settings["num_elites"], settings["population"])
    ]


def mutated(params, delta, sigma: float):
    """``params`` + ``delta`` (a σ = 1 mutation) rescaled to σ: √σ on factors, σ elsewhere."""
    root = math.sqrt(sigma)

    def scale(p, d):
        if isinstance(p, lrne.Factors):
            return lrne.Factors(p.A + root * d.A, p.B + root * d.B)
        return p + sigma * d

    return jax.tree.map(scale, params, delta, is_leaf=lambda x: isinstance(x, lrne.Factors))


def delta_ratio(params, unit: list, sigma: float) -> float:
    """Mean over children and weight matrices of std(ΔW) / std(W) for one GA mutation."""
    parent = weight_leaves(jax.device_get(params))
    ratios = []
    for delta in unit:
        child = weight_leaves(mutated(jax.device_get(params), delta, sigma))
        ratios += [float(np.std(c - w) / np.std(w)) for w, c in zip(parent, child, strict=True)]
    return float(np.mean(ratios))


def matched_sigma(params, unit: list, target: float) -> float:
    """σ whose std(ΔW)/std(W) equals ``target`` (bisection in log σ; the ratio grows with σ)."""
    low, high = math.log(1e-6), math.log(1.0)
    for _ in range(30):
        mid = 0.5 * (low + high)
        if delta_ratio(params, unit, math.exp(mid)) < target:
            low = mid
        else:
            high = mid
    return math.exp(0.5 * (low + high))


def run_seeds(task_name: str, arm: str, sigma: float, seeds, settings: dict, text: str) -> dict:
    """Every seed of one (task, arm, σ): curves, times and final score."""
    config = arm_config(task_name, arm, sigma, seeds[0], settings, text)
    task, _ = config.task.build(config.model)
    strategy = config.strategy.build(task)
    runs = []
    for seed in seeds:
        # lrne.run compiles the generation step once for all seeds of an arm and σ;
        # the keys are those `lrne train` derives from run.seed.
        key_run, key_test = run_keys(seed)
        result = lrne.run(strategy, task, key_run, config.run.generations)
        # The answer: the top elite of the last generation (re-evaluated every
        # generation, unlike the best-ever member, which a lucky batch or
        # episode can freeze).
        answer = jax.tree.map(lambda x: x[0], result.state.elites)
        final = lrne.evaluate_best(task, answer, key_test, num_episodes=32)
        runs.append(
            {
                "seed": seed,
                # RL: return on 32 fresh episodes; LM: −held-out loss (nats/char).
                "final": final,
                "curve": [row["fitness_max"] for row in result.history],
                "seconds": [row["seconds"] for row in result.history],
                "env_steps": [row.get("env_steps", row.get("tokens", 0)) for row in result.history],
            }
        )
    finals = [r["final"] for r in runs]
    window = settings["window"]
    last = [s for r in runs for s in r["seconds"][-window:]]
    first = [s for r in runs for s in r["seconds"][1 : 1 + window]]  # [0] compiles
    steps_first = [s for r in runs for s in r["env_steps"][:window]]
    steps_last = [s for r in runs for s in r["env_steps"][-window:]]
    return {
        "sigma": sigma,
        "final": mean_ci95(finals),
        "final_per_seed": finals,
        "seeds": list(seeds),
        "seconds_per_generation_first": statistics.fmean(first) if first else None,
        "seconds_per_generation_last": statistics.fmean(last),
        "env_steps_per_generation_first": statistics.fmean(steps_first),
        "env_steps_per_generation_last": statistics.fmean(steps_last),
        "curve_mean": np.mean([r["curve"] for r in runs], axis=0).tolist(),
        "curve_ci95": ci95_halfwidth([r["curve"] for r in runs]),
    }


def ci95_halfwidth(curves: list[list[float]]) -> list[float]:
    """Per generation, the 95% CI half-width over seeds (0 with one seed)."""
    columns = np.asarray(curves).T
    return [mean_ci95(list(c))["ci95"] if len(c) > 1 else 0.0 for c in columns]


def run_task(task_name: str, settings: dict, text: str) -> dict:
    """Sweep, best-σ and matched-ΔW runs of the three arms on one task."""
    sigmas, sweep_seeds, final_seeds = (
        settings["sigmas"],
        settings["sweep_seeds"],
        settings["final_seeds"],
    )
    out: dict = {"arms": {}, "sweep": {}, "best": {}}
    units = {}
    for arm in ARMS:
        task = build(task_name, arm, settings["quick"], text)
        params = task.init_params(jax.random.key(0))
        units[arm] = (params, unit_mutations(params, settings))
        out["arms"][arm] = {
            "num_params": lrne.count_params(params),
            "genome_bytes": lrne.genome_bytes(params),
            "delta_ratio": {str(s): delta_ratio(*units[arm], s) for s in sigmas},
        }
        rows = [run_seeds(task_name, arm, s, sweep_seeds, settings, text) for s in sigmas]
        out["sweep"][arm] = [
            {"sigma": r["sigma"], "final": r["final"], "final_per_seed": r["final_per_seed"]}
            for r in rows
        ]
        best = max(rows, key=lambda r: r["final"]["mean"])
        print(
            f"{task_name} {arm}: best σ {best['sigma']} ({best['final']['mean']:.3f})", flush=True
        )
        out["best"][arm] = run_seeds(task_name, arm, best["sigma"], final_seeds, settings, text)
    full_sigma = out["best"]["full"]["sigma"]
    target = out["arms"]["full"]["delta_ratio"][str(full_sigma)]
    sigma = matched_sigma(*units["factorized"], target)
    out["matched"] = run_seeds(task_name, "factorized", sigma, final_seeds, settings, text)
    out["matched"]["delta_ratio"] = delta_ratio(*units["factorized"], sigma)
    out["matched"]["target_delta_ratio"] = target
    best = out["best"]
    for other in ("full", "small"):
        p = rank_sum_p(best["factorized"]["final_per_seed"], best[other]["final_per_seed"])
        best["factorized"][f"p_vs_{other}"] = p
    out["matched"]["p_vs_full"] = rank_sum_p(
        out["matched"]["final_per_seed"], best["full"]["final_per_seed"]
    )
    if not settings["quick"]:
        seed = final_seeds[0]
        chosen = {arm: (best[arm]["sigma"], f"{arm} arm at its best σ") for arm in ARMS}
        chosen["factorized_matched"] = (sigma, "factorized arm at the full arm's std(ΔW)/std(W)")
        out["configs"] = {
            name: write_config(
                arm_config(task_name, name.split("_")[0], s, seed, settings, text),
                f"paper_a/{task_name}_{name}",
                f"benchmarks/paper_a.py --task {task_name}: the {note} (σ {s:.4g}), "
                "the first of the final seeds",
                output=f"runs/paper_a/{task_name}_{name}",
            )
            for name, (s, note) in chosen.items()
        }
    out["findings"] = findings(task_name, out)
    return out


def plot(task: str, out: dict, path: Path) -> None:
    curves = {f"{arm} σ={data['sigma']:.3g}": data for arm, data in out["best"].items()}
    curves[f"factorized, matched ΔW σ={out['matched']['sigma']:.3g}"] = out["matched"]
    sign = -1.0 if task == "lm" else 1.0
    lines = [
        {
            "x": np.arange(1, len(data["curve_mean"]) + 1),
            "y": sign * np.asarray(data["curve_mean"]),
            "band": data["curve_ci95"],
            "label": label,
        }
        for label, data in curves.items()
    ]
    panel = {
        "lines": lines,
        "xlabel": "generation",
        "ylabel": "best training loss (nats/char)" if task == "lm" else "best training return",
        "title": f"{task}: GA at each arm's best σ, mean ± 95% CI",
    }
    band_plot(path, [panel], size=(5.5, 3.6))


def findings(task: str, out: dict) -> dict:
    """The paper's claims on one task at fair settings (p < 0.05, rank-sum over 5 seeds)."""
    best, matched = out["best"], out["matched"]
    f = {arm: best[arm]["final"]["mean"] for arm in ARMS}
    significant = lambda p: p < 0.05
    return {
        "factorized_ge_full_at_best_sigmas": f["factorized"] >= f["full"],
        "factorized_gt_full_significant": f["factorized"] > f["full"]
        and significant(best["factorized"]["p_vs_full"]),
        "full_gt_factorized_significant": f["full"] > f["factorized"]
        and significant(best["factorized"]["p_vs_full"]),
        "full_gt_small": f["full"] > f["small"],
        "factorized_gt_small_significant": f["factorized"] > f["small"]
        and significant(best["factorized"]["p_vs_small"]),
        "factorized_at_matched_delta_ge_full": matched["final"]["mean"] >= f["full"],
        "factorized_less_time_per_generation_last": best["factorized"][
            "seconds_per_generation_last"
        ]
        < best["full"]["seconds_per_generation_last"],
        "factorized_fewer_env_steps_per_generation_last": task != "lm"
        and best["factorized"]["env_steps_per_generation_last"]
        < best["full"]["env_steps_per_generation_last"],
    }


FULL = {
    "population": 64,
    "num_elites": 8,
    "window": 5,
    "sigmas": [0.003, 0.01, 0.03, 0.1],
    "sweep_seeds": [0, 1, 2],
    "final_seeds": [10, 11, 12, 13, 14],  # new seeds: the best σ was chosen on the sweep's
    "generations": {"lm": 150, "breakout": 150, "space_invaders": 60, "pendulum_pixels": 40},
}
QUICK = {
    "population": 8,
    "num_elites": 2,
    "window": 1,
    "sigmas": [0.01, 0.1],
    "sweep_seeds": [0],
    "final_seeds": [10, 11],
    "generations": {"lm": 3, "breakout": 3, "space_invaders": 3, "pendulum_pixels": 3},
}


def arguments(parser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS)


def output(args) -> str:
    return f"paper_a/{args.task}"


def run(args) -> dict:
    settings = {**args.sizes, "quick": args.quick}
    # The LM's corpus as a file, as a config names it (quick: generated text, so
    # nothing is read outside the repository).
    text = Path(tempfile.mkdtemp()) / "corpus.txt"
    text.write_text(corpus(args.quick, None), encoding="utf-8")
    out = run_task(args.task, settings, str(text))
    if not args.quick:
        plot(args.task, out, RESULTS / "paper_a" / f"{args.task}.png")
    return {
        "task": args.task,
        "settings": settings,
        **out,
        "note": "final: RL = return of the last generation's top elite on 32 fresh "
        "episodes; LM = minus its held-out loss (nats/char, 32k characters; fresh training "
        "batch each generation). p_vs_*: exact two-sided rank-sum test over the 5 final "
        "seeds. delta_ratio: std(ΔW)/std(W) of one mutation, mean over weight matrices.",
    }


def load(suffix: str = "") -> dict:
    """Every task's committed result: ``paper_a/<task>.json``."""
    return read_each("paper_a/{}" + suffix, TASK_LABELS)


TASK_LABELS = {
    "lm": "LM, tiny Shakespeare (−held-out loss, nats/char)",
    "breakout": "MinAtar Breakout (return)",
    "space_invaders": "MinAtar SpaceInvaders (return)",
    "pendulum_pixels": "Pendulum-v1 from pixels (return)",
}
FINDINGS = {
    "factorized_ge_full_at_best_sigmas": "factorized ≥ full, each at its best σ",
    "factorized_gt_full_significant": "factorized > full, p < 0.05",
    "full_gt_factorized_significant": "full > factorized, p < 0.05",
    "full_gt_small": "full > small",
    "factorized_gt_small_significant": "factorized > small, p < 0.05",
    "factorized_at_matched_delta_ge_full": "factorized at the full arm's ΔW ≥ full",
    "factorized_less_time_per_generation_last": "factorized: less time per generation",
    "factorized_fewer_env_steps_per_generation_last": "factorized: fewer env steps per generation",
}


def table(results: dict) -> str:
    """Markdown: per task, each arm's σ sweep, its final score at its best σ, and the findings."""
    s = next(iter(results.values()))["settings"]
    lines = [
        f"GA: population {s['population']}, {s['num_elites']} elites. σ sweep "
        f"{', '.join(f'{x:g}' for x in s['sigmas'])} per arm ({len(s['sweep_seeds'])} seeds, "
        f"mean final score in the sweep column), then each arm at its best σ on "
        f"{len(s['final_seeds'])} new seeds (final: mean ± 95% CI; p: exact two-sided rank-sum "
        "test against the factorized arm, or against full for the matched row). Matched ΔW: "
        "the factorized arm at the σ where one mutation's std(ΔW)/std(W) equals the full "
        "arm's at its best σ. Seconds and env steps per generation: the last 5 generations.",
    ]
    for task, pa in results.items():
        arms, best, matched = pa["arms"], pa["best"], pa["matched"]
        generations = pa["settings"]["generations"][task]
        lines += [
            "",
            f"**{TASK_LABELS[task]}**, {generations} generations, "
            f"{pa['wall_seconds'] / 60:.0f} min in all:",
            "",
            "| arm | params | σ sweep | σ | std(ΔW)/std(W) | final | p | s / gen | "
            "env steps / gen |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        rows = [(arm, best[arm], arms[arm]["delta_ratio"][str(best[arm]["sigma"])]) for arm in best]
        rows.append(("factorized, matched ΔW", matched, matched["delta_ratio"]))
        p_values = {
            "factorized": None,
            "full": best["factorized"]["p_vs_full"],
            "small": best["factorized"]["p_vs_small"],
            "factorized, matched ΔW": matched["p_vs_full"],
        }
        for arm, row, ratio in rows:
            sweep = ", ".join(f"{r['final']['mean']:.2f}" for r in pa["sweep"].get(arm, []))
            p = p_values[arm]
            p = "" if p is None else f"{p:.3f}"
            steps = "(tokens)" if task == "lm" else f"{row['env_steps_per_generation_last']:,.0f}"
            lines.append(
                f"| {arm} | {arms['factorized' if 'matched' in arm else arm]['num_params']:,} | "
                f"{sweep} | {row['sigma']:.3g} | {ratio:.3f} | {pm(row['final'])} | {p} | "
                f"{row['seconds_per_generation_last']:.3f} | {steps} |"
            )
        found = [
            f"{label}: **{'yes' if pa['findings'][key] else 'no'}**"
            for key, label in FINDINGS.items()
            if not (task == "lm" and "env_steps" in key)
        ]
        lines += ["", f"Findings: {'; '.join(found)}."]
    machines = sorted({r["machine"] for r in results.values()})
    missing = [t for t in TASK_LABELS if t not in results]
    if missing:
        lines += ["", f"Not run yet at fair settings: {', '.join(missing)}."]
    lines += ["", f"Machine: {'; '.join(machines)}."]
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
