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
        lowrank = t.get("lowrank", t.get("lowrank_r1"))
        lines.append(
            f"| {env} ({steps} steps) | {'×'.join(map(str, hidden))} | {lowrank:.3f} | "
            f"{t['plain']:.3f} | {es['lowrank_over_plain'][env]:.2f} | >= 0.9 |"
        )
    chunked = es.get("lowrank_chunked_over_plain")
    if chunked:
        lines += [
            "",
            "Option tried, scoring the members in chunks (`lrne.tasks.Chunked`), "
            "lowrank_over_plain by members per chunk: "
            + "; ".join(
                f"{env} " + ", ".join(f"{n.rsplit('_', 1)[1]}: {r:.2f}" for n, r in c.items())
                for env, c in chunked.items()
            )
            + ".",
        ]
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
        "",
        *_subspace_lines(_load("subspace_finetune")),
        "",
        *_correspondence_lines(_load("correspondence")),
        "",
        *_lm_lines(_load("lm_throughput")),
        "",
        *_scaling_lines(_load("scaling")),
        "",
        *_floor_lines(),
        "",
        *_compile_lines(),
        "",
        *_hyperscale_lines(),
    ]
    return lines


def _optional(name: str) -> dict | None:
    path = ROOT / "benchmarks" / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _present(results: dict[str, dict | None]) -> dict[str, dict]:
    """The entries of ``results`` that were run (:func:`_optional` found their JSON)."""
    return {name: result for name, result in results.items() if result is not None}


