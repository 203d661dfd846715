"""Variance of online ES gradient estimators at one fixed θ on the Lorenz task.

Li et al. 2023 (arXiv 2304.12180) show NRES has the least variance among the
unbiased online ES estimators; in particular Var(NRES) <= Var(PES). At θ =
(3.116, 3.7) each method draws ``--draws`` independent estimates: every draw is
a fresh run (its own seed: offsets, noise) unrolled through the burn-in and one
more window, and the estimate of that window is kept. Settings per method as in
``nres_lorenz.py`` (NRES/PES/TES: N = 200, W = 100; FullES: N = 10, W = T; all
σ = 0.04), so every estimate costs 40,000 inner steps. ``variance`` is the trace
of the estimate's covariance (summed over log a and log r). Writes
benchmarks/results/estimator_variance.json.

    python benchmarks/estimator_variance.py [--quick]
"""

from __future__ import annotations

import jax
import numpy as np
from harness import goal, script

import lrne
from lrne.strategies.online import record_estimate

FULL = {"horizon": 2000, "particles": 200, "window": 100, "sigma": 0.04, "draws": 1000}
QUICK = {**FULL, "horizon": 200, "particles": 20, "window": 20, "draws": 64}
TARGETS = {"nres_over_pes": ("<=", 1.0)}


def draws(strategy, task, num_draws: int, windows: int) -> np.ndarray:
    """(num_draws, 2) estimates: the last of ``windows`` windows of independent runs.

    The strategy's optimizer is :func:`~lrne.strategies.online.record_estimate`:
    θ stays fixed and ``opt_state.ascent`` holds the last window's ĝ.
    """
    step = lrne.generation_step(strategy, task)

    def one(key):
        state = strategy.init(key, task.init_params(), task)

        def body(state, k):
            state, metrics = step(state, k)
            return state, metrics["num_masked_in"]

        keys = jax.random.split(jax.random.fold_in(key, 1), windows)
        state, count = jax.lax.scan(body, state, keys)
        last = state.opt_state.ascent
        return jax.numpy.stack([last["log_a"], last["log_r"]]), count[-1]

    keys = jax.random.split(jax.random.key(0), num_draws)
    estimates, counts = jax.jit(jax.vmap(one))(keys)
    if not np.all(np.asarray(counts) > 0):
        raise RuntimeError("an estimate fell in the burn-in")
    return np.asarray(estimates, np.float64)


def run(args) -> dict:
    task = lrne.tasks.Lorenz(horizon=args.horizon)
    horizon, n, window, sigma = task.horizon, args.particles, args.window, args.sigma
    recorder = record_estimate()  # θ stays fixed; the optimizer state keeps ĝ
    methods = {
        "nres": (lrne.nres(n, sigma, recorder, window, horizon), horizon // window),
        "pes": (lrne.pes(n, sigma, recorder, window, horizon), horizon // window),
        "tes": (lrne.tes(n, sigma, recorder, window, horizon), horizon // window),
        "full_es": (lrne.full_es(max(1, n // 20), sigma, recorder, horizon), 1),
    }
    result: dict = {"variance": {}, "variance_per_coordinate": {}, "mean": {}}
    for name, (strategy, windows) in methods.items():
        estimates = draws(strategy, task, args.draws, windows)
        per_coordinate = estimates.var(axis=0, ddof=1)
        result["variance"][name] = float(per_coordinate.sum())
        result["variance_per_coordinate"][name] = per_coordinate.tolist()
        result["mean"][name] = estimates.mean(axis=0).tolist()
        print(name, result["variance"][name])
    result["nres_over_pes"] = result["variance"]["nres"] / result["variance"]["pes"]
    result["setup"] = {
        "theta": [task.init_log_a, task.init_log_r],
        "truncation_length": window,
        "note": "estimates are ascent directions for fitness = -loss; coordinates "
        "(log a, log r); variance = trace of the covariance",
    }
    return result


def table(result: dict) -> str:
    """Markdown: each estimator's variance at θ₀ and Var(NRES) / Var(PES)."""
    lines = ["| method | estimator variance at θ₀ |", "| --- | ---: |"]
    lines += [f"| {name} | {v:,.0f} |" for name, v in result["variance"].items()]
    return "\n".join([*lines, "", ratio(result) + f" Machine: {result['machine']}."])


def ratio(result: dict) -> str:
    return (
        f"Var(NRES) / Var(PES) = **{result['nres_over_pes']:.3f}** (expected "
        f"{goal(TARGETS, 'nres_over_pes')}), {result['setup']['draws']} independent estimates "
        "each."
    )


if __name__ == "__main__":
    script(__file__)
