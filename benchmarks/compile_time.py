"""First-call time of one generation: compile + run, as a user's first ``step(state, key)``.

GA (population 256, rank-4 MLP 400→256→256→3) and low-rank ES (population
1024, dense MLP 400→256→256→3, rank-1 noise) on Breakout-MinAtar, one episode
per member with early exit, with compaction (the default, 0.75) and with one
buffer (``compaction=None``). Each measurement runs in a fresh Python process,
so nothing is cached; the arms are interleaved and each is repeated, medians.
The second and later calls (``warm_s``) are the generation's cost once
compiled (random policies on Breakout die within tens of steps, so they are
short). Target: first call <= 5 s with compaction. Also timed: the default
``lrne train`` (no arguments: the quick CartPole GA), wall-clock of the whole
command in a fresh process, imports and compiling included
(``lrne_train_wall_s``). And issue 24's figure: the first generation of a
2-block, d=32 stock-flax transformer LM (``nn.SelfAttention`` etc., from
``stock_layers.py``) against lrne's own ``lrne.nn.Transformer`` of the same
size, both under low-rank ES at P=256 (target: ratio <= 2).
Writes benchmarks/results/compile_time.json.

    python benchmarks/compile_time.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import median, timed
from harness import goal, script

ARMS = {
    "ga_compaction": ("ga", 0.75),
    "es_lowrank_compaction": ("es", 0.75),
    "ga_one_buffer": ("ga", None),
    "es_lowrank_one_buffer": ("es", None),
    "lm_stock_flax": ("lm_stock", None),
    "lm_lrne": ("lm_lrne", None),
}
FULL = {
    "env": "Breakout-MinAtar",
    "hidden": [256, 256],
    "ga_population": 256,
    "es_population": 1024,
    "lm_population": 256,
    "repetitions": 3,
}
QUICK = {
    "env": "CartPole-v1",
    "hidden": [32, 32],
    "ga_population": 16,
    "es_population": 32,
    "lm_population": 16,
    "repetitions": 1,
}
TARGETS = {
    "first_call_s/ga_compaction": ("<=", 5.0),
    "first_call_s/es_lowrank_compaction": ("<=", 5.0),
    # the stock-flax transformer's first generation over lrne's own
    "lm_first_call_ratio": ("<=", 2.0),
}


def lm_arm(name: str, population: int) -> tuple:
    """A 2-block, d=32 transformer LM under low-rank ES: stock flax or lrne's own."""
    import optax
    from stock_layers import StockTransformer, task_for

    import lrne

    if name == "lm_stock":
        model = StockTransformer(vocab=65, width=32)
    else:
        model = lrne.nn.Transformer(vocab_size=65, hidden=32, num_heads=4, ff=128, num_blocks=2)
    return task_for(model, 65, 64), lrne.es(population, 0.01, optax.adam(1e-3), noise_rank=1)


