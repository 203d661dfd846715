"""Generations per second on 1, 2 and 4 devices, and the bytes that cross them.

One process with 4 XLA CPU devices (``--xla_force_host_platform_device_count``);
each strategy's sharded generation step is compiled for meshes over the first
1, 2 and 4 of them and timed interleaved. The bytes exchanged per generation
are read from the compiled program: the summed output size of every collective
(all-gather, all-reduce, ...) in its HLO, per device. The comparison is a dense
parameter all-reduce, what data-parallel gradient training exchanges per step:
the full parameter count × 4 bytes.

On this project's 2-core CPU, 4 devices share 2 cores, so no speedup above 2×
is possible here; the figures show the overhead of the split, and the bytes
show what a cluster would carry. Writes benchmarks/results/scaling.json.

    python benchmarks/scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    )

import jax
import optax
from common import machine, median, time_interleaved, write

import lrne
from lrne.distributed import population_mesh, replicate, sharded_generation_step

DEVICES = (1, 2, 4)
COLLECTIVE = re.compile(
    r"=\s+(.+?)\s+(all-reduce|all-gather|collective-permute|all-to-all|reduce-scatter)"
    r"(-start)?\("
)
ARRAY = re.compile(r"\b(pred|s8|u8|s16|u16|f16|bf16|s32|u32|f32|s64|u64|f64)\[([\d,]*)\]")
BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4}


def collective_bytes(hlo: str) -> int:
    """Summed output bytes of the collectives in compiled HLO text (one device)."""
    total = 0
    for line in hlo.splitlines():
        match = COLLECTIVE.search(line)
        if match is None:
            continue
        for dtype, dims in ARRAY.findall(match.group(1)):
            count = 1
            for d in filter(None, dims.split(",")):
                count *= int(d)
            total += count * BYTES.get(dtype, 8 if dtype.endswith("64") else 4)
    return total


def settings(quick: bool) -> dict:
    if quick:
        return dict(width=16, population=16, particles=8, max_steps=50, window=10, reps=2)
    return dict(width=256, population=256, particles=128, max_steps=500, window=50, reps=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    args = parser.parse_args()
    s = settings(args.quick)
    if len(jax.devices()) < max(DEVICES):
        raise SystemExit(f"need {max(DEVICES)} devices, have {len(jax.devices())}")

    breakout = lrne.tasks.Gymnax(
        "Breakout-MinAtar",
        # input_ndim=3: one (10, 10, 4) observation, flattened, is one input.
        lrne.nn.MLP((s["width"], s["width"]), 3, rank=4, input_ndim=3),
        max_steps=s["max_steps"],
    )
    cartpole = lrne.tasks.Gymnax(
        "CartPole-v1", lrne.nn.MLP((s["width"] // 4,) * 2, 2, rank=4), max_steps=s["max_steps"]
    )
    P, N = s["population"], s["particles"]
    strategies = {
        "ga": (lrne.ga(P, P // 16, 0.1), P, breakout, False),
        "es_lowrank": (lrne.es(P, 0.05, optax.adam(0.01), noise_rank=1), P, breakout, False),
        "metropolis": (lrne.metropolis(P, 0.02, 100.0), P, breakout, False),
        "nres": (
            lrne.nres(N, 0.05, optax.adam(0.01), s["window"], s["max_steps"], noise_rank=1),
            N,
            cartpole,
            True,
        ),
    }

    if args.quick:  # one offline and one online strategy: the two code paths
        strategies = {name: strategies[name] for name in ("es_lowrank", "nres")}
    result: dict = {
        "machine": machine(),
        "devices": f"{len(jax.devices())} XLA CPU devices on {os.cpu_count()} cores",
        "strategies": {},
    }
    for name, (strategy, size, task, online) in strategies.items():
        params = task.init_params(jax.random.key(0))
        dense_params = lrne.count_params(lrne.materialize(params))
        state = strategy.init(jax.random.key(1), params, task)
        runs, exchanged = {}, {}
        for n in DEVICES:
            mesh = population_mesh(jax.devices()[:n])
            step = jax.jit(sharded_generation_step(strategy, task, size, mesh))
            placed = replicate(state, mesh)  # as the step returns it: no second compile
            compiled = step.lower(placed, jax.random.key(2)).compile()
            # On one device a collective over a group of one moves nothing.
            exchanged[n] = collective_bytes(compiled.as_text()) if n > 1 else 0
            runs[str(n)] = (lambda st, k, step=compiled: step(st, k)[0], placed)
        times, first = time_interleaved(runs, s["reps"], jax.random.key(3))
        per_s = {n: 1.0 / median(times[n]) for n in times}
        widths = "x".join(map(str, task.policy.features))
        result["strategies"][name] = {
            "task": f"{task.env.name}, rank-4 MLP {widths}, max_steps {s['max_steps']}",
            "population": size if not online else f"{size} particles x 2",
            "generations_per_s": {n: round(v, 3) for n, v in per_s.items()},
            "speedup_2_over_1": round(per_s["2"] / per_s["1"], 3),
            "speedup_4_over_1": round(per_s["4"] / per_s["1"], 3),
            "bytes_exchanged_per_generation": {str(n): exchanged[n] for n in DEVICES},
            "dense_params": dense_params,
            "dense_allreduce_bytes": dense_params * 4,
            "dense_allreduce_over_exchanged": round(
                dense_params * 4 / max(exchanged[max(DEVICES)], 1), 1
            ),
            "first_call_s": {n: round(v, 2) for n, v in first.items()},
        }
    write("scaling_quick" if args.quick else "scaling", result)


if __name__ == "__main__":
    main()