def _floor_lines() -> list[str]:
    fl = _optional("floor")
    head = (
        "**The floor** (`benchmarks/floor.py`): one generation against what stepping the "
        "same episodes alone (action 0, no network) plus one forward pass of the "
        "unperturbed network over the same batch alone cost, same process, interleaved."
    )
    if fl is None:
        return [head, "", "Not measured yet: run `python benchmarks/floor.py`."]
    lines = [
        head,
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
                f"**{r['over_floor']:.2f}** | <= {fl['targets'][arm + '_over_floor']} |"
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
    return [*lines, "", f"Machine: {fl['machine']}."]


def _compile_lines() -> list[str]:
    ct = _optional("compile_time")
    if ct is None:
        return []
    setup, first = ct["setup"], ct["first_call_s"]
    return [
        f"**Compile time** (`benchmarks/compile_time.py`): the first call of one generation "
        f"(compiling + running), each in a fresh process, {setup['env']}, early exit on, "
        f"median of {setup['repetitions']}; GA population {setup['ga']['population_size']} at "
        f"rank 4, low-rank ES population {setup['es_lowrank']['population_size']}.",
        "",
        "| generation | with compaction | one buffer | target (compaction) |",
        "| --- | ---: | ---: | ---: |",
        f"| GA | **{first['ga_compaction']:.2f} s** | {first['ga_one_buffer']:.2f} s | "
        f"<= {ct['target_first_call_s']:g} s |",
        f"| low-rank ES | **{first['es_lowrank_compaction']:.2f} s** | "
        f"{first['es_lowrank_one_buffer']:.2f} s | <= {ct['target_first_call_s']:g} s |",
        "",
        f"The default `lrne train` (quick CartPole GA), whole command in a fresh process: "
        f"{ct['lrne_train_wall_s']:.1f} s. Machine: {ct['machine']}.",
    ]


def _hyperscale_lines() -> list[str]:
    hs = _optional("hyperscale")
    if hs is None:
        return []
    setup = hs["setup"]
    return [
        f"**A hyperscale population** (`benchmarks/hyperscale.py`): one low-rank ES "
        f"generation of **{hs['population_size']:,} members** on an MLP "
        f"{'→'.join(map(str, setup['mlp']))} ({hs['num_params']:,} params), rank-1 noise, "
        f"antithetic, members scored {hs['chunk_size']:,} at a time (`lrne.tasks.Chunked`) "
        "with their noise drawn per chunk (`lrne.es(..., store_noise=False)`).",
        "",
        "| first generation (compiling) | warm generation | peak RSS | target | "
        "dense population × params |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {hs['first_generation_s']:.1f} s | {hs['generation_s']:.1f} s | "
        f"**{hs['peak_rss_gib']:.2f} GiB** | <= {hs['target_peak_rss_gib']} GiB | "
        f"{hs['dense_population_tib']:.2f} TiB |",
        "",
        f"Machine: {hs['machine']}.",
    ]


def _lm_lines(lm: dict) -> list[str]:
    setup = lm["setup"]
    return [
        f"**Language-model throughput** (`benchmarks/lm_throughput.py`): {setup['model']}, "
        f"{setup['num_params']:,} params, population {setup['population']} × "
        f"{setup['sequences_per_member']} sequences of {setup['context']} characters.",
        "",
        "| evaluation | tokens / s | ratio | target |",
        "| --- | ---: | ---: | ---: |",
        f"| plain batched forward, shared weights | {lm['tokens_per_s']['plain']:,.0f} | 1.00 | |",
        f"| ES population, rank-1 noise in the forward pass | "
        f"{lm['tokens_per_s']['lowrank_es_r1']:,.0f} | **{lm['lm_lowrank_over_plain']:.3f}** "
        "| >= 0.9 |",
        "",
        f"Machine: {lm['machine']}.",
    ]


def _scaling_lines(sc: dict) -> list[str]:
    lines = [
        f"**Scaling out** (`benchmarks/scaling.py`): {sc['devices']}; generations per second "
        "of `sharded_generation_step` on meshes of 1, 2 and 4 of them (one process, "
        "interleaved), and the bytes the compiled step's collectives move per generation, "
        "against a dense all-reduce of the parameters.",
        "",
        "| strategy | task | gen/s on 1 / 2 / 4 | bytes exchanged (4 devices) | dense all-reduce "
        "| ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in sc["strategies"].items():
        rate = row["generations_per_s"]
        lines.append(
            f"| {name} (population {row['population']}) | {row['task']} | "
            f"{rate['1']:.2f} / {rate['2']:.2f} / {rate['4']:.2f} | "
            f"{row['bytes_exchanged_per_generation']['4']:,} | "
            f"{row['dense_allreduce_bytes']:,} | {row['dense_allreduce_over_exchanged']:,.1f}× |"
        )
    mp = sc.get("multi_process")
    if mp is not None:
        lines += [
            "",
            f"**Two processes on two cores** (`benchmarks/scaling.py --processes`): {mp['setup']}.",
            "",
            "| strategy | task | population | s / gen, 1 process | s / gen, 2 processes "
            "| speedup | target | bit-identical |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for name, row in mp["strategies"].items():
            lines.append(
                f"| {name} | {row['task']} | {row['population']} | "
                f"{row['one_process_s_per_gen']:.3f} | {row['two_process_s_per_gen']:.3f} | "
                f"**{row['two_process_speedup']:.2f}** | >= {mp['target_two_process_speedup']} | "
                f"{'yes' if row['bit_identical'] else 'NO'} |"
            )
    lines += ["", f"Machine: {sc['machine']}."]
    return lines


def _fmt(cell: dict) -> str:
    return f"{cell['mean']:.3f} ± {cell['ci95']:.3f}"


def _subspace_lines(sub: dict) -> list[str]:
    setup = sub["setup"]
    sigmas = setup["sigmas"]
    lines = [
        "**Subspace fine-tuning** (`benchmarks/subspace_finetune.py`, plot "
        "`benchmarks/results/subspace_finetune.png`): digits 8×8, MLP "
        f"{'→'.join(map(str, setup['mlp']))} pretrained with Adam to test accuracy "
        f"**{sub['pretrained_test_accuracy']:.3f}**; {setup['children']} children, selection "
        f"on validation log-likelihood, top-{setup['ensemble_k']} ensemble, "
        f"{setup['seeds']} seeds (mean ± 95% CI of test accuracy). One generation:",
        "",
        "| density | " + " | ".join(f"σ = {s:g}" for s in sigmas) + " |",
        "| --- | " + " | ".join("---:" for _ in sigmas) + " |",
    ]
    for name, rows in sub["one_generation"].items():
        cells = [f"{_fmt(r['best_child'])} / {_fmt(r['ensemble'])}" for r in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "(each cell: best child / ensemble). After "
        f"{setup['generations']} generations (GA, {setup['elites_multi_generation']} elites):",
        "",
        "| density, mask | " + " | ".join(f"σ = {s:g}" for s in sigmas) + " |",
        "| --- | " + " | ".join("---:" for _ in sigmas) + " |",
    ]
    for name, rows in sub["generations"].items():
        label = name if "static" in name else f"{name} dynamic"
        cells = [f"{_fmt(r['best_child'])} / {_fmt(r['ensemble'])}" for r in rows]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {sub['machine']}."]
    return lines


def _correspondence_lines(cor: dict) -> list[str]:
    lines = [
        "**Neuroevolution ↔ gradient descent** (`benchmarks/correspondence.py`, plot "
        "`benchmarks/results/correspondence.png`). One step from θ₀, "
        f"{cor['setup']['one_step_samples']:,} chains: relative error of the mean step "
        "against the prediction (noise floor: expected relative sampling error), and the "
        "mean second moment over its prediction (σ² at finite β, σ²/2 at β = ∞):",
        "",
        "| problem | σ | β | a = βσ\\|∇U\\| | mean step rel. error | noise floor | "
        "second moment / predicted |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for problem, rows in cor["one_step"].items():
        for r in rows:
            beta = r["beta"] if r["beta"] == "inf" else f"{r['beta']:.3g}"
            a = "" if r["a"] is None else f"{r['a']:.3f}"
            lines.append(
                f"| {problem} | {r['sigma']:g} | {beta} | {a} | {r['mean_relative_error']:.3f} "
                f"| {r['noise_floor_relative']:.3f} | {r['second_moment_over_predicted']:.3f} |"
            )
    lines += [
        "",
        f"Trajectories ({cor['setup']['chains']} chains, sin(2πx) on "
        f"{cor['setup']['regression_points']} points, 30 tanh units, "
        f"{cor['setup']['gd_steps']} units of GD time): Δ = |mean θ_NE − θ_GD|.",
        "",
        "| setting | σ | NE steps | mean Δ(t) | max Δ(t) | final loss: GD / chains' mean |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, runs in cor["trajectories"].items():
        for r in runs:
            lines.append(
                f"| {mode} | {r['sigma']:.3g} | {r['ne_steps']:,} | {r['delta_mean']:.4f} | "
                f"{r['delta_max']:.4f} | {r['gd_loss'][-1]:.4f} / "
                f"{r['chains_mean_loss'][-1]:.4f} |"
            )
    decreasing = cor["delta_decreases_with_sigma"]
    lines += [
        "",
        "Δ falls as σ falls: "
        + ", ".join(f"{mode}: {'yes' if ok else 'no'}" for mode, ok in decreasing.items())
        + f". Machine: {cor['machine']}.",
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


def _replace_block(readme: str, name: str, text: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{text}\n{end}{tail}"


SUITE_ENVS = (
    "CartPole-v1",
    "Acrobot-v1",
    "Pendulum-v1",
    "MountainCarContinuous-v0",
    "Breakout-MinAtar",
    "SpaceInvaders-MinAtar",
    "Asterix-MinAtar",
    "Freeway-MinAtar",
)
SUITE_METHODS = {
    "lrne_es": "lrne low-rank ES",
    "lrne_ga": "lrne factorized GA",
    "openes": "evosax Open_ES",
    "ppo": "rejax PPO",
}


def render_suite() -> str:
    """The equal-wall-clock suite: env × method, from benchmarks/results/suite/<env>.json."""
    results = _present({env: _optional(f"suite/{env}") for env in SUITE_ENVS})
    if not results:
        return "No suite results yet: run `python benchmarks/suite.py --env ENV`."
    any_result = next(iter(results.values()))
    minutes = any_result["seconds"] / 60
    lines = [
        f"Each method trains for the same wall-clock ({minutes:g} min, compiling included) "
        f"on the same network ({any_result['network']}), {any_result['seeds']} seeds; the "
        f"final policy is scored on {any_result['episodes']} fresh episodes (mean over seeds "
        "± 95% CI over seeds). Time to threshold: median over the seeds that reached it "
        "(k/n seeds), from snapshots at growing gaps (a quarter of the time so far, 0.5 s to "
        "10 s) scored off the clock on 32 episodes; the clock starts before compiling. "
        "Settings: the best of a σ × population sweep (30 s each, one seed) for the three "
        "evolutionary methods (`sweep` in each JSON); rejax PPO defaults.",
        "",
        "| env (threshold) | " + " | ".join(SUITE_METHODS.values()) + " | best lrne vs "
        "Open_ES / PPO |",
        "| --- | " + " | ".join("---:" for _ in SUITE_METHODS) + " | --- |",
    ]
    wins, n = {"openes": 0, "ppo": 0}, 0  # n: envs with all methods run
    for env in SUITE_ENVS:
        if env not in results:
            lines.append(f"| {env} | " + " | ".join("not run yet" for _ in SUITE_METHODS) + " | |")
            continue
        result = results[env]
        cells = []
        for method in SUITE_METHODS:
            entry = result["methods"].get(method)
            if entry is None:
                cells.append("not run yet")
                continue
            final = entry["final_return"]
            cell = f"{final['mean']:.1f} ± {final['ci95']:.1f}"
            reached, seeds = entry["seeds_reaching_threshold"], len(entry["runs"])
            if reached:
                cell += f"<br>{entry['median_seconds_to_threshold']:.0f} s ({reached}/{seeds})"
            cell += f"<br>{entry['env_steps'] / 1e6:.1f} M steps"
            cells.append(cell)
        means = {m: e["final_return"]["mean"] for m, e in result["methods"].items()}
        if set(means) == set(SUITE_METHODS):
            n += 1
            lrne = max(means["lrne_es"], means["lrne_ga"])
            verdict = []
            for other in wins:
                wins[other] += lrne >= means[other]
                gap = lrne - means[other]
                verdict.append(f"{'≥' if gap >= 0 else '<'} ({gap:+.1f})")
            cells.append(" / ".join(verdict))
        else:  # some methods run so far (`suite.py --methods`): no verdict yet
            cells.append(f"{len(means)} of {len(SUITE_METHODS)} methods run")
        lines.append(f"| {env} ({result['threshold']:g}) | " + " | ".join(cells) + " |")
    machines = sorted({r["machine"] for r in results.values()})
    lines += [
        "",
        f"By the mean final return, the better lrne method is ≥ evosax Open_ES on "
        f"**{wins['openes']}/{n}** envs run in full (target: every env) and ≥ rejax PPO on "
        f"**{wins['ppo']}/{n}** (target: 4 of the 8).",
        "",
        f"Machine: {'; '.join(machines)}.",
    ]
    return "\n".join(lines)


LM_RUNS = ("es", "adam", "es_40k", "adam_40k")
"""benchmarks/results/lm_train_<name>.json: the default model, then the 40k-param one."""
LM_METHODS = {"es": "lrne low-rank ES", "adam": "backprop, optax Adam"}


def render_lm() -> str:
    """The evolved language model against Adam, from benchmarks/results/lm_train_*.json."""
    runs = {}
    for name in LM_RUNS:
        path = ROOT / "benchmarks" / "results" / f"lm_train_{name}.json"
        if path.exists():
            runs[name] = json.loads(path.read_text())
    if not runs:
        return "Not run yet: `python benchmarks/lm_train.py --method es` (and `adam`)."
    first = next(iter(runs.values()))
    ref = first["reference"]
    lines = [
        f"Context {first['model']['context']}; {first['seconds'] / 60:.0f} minutes of "
        "wall-clock each (compiling included, held-out scoring excluded). Held-out loss: the "
        "first 32,768 characters of the last 10% of the text. References on the last 10% with "
        f"counts from the first 90%: unigram {ref['unigram']:.2f}, bigram {ref['bigram']:.2f} "
        "nats/char.",
        "",
        "| transformer | method | setting | held-out loss at the end | best seen | updates "
        "| tokens scored |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for run in runs.values():
        m = run["model"]
        model = (
            f"width {m['hidden']}, {m['num_heads']} heads, ff {m['ff']}, {m['num_blocks']} "
            f"blocks: {m['params']:,} params"
        )
        setting = ", ".join(f"{k} {v}" for k, v in run["setting"].items())
        last = run["curve"][-1]
        lines.append(
            f"| {model} | {LM_METHODS[run['method']]} | {setting} | {run['final_eval_loss']:.3f} | "
            f"{run['best_eval_loss']:.3f} | {last['generation']:,} | {last['steps'] / 1e6:.0f} M |"
        )
    for name, run in runs.items():
        if name.endswith("_40k"):
            continue
        params = run["model"]["params"]
        about = f"{LM_METHODS[run['method']]} model ({params:,} params, temperature 1)"
        lines += ["", f"200 characters from the {about}:", "", "```text", run["sample"], "```"]
    machines = sorted({r["machine"] for r in runs.values()})
    lines += ["", f"Machine: {'; '.join(machines)}."]
    return "\n".join(lines)


def updated(readme: str) -> str:
    readme = _replace_block(readme, "bench", render())
    readme = _replace_block(readme, "suite", render_suite())
    readme = _replace_block(readme, "lm_train", render_lm())
    return _replace_block(readme, "paper_a_fair", render_paper_a_fair())


PAPER_A_TASKS = {
    "lm": "LM, tiny Shakespeare (−held-out loss, nats/char)",
    "breakout": "MinAtar Breakout (return)",
    "space_invaders": "MinAtar SpaceInvaders (return)",
    "pendulum_pixels": "Pendulum-v1 from pixels (return)",
}
PAPER_A_FINDINGS = {
    "factorized_ge_full_at_best_sigmas": "factorized ≥ full, each at its best σ",
    "factorized_gt_full_significant": "factorized > full, p < 0.05",
    "full_gt_factorized_significant": "full > factorized, p < 0.05",
    "full_gt_small": "full > small",
    "factorized_gt_small_significant": "factorized > small, p < 0.05",
    "factorized_at_matched_delta_ge_full": "factorized at the full arm's ΔW ≥ full",
    "factorized_less_time_per_generation_last": "factorized: less time per generation",
    "factorized_fewer_env_steps_per_generation_last": "factorized: fewer env steps per generation",
}


def render_paper_a_fair() -> str:
    """Garbus & Pollack at fair settings, from benchmarks/results/paper_a/<task>.json."""
    results = _present({task: _optional(f"paper_a/{task}") for task in PAPER_A_TASKS})
    if not results:
        return "No fair run yet: `python benchmarks/paper_a.py --task TASK`."
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
            f"**{PAPER_A_TASKS[task]}**, {generations} generations, "
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
                f"{sweep} | {row['sigma']:.3g} | {ratio:.3f} | {_fmt(row['final'])} | {p} | "
                f"{row['seconds_per_generation_last']:.3f} | {steps} |"
            )
        found = [
            f"{label}: **{'yes' if pa['findings'][key] else 'no'}**"
            for key, label in PAPER_A_FINDINGS.items()
            if not (task == "lm" and "env_steps" in key)
        ]
        lines += ["", f"Findings: {'; '.join(found)}."]
    machines = sorted({r["machine"] for r in results.values()})
    missing = [t for t in PAPER_A_TASKS if t not in results]
    if missing:
        lines += ["", f"Not run yet at fair settings: {', '.join(missing)}."]
    lines += ["", f"Machine: {'; '.join(machines)}."]
    return "\n".join(lines)


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
