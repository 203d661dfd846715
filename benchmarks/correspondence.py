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

import argparse
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from common import RESULTS, machine, write

import lrne


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (mode, runs) in zip(axes, result["trajectories"].items(), strict=True):
        gd = runs[0]["gd_loss"]
        ax.plot(range(1, len(gd) + 1), gd, "k-", lw=2, label="gradient descent")
        for run in runs:
            ax.plot(
                range(1, len(gd) + 1),
                run["chains_mean_loss"],
                "--",
                label=f"chains' mean loss, σ = {run['sigma']:.2g}",
            )
        ax.set_xlabel("GD time (steps of α)")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.set_title(mode)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    parser.add_argument("--chains", type=int, default=1000)
    args = parser.parse_args()
    samples, chunk = (20_000, 10_000) if args.quick else (1_000_000, 100_000)
    points, chains, gd_steps = (50, 32, 10) if args.quick else (1000, args.chains, 200)

    statistics: dict = {"quadratic": [], "mlp": []}
    small_mlp = regression(min(points, 100))  # the one-step statistics' "small MLP"
    for name, (params, loss) in (("quadratic", quadratic()), ("mlp", small_mlp)):
        grad_norm = float(jnp.linalg.norm(flatten(jax.grad(loss)(params))))
        beta = 0.2 / (0.02 * grad_norm)  # a = βσ|∇U| = 0.2 at σ = 0.02
        for sigma in (0.02,) if args.quick else (0.02, 0.01, 0.005):  # each is a compile
            for b in (beta, math.inf):
                statistics[name].append(one_step(params, loss, sigma, b, samples, chunk))
                print(name, statistics[name][-1])

    params, loss = regression(points)
    lambdas = (0.5, 0.25) if args.quick else (0.5, 0.2, 0.1)
    result_traj = {
        "beta=inf vs normalized GD (alpha=0.01)": [
            trajectories(params, loss, chains, gd_steps, 0.01, math.inf, lam) for lam in lambdas
        ],
        "beta=1000 vs GD (alpha=0.05)": [
            trajectories(params, loss, chains, gd_steps, 0.05, 1000.0, lam) for lam in lambdas
        ],
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
        "machine": machine(),
        "setup": {
            "one_step_samples": samples,
            "regression_points": points,
            "one_step_mlp_points": min(points, 100),
            "chains": chains,
            "gd_steps": gd_steps,
            "quick": args.quick,
            "note": "a = beta·sigma·|grad U| (finite-beta expansion parameter); "
            "second_moment_over_predicted averages E[dθ_i²] over coordinates",
        },
    }
    write("correspondence_quick" if args.quick else "correspondence", result)
    if not args.quick:
        plot(result, RESULTS / "correspondence.png")


if __name__ == "__main__":
    main()
