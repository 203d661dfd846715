"""Generations per second on 1, 2 and 4 devices, and the bytes that cross them.

One process with 4 XLA CPU devices (``--xla_force_host_platform_device_count``);
each strategy's sharded generation step is compiled for meshes over the first
1, 2 and 4 of them and timed interleaved. The bytes exchanged per generation
are read from the compiled program: the summed output size of every collective
(all-gather, all-reduce, ...) in its HLO, per device. The comparison is a dense
parameter all-reduce, what data-parallel gradient training exchanges per step:
the full parameter count × 4 bytes.

On this project's 2-core CPU, 4 devices share 2 cores, so no speedup above 2×
is possible here; these rows show the overhead of the split, and the bytes
show what a cluster would carry.

``--processes``: real scaling on this machine. One process pinned to core 0
(``taskset -c 0``, one XLA device, one intra-op thread) against two processes
pinned to cores 0 and 1, one device each, joined by
``jax.distributed.initialize`` with gloo collectives (the README's multi-host
recipe). The GA (population 256, rank 4) and low-rank ES (population 256,
rank-1 noise on the dense network) on Breakout-MinAtar, MLP 400→256→256→3,
episodes of the full 1000 steps (early exit off, so both halves carry the same
work). ``two_process_speedup`` = one process's seconds per generation over two
processes'; ``bit_identical``: the final states agree bit for bit. These rows
are merged into the same JSON.

Writes benchmarks/results/scaling.json.

    python benchmarks/scaling.py [--quick] [--processes]
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import harness

# Four XLA CPU devices, set before lrne starts JAX's backend (importing it does), and only
# where this benchmark runs: a process that imports it for its table keeps its devices.
if __name__ == "__main__" or harness.running == "scaling":
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = flags + " --xla_force_host_platform_device_count=4"

import jax
import optax
from common import median, time_interleaved
from harness import ENVELOPE, goal, read, script

import lrne
from lrne.distributed import population_mesh, replicate, sharded_generation_step

DEVICES = (1, 2, 4)
FULL = {
    "width": 256,
    "population": 256,
    "particles": 128,
    "max_steps": 500,
    "window": 50,
    "repetitions": 7,
    # the multi-process rows (--processes)
    "process_width": 256,
    "process_population": 256,
    "process_steps": 1000,
    "process_generations": 10,
    "launches": 3,
}
QUICK = {
    "width": 16,
    "population": 16,
    "particles": 8,
    "max_steps": 50,
    "window": 10,
    "repetitions": 2,
    "process_width": 16,
    "process_population": 16,
    "process_steps": 50,
    "process_generations": 3,
    "launches": 1,
}
TARGETS = {
    "two_process_speedup/*": (">=", 1.8),
    "multi_process/strategies/*/bit_identical": ("==", True),
}
WORKER = Path(__file__).resolve().parent / "scaling_worker.py"
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


def process_strategy(name: str, quick: bool):
    """The multi-process rows' strategy and task (see the module docstring)."""
    s = QUICK if quick else FULL
    width, population, steps = s["process_width"], s["process_population"], s["process_steps"]
    rank = 4 if name == "ga" else 0
    policy = lrne.nn.MLP((width, width), 3, rank=rank, input_ndim=3)
    task = lrne.tasks.Gymnax("Breakout-MinAtar", policy, max_steps=steps, early_exit=False)
    if name == "ga":
        return lrne.ga(population, population // 16, 0.1), task, population
    return lrne.es(population, 0.05, optax.adam(0.01), noise_rank=1), task, population


def launch(name: str, processes: int, generations: int, quick: bool) -> list[dict]:
    """``processes`` pinned workers (core i each) for strategy ``name``: their rows."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        address = f"localhost:{probe.getsockname()[1]}"
    flags = "--xla_force_host_platform_device_count=1 --xla_cpu_multi_thread_eigen=false"
    env = {**os.environ, "XLA_FLAGS": flags, "OMP_NUM_THREADS": "1"}
    procs = []
    for i in range(processes):
        command = ["taskset", "-c", str(i), sys.executable, str(WORKER)]
        command += [name, "--num-processes", str(processes), "--process-id", str(i)]
        command += ["--address", address, "--generations", str(generations)]
        command += ["--quick"] if quick else []
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env))
    rows = []
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        if proc.returncode:
            raise SystemExit(f"worker exited {proc.returncode}:\n{out[-3000:]}")
        line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
        rows.append(json.loads(line[len("RESULT ") :]))
    return rows


def multi_process(args) -> dict:
    """One pinned process vs two, per strategy, launches alternated."""
    generations = args.process_generations
    rows: dict = {}
    for name in ("ga", "es_lowrank"):
        one, two = [], []
        for _ in range(args.launches):
            one.append(launch(name, 1, generations, args.quick)[0])
            two.append(launch(name, 2, generations, args.quick))
        one_s = median([t for r in one for t in r["seconds"]])
        two_s = median([t for rs in two for t in rs[0]["seconds"]])
        hashes = {r["state_sha256"] for r in one} | {r["state_sha256"] for rs in two for r in rs}
        _, task, size = process_strategy(name, args.quick)
        rows[name] = {
            "task": f"Breakout-MinAtar, MLP {task.policy.features}, rank "
            f"{task.policy.rank}, {task.max_steps} steps, early exit off",
            "population": size,
            "one_process_s_per_gen": one_s,
            "two_process_s_per_gen": two_s,
            "two_process_speedup": one_s / two_s,
            "bit_identical": len(hashes) == 1,
            "first_call_s": {"1": one[0]["first_call_s"], "2": two[0][0]["first_call_s"]},
        }
        print(name, {k: v for k, v in rows[name].items() if "s_per" in k or "speedup" in k})
    return {
        "setup": "1 process on core 0 vs 2 processes on cores 0 and 1 (taskset), one XLA "
        f"device and one thread each, jax.distributed + gloo; medians over {args.launches} "
        f"alternated launches x {generations} warm generations",
        "strategies": rows,
        "two_process_speedup": {n: r["two_process_speedup"] for n, r in rows.items()},
    }


def arguments(parser) -> None:
    parser.add_argument("--processes", action="store_true", help="the multi-process rows")


def run(args) -> dict:
    # The rows of the other mode come from the earlier result.
    earlier = read(args.output) or {}
    earlier = {k: v for k, v in earlier.items() if k not in ENVELOPE}
    if args.processes:
        mp = multi_process(args)
        return {**earlier, "multi_process": mp, "two_process_speedup": mp["two_process_speedup"]}
    if len(jax.devices()) < max(DEVICES):
        raise SystemExit(f"need {max(DEVICES)} devices, have {len(jax.devices())}")

    breakout = lrne.tasks.Gymnax(
        "Breakout-MinAtar",
        # input_ndim=3: one (10, 10, 4) observation, flattened, is one input.
        lrne.nn.MLP((args.width, args.width), 3, rank=4, input_ndim=3),
        max_steps=args.max_steps,
    )
    cartpole = lrne.tasks.Gymnax(
        "CartPole-v1", lrne.nn.MLP((args.width // 4,) * 2, 2, rank=4), max_steps=args.max_steps
    )
    P, N = args.population, args.particles
    strategies = {
        "ga": (lrne.ga(P, P // 16, 0.1), P, breakout, False),
        "es_lowrank": (lrne.es(P, 0.05, optax.adam(0.01), noise_rank=1), P, breakout, False),
        "metropolis": (lrne.metropolis(P, 0.02, 100.0), P, breakout, False),
        "nres": (
            lrne.nres(N, 0.05, optax.adam(0.01), args.window, args.max_steps, noise_rank=1),
            N,
            cartpole,
            True,
        ),
    }
    if args.quick:  # one offline and one online strategy: the two code paths
        strategies = {name: strategies[name] for name in ("es_lowrank", "nres")}
    result: dict = {
        "devices": f"{len(jax.devices())} XLA CPU devices on {os.cpu_count()} cores "
        "(fake devices sharing the cores: the overhead of the split, not a speedup)",
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
        times, first = time_interleaved(runs, args.repetitions, jax.random.key(3))
        per_s = {n: 1.0 / median(times[n]) for n in times}
        widths = "x".join(map(str, task.policy.features))
        result["strategies"][name] = {
            "task": f"{task.env.name}, rank-4 MLP {widths}, max_steps {args.max_steps}",
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
    keep = ("multi_process", "two_process_speedup")  # an earlier --processes run's rows
    return {**result, **{key: earlier[key] for key in keep if key in earlier}}


def table(sc: dict) -> str:
    """Markdown: generations per second on 1, 2 and 4 devices, bytes exchanged, two processes."""
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
                f"**{row['two_process_speedup']:.2f}** | "
                f"{goal(TARGETS, 'two_process_speedup/*')} | "
                f"{'yes' if row['bit_identical'] else 'NO'} |"
            )
    lines += ["", f"Machine: {sc['machine']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
