"""Gradient-estimator quality on a language model: cos(ĝ, −∇L) against population × noise rank.

At one fixed parameter point of the character-level transformer of
``lm_train.py`` (width 16, 2 heads, feed-forward 64, 2 blocks, rotary
positions, context 64: 7,600 params) on tiny Shakespeare, reached by
``--adam-steps`` steps of backprop with Adam (lr 0.01) from init, so the
gradient is that of a model past its first steps, not of a uniform guess,
:func:`lrne.diagnostics.gradient_diagnostics` measures the ES estimate of
``lrne.es`` (antithetic pairs, centered ranks, σ = ``--sigma``) against backprop
on the same batch, for populations of 64, 256 and 1024 members × dense, rank-1
and rank-4 noise, ``--repeats`` independent draws each (ask key and batch).

Prediction beside each: for a fitness linear in δ, N pairs and identity
shaping, cos ≈ √(N / (N + d_eff)) with d_eff = d + 1 (dense) or d + 1 +
Σ_leaves 2(m + n + 1)/r·‖∇L_leaf‖²/‖∇L‖² (rank r; exact second moment by
Isserlis' theorem, tests/test_diagnostics.py); centered ranks keep 3/π of the
pairs' information (the squared correlation of a Gaussian with its uniform
scores), so N is replaced by 3N/π.

Overhead: a short ``lrne.run`` of rank-1 ES (``--overhead-population``
members, ``--overhead-generations`` generations) with and without the
:class:`~lrne.diagnostics.GradientDiagnostics` callback at its default K, the
step compiled beforehand; the callback's compile is counted. Also the warm
seconds of one diagnostic against one generation. Writes
benchmarks/results/diagnostics.json and diagnostics.png.

    python -m benchmarks diagnostics [--quick]
"""

from __future__ import annotations

import functools
import math
import time

import jax
import numpy as np
import optax
from common import band_plot, corpus, mean_ci95
from harness import RESULTS, goal, pm, script

import lrne
from lrne.diagnostics import (
    DEFAULT_EVERY,
    GradientDiagnostics,
    effective_dim,
    gradient_diagnostics,
    predicted_cosine,
)
from lrne.genome import path_str
from lrne.nn.transformer import Transformer

MODEL = {"hidden": 16, "num_heads": 2, "ff": 64, "num_blocks": 2}
NOISES = {"dense": 0, "rank1": 1, "rank4": 4}
FULL = {
    "populations": (64, 256, 1024),
    "repeats": 6,
    "batch_size": 8,
    "context": 64,
    "sigma": 0.01,
    "adam_steps": 100,
    "overhead_population": 256,
    "overhead_generations": 100,
}
QUICK = {
    **FULL,
    "populations": (8, 16, 32),
    "repeats": 2,
    "batch_size": 2,
    "context": 16,
    "adam_steps": 2,
    "overhead_population": 8,
    "overhead_generations": 4,
}
SHAPING_EFFICIENCY = 3 / math.pi
TARGETS = {"overhead/steady_state_pct": ("<=", 10.0)}


def fixed_point(task, steps: int, key: jax.Array):
    """The variables after ``steps`` Adam steps of backprop on fresh batches from init."""
    variables = task.init_params(key)
    optimizer = optax.adam(0.01)

    @jax.jit
    def step(carry, k):
        params, opt_state = carry
        grad = jax.grad(
            lambda p: task.differentiable_loss(k, lrne.genome.with_params(variables, p))
        )(params)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    params = variables["params"]
    carry = (params, optimizer.init(params))
    for i in range(steps):
        carry, _ = step(carry, jax.random.fold_in(key, i))
    return {**variables, "params": carry[0]}


def prediction(variables, gradient, num_pairs: int, rank: int) -> float:
    leaves = jax.tree.leaves(variables["params"])
    grads = [np.asarray(g, np.float64) for g in jax.tree.leaves(gradient)]
    total = sum(float((g**2).sum()) for g in grads)
    shares = [float((g**2).sum()) / total for g in grads]
    d_eff = effective_dim([leaf.shape for leaf in leaves], rank, shares)
    return predicted_cosine(SHAPING_EFFICIENCY * num_pairs, d_eff)


def overhead(task, variables, args) -> dict:
    strategy = lrne.es(args.overhead_population, args.sigma, optax.adam(0.01), noise_rank=1)
    key, generations = jax.random.key(3), args.overhead_generations
    lrne.run(strategy, task, key, 1, params=variables)  # compiles the step (cached)

    def timed_run(callbacks) -> float:
        tick = time.perf_counter()
        lrne.run(strategy, task, key, generations, params=variables, callbacks=callbacks)
        return time.perf_counter() - tick

    without = timed_run([])
    callback = GradientDiagnostics(strategy, task)
    with_callback = timed_run([callback])
    measurements = len(callback.rows)
    # Warm cost of one diagnostic (compiled during the run), against one generation.
    state = strategy.init(jax.random.key(0), variables)
    tick = time.perf_counter()
    for i in range(3):
        callback.on_generation(i * callback.every, {}, state)  # returns host floats
    diagnostic_s = (time.perf_counter() - tick) / 3
    generation_s = without / generations
    return {
        "every": DEFAULT_EVERY,
        "generations": generations,
        "population": args.overhead_population,
        "run_without_s": without,
        "run_with_s": with_callback,
        "measurements": measurements,
        "run_overhead_pct": 100 * (with_callback - without) / without,
        "diagnostic_s": diagnostic_s,
        "generation_s": generation_s,
        "steady_state_pct": 100 * diagnostic_s / (DEFAULT_EVERY * generation_s),
    }


