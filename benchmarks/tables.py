"""Render the README's benchmark tables from benchmarks/results/*.json.

python benchmarks/tables.py          # rewrite the block in README.md
python benchmarks/tables.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _load(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())


def render() -> str:
    ga = _load("ga_vs_evosax")
    ee = _load("early_exit")
    setup = ga["setup"]
    lines = [
        f"**GA generation time** (`benchmarks/ga_vs_evosax.py`): {setup['env']}, population "
        f"{setup['population_size']}, MLP {'→'.join(map(str, setup['mlp']))}, one episode of "
        f"{setup['episode_steps']} steps per member, early exit off; median of "
        f"{setup['repetitions']} warm interleaved generations.",
        "",
        "| method | s / generation | speedup vs evosax | target |",
        "| --- | ---: | ---: | ---: |",
        f"| evosax 0.3 `SimpleGA` + `GymnaxProblem` | {ga['evosax_s_per_gen']:.3f} | 1.00 | |",
        f"| lrne GA, dense (rank 0) | {ga['lrne_rank0_s_per_gen']:.3f} | "
        f"{ga['speedup_rank0']:.2f} | >= 0.9 |",
        f"| lrne GA, factorized (rank 4) | {ga['lrne_rank4_s_per_gen']:.3f} | "
        f"{ga['speedup_rank4']:.2f} | >= 10 |",
        "",
        f"Machine: {ga['machine']}.",
        "",
        f"**Early exit with compaction** (`benchmarks/early_exit.py`): population "
        f"{ee['setup']['population_size']}, MLP {'×'.join(map(str, ee['setup']['mlp'][1:-1]))} "
        f"at rank {ee['setup']['rank']}, CartPole-v1 with lengths uniform over "
        f"[1, {ee['setup']['horizon_T']}]; both stop when all episodes are done.",
        "",
        "| evaluation | s / evaluation | slot-steps executed | returns identical | target |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| one buffer until all done | {ee['one_buffer_s']:.3f} | "
        f"{ee['slot_steps_one_buffer']:,} | | |",
        f"| compaction at {ee['setup']['compaction']} occupancy | {ee['compacted_s']:.3f} | "
        f"{ee['slot_steps_compacted']:,} | {ee['identical_fraction']:.0%} | |",
        f"| **speedup_compaction** | **{ee['speedup_compaction']:.2f}** | | | >= 1.6 |",
        "",
        f"Machine: {ee['machine']}. Steps lived by the episodes: {ee['env_steps_lived']:,}.",
        "",
        *_es_lines(_load("es_throughput")),
    ]
    return "\n".join(lines)


def _es_lines(es: dict) -> list[str]:
    setup = es["setup"]
    gen = setup["generation"]
    lines = [
        f"**ES with low-rank noise** (`benchmarks/es_throughput.py`): population "
        f"{setup['population_size']}, full-length rollouts, early exit off. Throughput of a "
        "rank-1 perturbed population relative to plain batched inference of the shared "
        "network at the same batch:",
        "",
        "| env | MLP | s / eval, rank-1 ES | s / eval, plain | lowrank_over_plain | target |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for env, (hidden, steps) in setup["throughput"].items():
        t = es["seconds_per_evaluation"][env]
        lines.append(
            f"| {env} ({steps} steps) | {'×'.join(map(str, hidden))} | {t['lowrank_r1']:.3f} | "
            f"{t['plain']:.3f} | {es['lowrank_over_plain'][env]:.2f} | >= 0.9 |"
        )
    g = es["s_per_generation"]
    lines += [
        "",
        f"ES generation on {gen['env']}, MLP {'→'.join(map(str, gen['mlp']))}, "
        f"{gen['episode_steps']} steps, rank {gen['noise_rank']} noise:",
        "",
        "| method | s / generation | speedup | target |",
        "| --- | ---: | ---: | ---: |",
        f"| evosax 0.3 `Open_ES` + `GymnaxProblem` | {g['evosax_open_es']:.3f} | 1.00 | |",
        f"| lrne `es(noise_rank=1)` | {g['lrne_lowrank_es']:.3f} | "
        f"{es['speedup_vs_evosax_open_es']:.2f} | >= 10 |",
    ]
    n = setup["nres"]
    g = es["nres_s_per_generation"]
    lines += [
        "",
        f"Online ES generation (one truncation window) on {n['env']}, MLP "
        f"{'→'.join(map(str, n['mlp']))}, population {n['population_size']}, "
        f"W = {n['truncation_length']}, T = {n['horizon']}:",
        "",
        "| method | s / generation | speedup |",
        "| --- | ---: | ---: |",
        f"| evosax 0.3 `NoiseReuseES` (lockstep workers) | {g['evosax_noise_reuse_es']:.4f} | "
        "1.00 |",
        f"| lrne `nres(noise_rank=1)` (step-unlocked) | {g['lrne_nres']:.4f} | "
        f"{es['speedup_vs_evosax_nres']:.2f} |",
        "",
        f"Machine: {es['machine']}.",
    ]
    mem = _load("es_memory")
    lines += [
        "",
        f"**ES memory** (`benchmarks/es_memory.py`): MLP {'→'.join(map(str, mem['setup']['mlp']))} "
        f"({mem['num_params']:,} params) at population {mem['setup']['population_size']}, "
        "per-member part of the population from the compiled `ask`:",
        "",
        "| perturbation | bytes | target |",
        "| --- | ---: | ---: |",
        f"| lrne `es(noise_rank=1)` | {mem['lrne_es_bytes'] / 1e6:,.1f} MB | <= 100 MB |",
        f"| lrne `nres(noise_rank=1)`, noise held in the state | "
        f"{mem['lrne_nres_bytes'] / 1e6:,.1f} MB | <= 100 MB |",
        f"| dense population × D (evosax `ask`) | {mem['dense_bytes'] / 1e9:,.2f} GB | |",
        "",
        f"A whole compiled low-rank generation step needs "
        f"{mem['lrne_es_generation_step_temp_bytes'] / 1e6:,.0f} MB of temporaries "
        "(including the probe forward's activations).",
        "",
        *_online_lines(_load("nres_lorenz"), _load("estimator_variance")),
    ]
    return lines


NAMES = {
    "nres": "NRES (SGD 1e-5)",
    "pes": "PES (SGD 1e-5)",
    "tes": "TES (SGD 1e-5)",
    "full_es": "FullES (N = 10, SGD 3e-5)",
    "nres_lr3e-5": "NRES at FullES's SGD 3e-5 (not in the paper)",
    "tbptt": "truncated BPTT (SGD 3e-4)",
}


def _online_lines(lorenz: dict, variance: dict) -> list[str]:
    setup = lorenz["setup"]
    lines = [
        f"**Online ES on Lorenz** (`benchmarks/nres_lorenz.py`, plot "
        "`benchmarks/results/nres_lorenz.png`): learn (log a, log r), T = "
        f"{setup['horizon']}, {setup['seeds']} seeds, {setup['generations']} updates each; "
        "N = 200, W = 100, σ = 0.04 unless noted. L(θ) starts at "
        f"{lorenz['initial_loss']:.1f}. Steps are inner unroll steps over all particle copies "
        f"(40,000 per ES update); threshold L = {lorenz['threshold']:g}.",
        "",
        "| method | final L (mean ± 95% CI) | steps to threshold | s to threshold | "
        "estimator variance at θ₀ |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, label in NAMES.items():
        final = lorenz["final_loss"][name]
        reach = lorenz["steps_to_threshold"][name]
        steps = "never" if reach["mean"] is None else f"{reach['mean'] / 1e6:.1f} M"
        if reach["seeds_reached"] < setup["seeds"]:
            steps += f" ({reach['seeds_reached']}/{setup['seeds']} seeds)"
        secs = lorenz["seconds_to_threshold"][name]
        var = variance["variance"].get(name)
        lines.append(
            f"| {label} | {final['mean']:.1f} ± {final['ci95']:.1f} | {steps} | "
            f"{'' if secs is None else f'{secs:.3f}'} | "
            f"{'' if var is None else f'{var:,.0f}'} |"
        )
    lines += [
        "",
        f"Var(NRES) / Var(PES) = **{variance['nres_over_pes']:.3f}** (expected <= 1), "
        f"{variance['setup']['draws']} independent estimates each. Machine: "
        f"{lorenz['machine']}.",
    ]
    return lines


def updated(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = ROOT / "README.md"
    readme = path.read_text()
    new = updated(readme)
    if args.check:
        if new != readme:
            print("README.md benchmark tables are out of date: run benchmarks/tables.py")
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
