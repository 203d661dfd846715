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

from common import machine, median, write

ARMS = {
    "ga_compaction": ("ga", 0.75),
    "es_lowrank_compaction": ("es", 0.75),
    "ga_one_buffer": ("ga", None),
    "es_lowrank_one_buffer": ("es", None),
    "lm_stock_flax": ("lm_stock", None),
    "lm_lrne": ("lm_lrne", None),
}
LM_TARGET_RATIO = 2.0  # stock-flax transformer's first generation / lrne's own


def sizes(quick: bool) -> dict:
    if quick:
        return dict(env="CartPole-v1", hidden=(32, 32), ga=16, es=32, repetitions=1)
    return dict(env="Breakout-MinAtar", hidden=(256, 256), ga=256, es=1024, repetitions=3)


def lm_arm(name: str, quick: bool) -> tuple:
    """A 2-block, d=32 transformer LM under low-rank ES (P=256): stock flax or lrne's own."""
    import optax
    from stock_layers import StockTransformer, task_for

    import lrne

    if name == "lm_stock":
        model = StockTransformer(vocab=65, width=32)
    else:
        model = lrne.nn.Transformer(vocab_size=65, hidden=32, num_heads=4, ff=128, num_blocks=2)
    population = 16 if quick else 256
    return task_for(model, 65, 64), lrne.es(population, 0.01, optax.adam(1e-3), noise_rank=1)


def child(strategy_name: str, compaction: float | None, quick: bool) -> dict:
    """One fresh process: build, then time the first call and three warm calls."""
    import optax

    import lrne

    if strategy_name.startswith("lm_"):
        task, strategy = lm_arm(strategy_name, quick)
        return timed(task, strategy)
    s = sizes(quick)
    env, env_params = lrne.tasks.make_env(s["env"])
    obs_ndim = len(env.observation_space(env_params).shape)
    rank = 4 if strategy_name == "ga" else 0
    outputs = lrne.tasks.action_size(s["env"])
    policy = lrne.nn.MLP(s["hidden"], outputs, rank=rank, input_ndim=obs_ndim)
    task = lrne.tasks.Gymnax(s["env"], policy, compaction=compaction)
    if strategy_name == "ga":
        strategy = lrne.ga(s["ga"], s["ga"] // 16, 0.1)
    else:
        strategy = lrne.es(s["es"], 0.05, optax.sgd(0.01), noise_rank=1)
    return timed(task, strategy)


def timed(task, strategy) -> dict:
    import jax

    import lrne

    key = jax.random.key(0)
    state = strategy.init(key, task.init_params(key))
    step = jax.jit(lrne.generation_step(strategy, task))
    tick = time.perf_counter()
    state, metrics = jax.block_until_ready(step(state, key))
    first = time.perf_counter() - tick
    warm = []
    for k in jax.random.split(jax.random.key(1), 3):
        tick = time.perf_counter()
        state, metrics = jax.block_until_ready(step(state, k))
        warm.append(time.perf_counter() - tick)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    parser.add_argument(
        "--child", nargs=2, metavar=("STRATEGY", "COMPACTION"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        name, compaction = args.child
        compaction = None if compaction == "None" else float(compaction)
        print(json.dumps(child(name, compaction, args.quick)))
        return

    s = sizes(args.quick)
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    train_wall = []
    for _ in range(s["repetitions"]):
        train_wall.append(lrne_train_wall_s())
        for arm, (name, compaction) in ARMS.items():
            command = [sys.executable, __file__, "--child", name, str(compaction)]
            done = subprocess.run(
                command + (["--quick"] if args.quick else []),
                capture_output=True,
                text=True,
                check=True,
            )
            runs[arm].append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {
        "first_call_s": {a: median([r["first_call_s"] for r in rs]) for a, rs in runs.items()},
        "warm_s": {a: median([r["warm_s"] for r in rs]) for a, rs in runs.items()},
        "env_steps_computed": {a: rs[-1]["env_steps_computed"] for a, rs in runs.items()},
        "target_first_call_s": 5.0,
        "lm_first_call_ratio": median([r["first_call_s"] for r in runs["lm_stock_flax"]])
        / median([r["first_call_s"] for r in runs["lm_lrne"]]),
        "target_lm_first_call_ratio": LM_TARGET_RATIO,
        "lrne_train_wall_s": median(train_wall),
        "machine": machine(),
        "setup": {
            "env": s["env"],
            "mlp_hidden": list(s["hidden"]),
            "ga": {"population_size": s["ga"], "rank": 4},
            "es_lowrank": {"population_size": s["es"], "noise_rank": 1, "rank": 0},
            "lm": {
                "model": "2 blocks, d=32, 4 heads, ff 128, vocab 65, context 64",
                "lm_stock_flax": "nn.Embed, causal nn.SelfAttention, nn.LayerNorm, nn.Dense MLP",
                "lm_lrne": "lrne.nn.Transformer",
                "strategy": "lrne.es, noise_rank=1, population 256",
            },
            "early_exit": True,
            "compaction": {a: c for a, (_, c) in ARMS.items()},
            "repetitions": s["repetitions"],
            "quick": args.quick,
            "note": "each measurement in a fresh process; medians over repetitions",
        },
        "all_first_call_s": {a: [r["first_call_s"] for r in rs] for a, rs in runs.items()},
    }
    write("compile_time_quick" if args.quick else "compile_time", result)


if __name__ == "__main__":
    main()