def run(args) -> dict:
    text = corpus(args.quick)
    model = Transformer(vocab_size=len(lrne.tasks.LanguageModel.vocabulary(text)), **MODEL)
    task = lrne.tasks.LanguageModel(model, text, context=args.context, batch_size=args.batch_size)
    variables = fixed_point(task, args.adam_steps, jax.random.key(0))
    key = jax.random.key(1)
    gradient = jax.grad(
        lambda p: task.differentiable_loss(key, lrne.genome.with_params(variables, p))
    )(variables["params"])
    num_params = lrne.count_params(variables)
    cosine: dict = {}
    for noise, rank in NOISES.items():
        cosine[noise] = {}
        for population in args.populations:
            strategy = lrne.es(population, args.sigma, optax.sgd(0.01), noise_rank=rank)
            state = strategy.init(jax.random.key(0), variables)
            diagnose = jax.jit(functools.partial(gradient_diagnostics, strategy, task))
            rows = [
                jax.device_get(diagnose(state, jax.random.fold_in(key, r)))
                for r in range(args.repeats)
            ]
            layers = sorted(k for k in rows[0] if k.startswith("grad/cos/"))
            cosine[noise][str(population)] = {
                "cos": mean_ci95([float(r["grad/cos"]) for r in rows]),
                "norm_ratio": mean_ci95([float(r["grad/norm_ratio"]) for r in rows]),
                "pair_snr": mean_ci95([float(r["grad/pair_snr"]) for r in rows]),
                "cos_per_layer": {
                    k.removeprefix("grad/cos/"): float(np.mean([r[k] for r in rows]))
                    for k in layers
                },
                "predicted": prediction(variables, gradient, population // 2, rank),
            }
            print(noise, population, cosine[noise][str(population)]["cos"])
    result = {
        "cosine": cosine,
        "overhead": overhead(task, variables, args),
        "setup": {
            "model": "Transformer: width 16, 2 heads, ff 64, 2 blocks, rotary (lm_train.py)",
            "num_params": num_params,
            "leaves": {
                path_str(p): list(x.shape)
                for p, x in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
            },
            "point": f"{args.adam_steps} Adam steps (lr 0.01) of backprop from init",
            "loss_at_point": float(task.differentiable_loss(key, variables)),
            "shaping": "centered ranks (lrne.es default); prediction uses N_eff = 3N/π",
            "text": "tiny Shakespeare" if not args.quick else "quick: generated text",
        },
    }
    if not args.quick:
        plot(result, args.sigma, RESULTS / "diagnostics.png")
    return result


def plot(result: dict, sigma: float, path) -> None:
    lines = []
    for i, (noise, cells) in enumerate(result["cosine"].items()):
        sizes = [int(p) for p in cells]
        lines.append(
            {
                "x": sizes,
                "y": [c["cos"]["mean"] for c in cells.values()],
                "band": [c["cos"]["ci95"] for c in cells.values()],
                "style": f"C{i}o-",
                "label": f"{noise} measured",
            }
        )
        lines.append(
            {
                "x": sizes,
                "y": [c["predicted"] for c in cells.values()],
                "style": f"C{i}--",
                "label": f"{noise} predicted",
            }
        )
    panel = {
        "lines": lines,
        "xscale": "log",
        "xlabel": "population (members = 2 × pairs)",
        "ylabel": "cos(ĝ, −∇L)",
        "title": f"{result['setup']['num_params']:,}-param LM, σ = {sigma}",
    }
    band_plot(path, [panel], size=(6.5, 4.5))


def table(result: dict) -> str:
    """Markdown: measured cosine ± 95% CI against the prediction, per population × noise."""
    setup = result["setup"]
    noises = list(result["cosine"])
    header = "| population | " + " | ".join(f"{n}: measured | {n}: predicted" for n in noises)
    lines = [header + " |", "| ---: |" + " ---: | ---: |" * len(noises)]
    for population in result["cosine"][noises[0]]:
        cells = [result["cosine"][n][population] for n in noises]
        row = " | ".join(f"{pm(c['cos'])} | {c['predicted']:.3f}" for c in cells)
        lines.append(f"| {int(population):,} | {row} |")
    snr = ", ".join(
        f"{n} {np.mean([c['pair_snr']['mean'] for c in result['cosine'][n].values()]):.1f}"
        for n in noises
    )
    o = result["overhead"]
    return "\n".join(
        [
            f"**Estimator cosine** (`benchmarks/diagnostics.py`): {setup['num_params']:,} "
            f"params, {setup['point']}, σ = {setup['sigma']}, {setup['batch_size']} × "
            f"{setup['context']} characters per batch, {setup['repeats']} draws per cell "
            "(mean ± 95% CI).",
            "",
            *lines,
            "",
            f"Antithetic pair SNR std(F⁺−F⁻)/std(F⁺+F⁻), mean over sizes: {snr}.",
            "",
            f"**Overhead** at the default K = {o['every']}: one diagnostic "
            f"{o['diagnostic_s']:.3f} s against one generation {o['generation_s']:.3f} s "
            f"(population {o['population']}), so **{o['steady_state_pct']:.1f}%** of training "
            f"time once compiled (target {goal(TARGETS, 'overhead/steady_state_pct')}); a "
            f"{o['generations']}-generation run took {o['run_with_s']:.1f} s with the "
            f"callback against {o['run_without_s']:.1f} s without "
            f"({o['run_overhead_pct']:+.1f}%, its compile included).",
            "",
            f"Machine: {result['machine']}.",
        ]
    )


if __name__ == "__main__":
    script(__file__)