def child(args) -> dict:
    """One fresh process: build, then time the first call and three warm calls."""
    import optax

    import lrne

    strategy_name, compaction = args.child
    if strategy_name.startswith("lm_"):
        return timed_generations(*lm_arm(strategy_name, args.lm_population))
    env, env_params = lrne.tasks.make_env(args.env)
    obs_ndim = len(env.observation_space(env_params).shape)
    rank = 4 if strategy_name == "ga" else 0
    outputs = lrne.tasks.action_size(args.env)
    policy = lrne.nn.MLP(tuple(args.hidden), outputs, rank=rank, input_ndim=obs_ndim)
    compaction = None if compaction == "None" else float(compaction)
    task = lrne.tasks.Gymnax(args.env, policy, compaction=compaction)
    if strategy_name == "ga":
        strategy = lrne.ga(args.ga_population, args.ga_population // 16, 0.1)
    else:
        strategy = lrne.es(args.es_population, 0.05, optax.sgd(0.01), noise_rank=1)
    return timed_generations(task, strategy)


def timed_generations(task, strategy) -> dict:
    import jax

    import lrne

    key = jax.random.key(0)
    state = strategy.init(key, task.init_params(key))
    step = jax.jit(lrne.generation_step(strategy, task))
    (state, metrics), first = timed(step, state, key)
    warm = []
    for k in jax.random.split(jax.random.key(1), 3):
        (state, metrics), seconds = timed(step, state, k)
        warm.append(seconds)
    return {
        "first_call_s": first,
        "warm_s": median(warm),
        "env_steps": int(metrics.get("env_steps", 0)),
        "env_steps_computed": int(metrics.get("env_steps_computed", 0)),
    }


def lrne_train_wall_s() -> float:
    """Seconds of ``lrne train`` with no arguments, run as a newcomer runs it."""
    lrne = Path(sys.executable).with_name("lrne")
    with tempfile.TemporaryDirectory() as out:
        tick = time.perf_counter()
        subprocess.run([str(lrne), "train", "--output", out], capture_output=True, check=True)
        return time.perf_counter() - tick


def arguments(parser) -> None:
    parser.add_argument(
        "--child", nargs=2, metavar=("STRATEGY", "COMPACTION"), help=argparse.SUPPRESS
    )


def run(args) -> dict | None:
    if args.child:
        print(json.dumps(child(args)))
        return None
    sizes = [f"--{k.replace('_', '-')}={args.sizes[k]}" for k in args.sizes if "population" in k]
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    train_wall = []
    for _ in range(args.repetitions):
        train_wall.append(lrne_train_wall_s())
        for arm, (name, compaction) in ARMS.items():
            command = [sys.executable, __file__, "--child", name, str(compaction), *sizes]
            done = subprocess.run(
                command + (["--quick"] if args.quick else []),
                capture_output=True,
                text=True,
                check=True,
            )
            runs[arm].append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = {a: median([r["first_call_s"] for r in rs]) for a, rs in runs.items()}
    return {
        "first_call_s": first,
        "warm_s": {a: median([r["warm_s"] for r in rs]) for a, rs in runs.items()},
        "env_steps_computed": {a: rs[-1]["env_steps_computed"] for a, rs in runs.items()},
        "lm_first_call_ratio": first["lm_stock_flax"] / first["lm_lrne"],
        "lrne_train_wall_s": median(train_wall),
        "setup": {
            "mlp_hidden": args.hidden,
            "ga": {"population_size": args.ga_population, "rank": 4},
            "es_lowrank": {"population_size": args.es_population, "noise_rank": 1, "rank": 0},
            "lm": {
                "model": "2 blocks, d=32, 4 heads, ff 128, vocab 65, context 64",
                "lm_stock_flax": "nn.Embed, causal nn.SelfAttention, nn.LayerNorm, nn.Dense MLP",
                "lm_lrne": "lrne.nn.Transformer",
                "strategy": f"lrne.es, noise_rank=1, population {args.lm_population}",
            },
            "early_exit": True,
            "compaction": {a: c for a, (_, c) in ARMS.items()},
            "note": "each measurement in a fresh process; medians over repetitions",
        },
        "all_first_call_s": {a: [r["first_call_s"] for r in rs] for a, rs in runs.items()},
    }


def table(ct: dict) -> str:
    """Markdown: the first call of a GA and an ES generation, with and without compaction."""
    setup, first = ct["setup"], ct["first_call_s"]
    target = goal(TARGETS, "first_call_s/ga_compaction")
    return "\n".join(
        [
            f"**Compile time** (`benchmarks/compile_time.py`): the first call of one generation "
            f"(compiling + running), each in a fresh process, {setup['env']}, early exit on, "
            f"median of {setup['repetitions']}; GA population {setup['ga']['population_size']} "
            f"at rank 4, low-rank ES population {setup['es_lowrank']['population_size']}.",
            "",
            "| generation | with compaction | one buffer | target (compaction) |",
            "| --- | ---: | ---: | ---: |",
            f"| GA | **{first['ga_compaction']:.2f} s** | {first['ga_one_buffer']:.2f} s | "
            f"{target} s |",
            f"| low-rank ES | **{first['es_lowrank_compaction']:.2f} s** | "
            f"{first['es_lowrank_one_buffer']:.2f} s | {target} s |",
            "",
            f"The default `lrne train` (quick CartPole GA), whole command in a fresh process: "
            f"{ct['lrne_train_wall_s']:.1f} s. Machine: {ct['machine']}.",
        ]
    )


if __name__ == "__main__":
    script(__file__)
