"""Metropolis neuroevolution vs gradient descent (Whitelam, Selin, Park, Tamblyn 2021).

(i) One-step statistics from a fixed θ₀ with 10⁶ independent chains, on a
    quadratic and on the regression MLP below: the mean step against
    −(βσ²/2)·∇U (finite β) and −(σ/√(2π))·∇U/|∇U| (β = ∞), and the mean
    per-coordinate second moment against σ² and σ²/2, at decreasing σ.
(ii) Trajectories on the paper's setup: regress sin(2πx) on 1,000 points in
    [0, 1] with one hidden layer of 30 tanh units. ``--chains`` chains start at
    one θ₀; their average is compared with gradient descent at the matched time
    scale: β = ∞ with σ = √(2π)·λ·α against normalized GD (step α), finite β
    with σ = √(2λα/β) against GD (learning rate α). One neuroevolution step is
    λ units of GD time, so smaller λ means smaller σ. Δ(t) = |mean θ_NE − θ_GD|
    at matched times should fall as σ falls.
Writes benchmarks/results/correspondence.json and correspondence.png.

    python benchmarks/correspondence.py [--quick]
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from common import band_plot
from harness import RESULTS, script

import lrne

FULL = {
    "one_step_samples": 1_000_000,
    "chunk": 100_000,
    "sigmas": [0.02, 0.01, 0.005],
    "regression_points": 1000,
    "chains": 1000,
    "gd_steps": 200,
    "lambdas": [0.5, 0.2, 0.1],
}
QUICK = {
    "one_step_samples": 20_000,
    "chunk": 10_000,
    "sigmas": [0.02],
    "regression_points": 50,
    "chains": 32,
    "gd_steps": 10,
    "lambdas": [0.5, 0.25],
}
TARGETS = {"delta_decreases_with_sigma/*": ("==", True)}


def regression(num_points: int):
    model = lrne.nn.MLP((30,), 1, activation=jnp.tanh)
    x = jnp.linspace(0.0, 1.0, num_points)[:, None]
    y = jnp.sin(2 * jnp.pi * x)
    params = model.init(jax.random.key(0), x[0])

    def loss(p):
        return jnp.mean((jax.vmap(lambda xi: model.apply(p, xi))(x) - y) ** 2)

    return params, loss


def quadratic():
    curvature = jnp.array([1.0, 0.5, 2.0])
    return {"w": jnp.array([1.0, -2.0, 0.5])}, lambda p: 0.5 * jnp.sum(curvature * p["w"] ** 2)


def flatten(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def one_step(params, loss, sigma: float, beta: float, samples: int, chunk: int) -> dict:
    """Mean step and second moment of ``samples`` one-step chains, in chunks."""
    grad = np.asarray(flatten(jax.grad(loss)(params)), np.float64)
    strategy = lrne.metropolis(chunk, sigma, beta)
    fitness = jax.vmap(lambda p: -loss(p))

    @jax.jit
    def run(key):
        state = strategy.init(key, params)
        for k in jax.random.split(key, 2):
            key_ask, key_tell = jax.random.split(k)
            population, state = strategy.ask(key_ask, state)
            state, _ = strategy.tell(key_tell, state, population, fitness(population.members))
        step = jax.vmap(flatten)(state.params) - flatten(params)
        return step.sum(0), (step**2).sum(0)

    total, squares = 0.0, 0.0
    for i in range(samples // chunk):
        s, q = run(jax.random.key(i))
        total, squares = total + np.asarray(s, np.float64), squares + np.asarray(q, np.float64)
    mean, second = total / samples, squares / samples
    if math.isinf(beta):
        predicted = -(sigma / math.sqrt(2 * math.pi)) * grad / np.linalg.norm(grad)
        second_predicted = sigma**2 / 2
    else:
        predicted = -(beta * sigma**2 / 2) * grad
        second_predicted = sigma**2
    return {
        "sigma": sigma,
        "beta": beta if math.isfinite(beta) else "inf",
        "a": float(beta * sigma * np.linalg.norm(grad)) if math.isfinite(beta) else None,
        "mean_relative_error": float(np.linalg.norm(mean - predicted) / np.linalg.norm(predicted)),
        # Expected norm of the sampling error of the mean vector, relative.
        "noise_floor_relative": float(
            sigma * math.sqrt(grad.size / samples) / np.linalg.norm(predicted)
        ),
        "second_moment_over_predicted": float(np.mean(second) / second_predicted),
    }


def trajectories(params, loss, chains: int, gd_steps: int, alpha: float, beta: float, lam: float):
    """Chains' mean vs GD at matched times: Δ(t) and both loss curves."""
    theta0 = flatten(params)
    unravel = jax.flatten_util.ravel_pytree(params)[1]
    flat_loss = lambda v: loss(unravel(v))
    grad = jax.grad(flat_loss)

    def gd_step(v, _):
        g = grad(v)
        step = g / jnp.linalg.norm(g) if math.isinf(beta) else g
        v = v - alpha * step
        return v, (v, flat_loss(v))

    _, (gd_path, gd_loss) = jax.jit(lambda v: jax.lax.scan(gd_step, v, None, length=gd_steps))(
        theta0
    )
    if math.isinf(beta):
        sigma = math.sqrt(2 * math.pi) * lam * alpha
    else:
        sigma = math.sqrt(2 * lam * alpha / beta)
    per_gd = round(1 / lam)
    strategy = lrne.metropolis(chains, sigma, beta)
    fitness = jax.vmap(lambda v: -flat_loss(v))

    def ne_step(state, key):
        key_ask, key_tell = jax.random.split(key)
        population, state = strategy.ask(key_ask, state)
        state, _ = strategy.tell(key_tell, state, population, fitness(population.members))
        return state, None

    def gd_unit(state, key):  # λ·per_gd = 1 unit of GD time
        state, _ = jax.lax.scan(ne_step, state, jax.random.split(key, per_gd))
        mean = state.params.mean(0)
        return state, (mean, jnp.mean(-state.fitness), flat_loss(mean))

    @jax.jit
    def run(key):
        state = strategy.init(key, theta0)
        state, _ = ne_step(state, key)  # score θ₀
        return jax.lax.scan(gd_unit, state, jax.random.split(key, gd_steps))[1]

    ne_mean, ne_loss, loss_of_mean = run(jax.random.key(1))
    delta = jnp.linalg.norm(ne_mean - gd_path, axis=1)
    return {
        "lambda": lam,
        "sigma": sigma,
        "ne_steps": per_gd * gd_steps,
        "delta": np.asarray(delta).round(6).tolist(),
        "delta_max": float(delta.max()),
        "delta_mean": float(delta.mean()),
        "delta_final": float(delta[-1]),
        "gd_loss": np.asarray(gd_loss).round(6).tolist(),
        "chains_mean_loss": np.asarray(ne_loss).round(6).tolist(),
        "loss_of_mean_params": np.asarray(loss_of_mean).round(6).tolist(),
    }


