"""Online ES on the Lorenz parameter-fitting task: NRES vs PES vs TES vs FullES vs TBPTT.

Li et al. 2023, *Noise-Reuse in Online Evolution Strategies* (arXiv 2304.12180),
Lorenz experiment: learn (log a, log r) from the trajectory of a = 10, r = 28;
dt = 0.005, T = 2000, start (3.116, 3.7), per-step loss (z − z*)². Settings are
the paper's: NRES and PES N = 200 particles, W = 100, σ = 0.04, SGD 1e-5;
FullES N = 10, W = T, SGD 3e-5; truncated BPTT (``jax.grad`` over each window
of 100 steps, state carried without gradient, the same 200 step-unlocked
particles), SGD 3e-4. TES (not in the issue's list) uses NRES's settings.

Every method runs the same number of generations (updates). Per update, the ES
methods unroll 2·N·W = 40,000 inner steps; TBPTT unrolls N·W = 20,000 forward
steps and their backward pass. The loss reported is the exact objective L(θ)
(one deterministic unroll of all T steps from the start), every ``--every``
generations; wall-clock excludes those evaluations and compilation. Writes
benchmarks/results/nres_lorenz.json and nres_lorenz.png.

    python benchmarks/nres_lorenz.py [--quick]
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import NamedTuple

import estimator_variance
import jax
import jax.numpy as jnp
import optax
from common import band_plot, mean_ci95, timed
from harness import RESULTS, pm, read, script

import lrne

FULL = {
    "horizon": 2000,
    "particles": 200,
    "window": 100,
    "seeds": 5,
    "generations": 3000,
    "every": 25,
    "threshold": 80.0,
}
QUICK = {
    **FULL,
    "horizon": 200,
    "particles": 20,
    "window": 20,
    "seeds": 2,
    "generations": 40,
    "every": 10,
}


class TBPTTState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    inner: jax.Array
    t: jax.Array
    steps: jax.Array


def tbptt(task: lrne.tasks.Lorenz, num_particles: int, window: int, optimizer):
    """Truncated backprop through time with step-unlocked particles (the baseline).

    Same bookkeeping as the online ES: particle i starts at a random multiple
    of W, the first T − W steps are burn-in, a particle resets at T.
    """
    horizon = task.horizon

    def init(key, variables):
        offsets = window * jax.random.randint(key, (num_particles,), 0, horizon // window)
        params = variables["params"]
        return TBPTTState(
            params=params,
            opt_state=optimizer.init(params),
            inner=task.reset(jnp.zeros(num_particles)),
            t=offsets.astype(jnp.int32),
            steps=jnp.array(0, jnp.int32),
        )

    def window_loss(params, inner, t):
        def body(state, i):
            state, loss = jax.vmap(task.step_loss, (None, 0, 0))(params, state, t + i)
            return state, loss

        inner, losses = jax.lax.scan(body, inner, jnp.arange(window))
        return jnp.mean(losses), inner

    def step(state, key):
        del key
        restart = state.t >= horizon
        t = jnp.where(restart, 0, state.t)
        inner = jnp.where(restart[:, None], task.reset(t), state.inner)
        (_, inner), grad = jax.value_and_grad(window_loss, has_aux=True)(state.params, inner, t)
        updates, opt_state = optimizer.update(grad, state.opt_state, state.params)
        use = (state.steps >= horizon - window) & jnp.all(
            jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)])
        )
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(use, a, b), new, old)
        return TBPTTState(
            params=keep(optax.apply_updates(state.params, updates), state.params),
            opt_state=keep(opt_state, state.opt_state),
            inner=jax.lax.stop_gradient(inner),
            t=t + window,
            steps=state.steps + window,
        )

    return init, step


def methods(task, n: int, window: int):
    """name -> (init(key) -> state, step(state, key) -> state, mean(state), steps per update)."""
    horizon = task.horizon
    full_n = max(1, n // 20)
    out = {}
    for name, strategy, particles, w in [
        ("nres", lrne.nres(n, 0.04, optax.sgd(1e-5), window, horizon), n, window),
        ("pes", lrne.pes(n, 0.04, optax.sgd(1e-5), window, horizon), n, window),
        ("tes", lrne.tes(n, 0.04, optax.sgd(1e-5), window, horizon), n, window),
        ("full_es", lrne.full_es(full_n, 0.04, optax.sgd(3e-5), horizon), full_n, horizon),
        # Not in the paper: NRES at FullES's learning rate, for an equal-step comparison.
        ("nres_lr3e-5", lrne.nres(n, 0.04, optax.sgd(3e-5), window, horizon), n, window),
    ]:
        step = lrne.generation_step(strategy, task)
        out[name] = (
            lambda key, s=strategy: s.init(key, task.init_params(), task),
            lambda state, key, step=step: step(state, key)[0],
            lambda state: state.best_params,
            2 * particles * w,
        )
    init, step = tbptt(task, n, window, optax.sgd(3e-4))
    out["tbptt"] = (
        lambda key: init(key, task.init_params()),
        step,
        lambda state: {"params": state.params},
        n * window,
    )
    return out


def runner(task, init, step, mean, every: int):
    """A compiled ``run(key, generations) -> (losses, seconds)`` for one method.

    Losses at every ``every`` generations and the cumulative seconds there; the
    chunk of ``every`` generations compiles once and serves every seed.
    """

    @jax.jit
    def chunk(state, key):
        return jax.lax.scan(lambda s, k: (step(s, k), None), state, jax.random.split(key, every))[0]

    loss = jax.jit(lambda state: task.loss(mean(state)))

    def run(key, generations: int):
        state = init(key)
        jax.block_until_ready(chunk(state, key))  # compile (first seed only)
        losses, seconds, elapsed = [float(loss(state))], [0.0], 0.0
        for k in jax.random.split(key, generations // every):
            state, took = timed(chunk, state, k)
            elapsed += took
            losses.append(float(loss(state)))
            seconds.append(elapsed)
        return losses, seconds

    return run


def first_below(losses: list[float], xs: list[float], threshold: float) -> float | None:
    for loss, x in zip(losses, xs, strict=True):
        if loss <= threshold:
            return x
    return None


def mean_reached(values: list[float | None]) -> float | None:
    """Mean over the seeds that reached the threshold; None if none did."""
    reached = [v for v in values if v is not None]
    return statistics.fmean(reached) if reached else None


def plot(curves: dict, path: Path) -> None:
    panels = [
        {
            "lines": [
                {"x": c[x], "y": c["loss_mean"], "band": c["loss_ci95"], "label": name}
                for name, c in curves.items()
            ],
            "xlabel": label,
            "ylabel": "L(θ) (mean over seeds, 95% CI)",
            "yscale": "log",
        }
        for x, label in (
            ("unroll_steps", "inner unroll steps"),
            ("seconds_mean", "wall-clock seconds"),
        )
    ]
    band_plot(path, panels, title="Lorenz parameter fitting (T = 2000)", size=(11, 4))


def run(args) -> dict:
    task = lrne.tasks.Lorenz(horizon=args.horizon)
    curves, final, to_threshold, time_to_threshold = {}, {}, {}, {}
    for name, (init, step, mean, per_update) in methods(task, args.particles, args.window).items():
        losses, seconds = [], []
        run_seed = runner(task, init, step, mean, args.every)
        for seed in range(args.seeds):
            loss, secs = run_seed(jax.random.key(seed), args.generations)
            losses.append(loss)
            seconds.append(secs)
            print(f"{name} seed {seed}: final loss {loss[-1]:.2f} in {secs[-1]:.1f} s")
        steps = [i * args.every * per_update for i in range(len(losses[0]))]
        points = [mean_ci95([run_[i] for run_ in losses]) for i in range(len(steps))]
        curves[name] = {
            "unroll_steps": steps,
            "seconds_mean": [
                round(statistics.fmean(s[i] for s in seconds), 5) for i in range(len(steps))
            ],
            "loss_mean": [round(p["mean"], 3) for p in points],
            "loss_ci95": [round(p["ci95"], 3) for p in points],
        }
        final[name] = mean_ci95([run_[-1] for run_ in losses])
        reached = [first_below(run_, steps, args.threshold) for run_ in losses]
        reached_s = [
            first_below(r, s, args.threshold) for r, s in zip(losses, seconds, strict=True)
        ]
        to_threshold[name] = {
            "mean": mean_reached(reached),
            "seeds_reached": sum(r is not None for r in reached),
        }
        time_to_threshold[name] = mean_reached(reached_s)
    if not args.quick:
        plot(curves, RESULTS / "nres_lorenz.png")
    return {
        "final_loss": final,
        "steps_to_threshold": to_threshold,
        "seconds_to_threshold": time_to_threshold,
        "threshold": args.threshold,
        "initial_loss": float(task.loss(task.init_params())),
        "curves": curves,
        "setup": {
            "eval_every": args.every,
            "note": "steps = inner unroll steps summed over all particle copies; "
            "steps_to_threshold averages the seeds that reached the threshold",
        },
    }


def load(suffix: str = "") -> dict | None:
    """This benchmark's result and estimator_variance's (if run): the table shows both."""
    lorenz = read("nres_lorenz" + suffix)
    return lorenz and {"lorenz": lorenz, "variance": read("estimator_variance" + suffix)}


NAMES = {
    "nres": "NRES (SGD 1e-5)",
    "pes": "PES (SGD 1e-5)",
    "tes": "TES (SGD 1e-5)",
    "full_es": "FullES (N = 10, SGD 3e-5)",
    "nres_lr3e-5": "NRES at FullES's SGD 3e-5 (not in the paper)",
    "tbptt": "truncated BPTT (SGD 3e-4)",
}


def table(result: dict) -> str:
    """Markdown: final loss and the way to the threshold of each method, and the
    estimator variances (``load``: with estimator_variance's result)."""
    lorenz, variance = result["lorenz"], result["variance"] or {"variance": {}}
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
        reach = lorenz["steps_to_threshold"][name]
        steps = "never" if reach["mean"] is None else f"{reach['mean'] / 1e6:.1f} M"
        if reach["seeds_reached"] < setup["seeds"]:
            steps += f" ({reach['seeds_reached']}/{setup['seeds']} seeds)"
        secs = lorenz["seconds_to_threshold"][name]
        var = variance["variance"].get(name)
        lines.append(
            f"| {label} | {pm(lorenz['final_loss'][name], 1)} | {steps} | "
            f"{'' if secs is None else f'{secs:.3f}'} | "
            f"{'' if var is None else f'{var:,.0f}'} |"
        )
    ratio = estimator_variance.ratio(variance) + " " if "nres_over_pes" in variance else ""
    lines += ["", f"{ratio}Machine: {lorenz['machine']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
