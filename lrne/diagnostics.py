"""Live gradient-estimator diagnostics: how close is an ES's gradient estimate to backprop's?

Salimans et al. 2017 (arXiv 1703.03864) estimate the gradient of the smoothed
fitness from a population; EGGROLL (arXiv 2511.16652) draws that population's
noise low rank. Neither says, while a run trains, how good the estimate is. For
a task whose fitness is minus a differentiable loss L
(:meth:`lrne.tasks.Task.differentiable_loss`), :func:`gradient_diagnostics`
takes the strategy's current mean θ, draws a population with the strategy's own
``ask``, scores it on one batch, forms ĝ exactly as its ``tell`` would
(:func:`lrne.strategies.es.estimate_of`: one code path) and compares it with
∇L by ``jax.grad`` on the same batch. The population is scored as in training
(low-rank perturbations stay factors; no member's dense weights are formed).

Metrics (fitness is maximized, so the ES ascends along −∇L):

- ``grad/cos``, ``grad/cos/LAYER``: cos(ĝ, −∇L) over all params and per
  top-level param path (``Dense_0``; ``all`` for a bare-array genome);
- ``grad/norm_ratio``, ``grad/norm_ratio/LAYER``: ‖ĝ‖ / ‖∇L‖;
- ``grad/pair_snr``: the antithetic pairs' std(F⁺ − F⁻) / std(F⁺ + F⁻). The
  difference is the odd (first-order, gradient-bearing) part of the fitness
  response that the antithetic estimate keeps; the sum is the even part
  (curvature; evaluation noise when members see different randomness) that it
  cancels. ≫ 1: σ is small enough for fitness to be linear in δ; about 1 or
  less: σ probes curvature. (The mean of F⁺ − F⁻ over pairs is 0 up to sampling
  error for any smooth fitness, δ and −δ being equally likely, so mean/std of
  the differences carries no signal.) ``inf`` for a linear fitness, NaN
  without antithetic pairs;
- ``grad/erank/LEAF``, ``grad/erank_backprop/LEAF``: the effective rank of ĝ
  (and of ∇L) for every leaf of two or more axes, read as the matrix low-rank
  noise uses (:func:`lrne.perturb.matrix_shape`): exp of the Shannon entropy
  of the singular values normalized to sum 1 (Roy & Vetterli 2007), between 1
  (rank one) and min(m, n) (a flat spectrum).

Expected cosine (a linear fitness gᵀθ, N antithetic pairs, identity shaping):
cos² ~ Beta(N/2, (d−1)/2) for dense noise, so cos ≈ √(N / (N + d − 1)); the
mean squared norm ratio is 1 + d_eff/N, with d_eff = d + 1 for dense noise and
d_eff = mn + 1 + 2(m + n + 1)/r for rank-r noise on an m×n weight
(``tests/test_diagnostics.py``; ``docs/diagnostics.md`` for a language model).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from lrne import perturb
from lrne.errors import ArgumentError
from lrne.genome import Metrics, PyTree, params_of, path_str, with_params
from lrne.nn.perturbed import prepare
from lrne.runner import Callback, Row
from lrne.strategies.base import Strategy, check_int
from lrne.strategies.es import estimate_of

PREFIX = "grad/"
DEFAULT_EVERY = 20
"""Generations between diagnostics by default: one costs about a generation, so ≈ 1/20 of
the training time (measured on the language model: ``docs/diagnostics.md``)."""


def effective_rank(matrix: jax.Array) -> jax.Array:
    """exp(entropy of the singular values normalized to sum 1): 1 for rank one, k for k
    equal singular values (Roy & Vetterli 2007). 0 for a zero matrix."""
    s = jnp.linalg.svd(matrix, compute_uv=False)
    total = jnp.sum(s)
    p = s / jnp.where(total > 0, total, 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.where(total > 0, jnp.exp(entropy), 0.0)


def _layer(path: tuple) -> str:
    """The top-level param path of a leaf (``Dense_0``), ``all`` for a bare array."""
    return path_str(path[:1]) or "all"


def compare(ascent: PyTree, gradient: PyTree) -> Metrics:
    """cos(ĝ, −∇L) and ‖ĝ‖/‖∇L‖ overall and per top-level path, and effective ranks.

    Args:
        ascent: ĝ, an ascent estimate of fitness = −L.
        gradient: ∇L, a pytree of the same structure.
    """
    pairs = zip(
        jax.tree_util.tree_flatten_with_path(ascent)[0], jax.tree.leaves(gradient), strict=True
    )
    groups: dict[str, jax.Array] = {}  # name -> [⟨ĝ, −∇L⟩, ‖ĝ‖², ‖∇L‖²]
    out: Metrics = {}
    for (path, g_hat), grad in pairs:
        g_hat, grad = g_hat.astype(jnp.float32), grad.astype(jnp.float32)
        sums = jnp.stack([-jnp.vdot(g_hat, grad), jnp.vdot(g_hat, g_hat), jnp.vdot(grad, grad)])
        for name in ("", "/" + _layer(path)):
            groups[name] = groups.get(name, 0.0) + sums
        if g_hat.ndim >= 2:
            shape = perturb.matrix_shape(g_hat.shape)
            out[f"{PREFIX}erank/{path_str(path)}"] = effective_rank(g_hat.reshape(shape))
            out[f"{PREFIX}erank_backprop/{path_str(path)}"] = effective_rank(grad.reshape(shape))
    for name, (dot, est, true) in groups.items():
        out[f"{PREFIX}cos{name}"] = dot / jnp.sqrt(est * true)
        out[f"{PREFIX}norm_ratio{name}"] = jnp.sqrt(est / true)
    return dict(sorted(out.items()))


def pair_snr(fitness: jax.Array, antithetic: bool) -> jax.Array:
    """std(F⁺ − F⁻) / std(F⁺ + F⁻) over antithetic pairs (members j and P/2 + j);
    NaN without pairs."""
    if not antithetic:
        return jnp.asarray(jnp.nan, jnp.float32)
    half = fitness.shape[0] // 2
    plus, minus = fitness[:half], fitness[half:]
    return jnp.std(plus - minus) / jnp.std(plus + minus)


def gradient_diagnostics(strategy: Strategy, task: Any, state: Any, key: jax.Array) -> Metrics:
    """The diagnostics (module docstring) of ``strategy``'s estimate at ``state.mean``.

    Pure and jit-able (``strategy`` and ``task`` static). ``key`` is split into
    the key of ``ask`` and the generation key the task scores with; the
    backprop gradient uses that same key, so the same batch. Members are scored
    with ``task.evaluate_members`` on the population in evaluation form (the
    template of ``task.evaluate`` without its population metrics).

    Raises:
        lrne.errors.ArgumentError: ``strategy`` is not an ES (:func:`lrne.es`).
        NotImplementedError: ``task`` has no differentiable loss.
    """
    estimate = estimate_of(strategy)
    key_ask, key_eval = jax.random.split(key)
    population, _ = strategy.ask(key_ask, state)
    keys = task.member_keys(key_eval, population.size)
    fitness, _ = task.evaluate_members(keys, prepare(population, task.thin_kernels))
    ascent = estimate.ascent(state, population, fitness)
    mean = state.mean
    loss = lambda params: task.differentiable_loss(key_eval, with_params(mean, params))
    gradient = jax.grad(loss)(params_of(mean))
    finite = jnp.mean(jnp.isfinite(fitness).astype(jnp.float32))
    return {
        **compare(ascent, gradient),
        f"{PREFIX}pair_snr": pair_snr(fitness, estimate.antithetic),
        f"{PREFIX}finite_fraction": finite,
    }


@functools.lru_cache(maxsize=8)
def _compiled(strategy: Strategy, task: Any):
    return jax.jit(functools.partial(gradient_diagnostics, strategy, task))


class GradientDiagnostics(Callback):
    """Adds :func:`gradient_diagnostics` to the metrics row every ``every`` generations.

    On generations ``0, every, 2·every, …`` it measures the estimate at the
    mean the generation left (``state.mean``) under ``fold_in(key, generation)``
    and writes the metrics into the row it is given, as Python floats. The row
    is the one :func:`lrne.run` keeps in its history and hands to every
    callback in order, so **list this callback before**
    :class:`lrne.callbacks.MetricsLog` (and a progress bar) for its metrics to
    reach ``metrics.jsonl``. ``rows`` keeps ``{"generation": g, **metrics}`` of
    each measurement.

    Cost: about one generation's evaluation and one backprop pass per
    measurement, plus one compile; the default ``every`` keeps it ≈ 5% of
    training time (``docs/diagnostics.md``).

    Args:
        strategy: an ES (:func:`lrne.es`, dense or low-rank noise).
        task: a task with :meth:`~lrne.tasks.Task.differentiable_loss`.
        every: generations between measurements, >= 1.
        key: the diagnostics' own key (default ``jax.random.key(0)``): the
            training run's randomness is untouched.

    Raises:
        lrne.errors.ArgumentError: ``every`` < 1, or ``strategy`` is not an ES.
        NotImplementedError: ``task`` has no differentiable loss (checked on
            construction, by tracing its loss, nothing computed).
    """

    def __init__(
        self,
        strategy: Strategy,
        task: Any,
        every: int = DEFAULT_EVERY,
        key: jax.Array | None = None,
    ) -> None:
        check_int("every", every, 1)
        estimate_of(strategy)
        probe = jax.random.key(0)
        jax.eval_shape(lambda k: task.differentiable_loss(k, task.init_params(k)), probe)
        self.strategy, self.task, self.every = strategy, task, every
        self.key = jax.random.key(0) if key is None else key
        if not jnp.issubdtype(self.key.dtype, jax.dtypes.prng_key):
            raise ArgumentError("key", f"key must be a typed jax.random.key, got {key!r}")
        self.rows: list[Row] = []

    def on_generation(self, generation: int, row: Row, state: Any) -> None:
        if generation % self.every:
            return
        metrics = _compiled(self.strategy, self.task)(
            state, jax.random.fold_in(self.key, generation)
        )
        values = {name: float(value) for name, value in jax.device_get(metrics).items()}
        row.update(values)
        self.rows.append({"generation": generation, **values})


def predicted_cosine(num_pairs: int, effective_dim: float) -> float:
    """√(N / (N + d_eff)): the cosine of N antithetic pairs' estimate of a linear
    fitness's gradient, identity shaping, to first order (:func:`effective_dim`)."""
    return math.sqrt(num_pairs / (num_pairs + effective_dim))


def effective_dim(shapes: list[tuple[int, ...]], noise_rank: int, weights: list[float]) -> float:
    """d_eff with E‖X‖² = (1 + d_eff)·‖∇‖² for one pair's estimate X of a linear fitness.

    Dense noise: d + 1. Rank-r noise adds 2(m + n + 1)/r on each m×n leaf, weighted
    by its share ``weights`` of ‖∇‖² (summing to 1 over ``shapes``); leaves of
    fewer than two axes get dense noise. Independent of the gradient's structure
    within a leaf (Isserlis' theorem over the factors U, V).
    """
    d = sum(math.prod(shape) for shape in shapes)
    extra = 0.0
    if noise_rank > 0:
        for shape, share in zip(shapes, weights, strict=True):
            if len(shape) >= 2:
                m, n = perturb.matrix_shape(shape)
                extra += share * 2 * (m + n + 1) / noise_rank
    return d + 1 + extra