def plot(result: dict, path) -> None:
    panels = []
    for mode, runs in result["trajectories"].items():
        x = range(1, len(runs[0]["gd_loss"]) + 1)
        lines = [
            {"x": x, "y": runs[0]["gd_loss"], "style": "k-", "lw": 2, "label": "gradient descent"}
        ]
        lines += [
            {
                "x": x,
                "y": r["chains_mean_loss"],
                "style": "--",
                "label": f"chains' mean loss, σ = {r['sigma']:.2g}",
            }
            for r in runs
        ]
        panels.append(
            {"lines": lines, "xlabel": "GD time (steps of α)", "ylabel": "loss", "yscale": "log"}
            | {"title": mode}
        )
    band_plot(path, panels, size=(11, 4))


def run(args) -> dict:
    samples, chunk, points = args.one_step_samples, args.chunk, args.regression_points
    statistics: dict = {"quadratic": [], "mlp": []}
    small_mlp = regression(min(points, 100))  # the one-step statistics' "small MLP"
    for name, (params, loss) in (("quadratic", quadratic()), ("mlp", small_mlp)):
        grad_norm = float(jnp.linalg.norm(flatten(jax.grad(loss)(params))))
        beta = 0.2 / (0.02 * grad_norm)  # a = βσ|∇U| = 0.2 at σ = 0.02
        for sigma in args.sigmas:  # each is a compile
            for b in (beta, math.inf):
                statistics[name].append(one_step(params, loss, sigma, b, samples, chunk))
                print(name, statistics[name][-1])

    params, loss = regression(points)
    trajectory = lambda alpha, beta, lam: trajectories(
        params, loss, args.chains, args.gd_steps, alpha, beta, lam
    )
    result_traj = {
        "beta=inf vs normalized GD (alpha=0.01)": [
            trajectory(0.01, math.inf, lam) for lam in args.lambdas
        ],
        "beta=1000 vs GD (alpha=0.05)": [trajectory(0.05, 1000.0, lam) for lam in args.lambdas],
    }
    for mode, runs in result_traj.items():
        print(mode, [(r["sigma"], r["delta_max"], r["delta_final"]) for r in runs])
    decreasing = {
        f"{mode}, {stat}": all(a[stat] > b[stat] for a, b in itertools.pairwise(runs))
        for mode, runs in result_traj.items()
        for stat in ("delta_mean", "delta_max")
    }
    result = {
        "one_step": statistics,
        "trajectories": result_traj,
        "delta_decreases_with_sigma": decreasing,
        "setup": {
            "one_step_mlp_points": min(points, 100),
            "note": "a = beta·sigma·|grad U| (finite-beta expansion parameter); "
            "second_moment_over_predicted averages E[dθ_i²] over coordinates",
        },
    }
    if not args.quick:
        plot(result, RESULTS / "correspondence.png")
    return result


def table(cor: dict) -> str:
    """Markdown: one-step statistics against their predictions, and trajectories against GD."""
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
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
