"""Gradient-estimator diagnostics (lrne.diagnostics) against closed forms, and the callback.

The closed forms, for a linear fitness F(θ) = ⟨g, θ⟩, antithetic ES with N pairs
and identity fitness shaping (so ĝ = (1/N) Σ_j ⟨g, E_j⟩ E_j with E_j = δ_j / σ):

- dense Gaussian noise in d dimensions: rotate g to e₁; the component of ĝ along
  g is a = Σ_j ε_j1² ~ χ²_N/N, the rest, given a, is Gaussian with ‖·‖² ~
  a·χ²_{d−1}/N, so cos² = a / (a + c) ~ Beta(N/2, (d−1)/2) exactly and
  E[cos] = Γ((N+1)/2) Γ((N+d−1)/2) / (Γ(N/2) Γ((N+d)/2)) → √(N / (N + d − 1))
  for large N and d;
- the squared norm ratio: ĝ is a mean of N iid one-pair estimates X with
  E[X] = g, so E‖ĝ‖²/‖g‖² = 1 + d_eff/N exactly, d_eff = E‖X‖²/‖g‖² − 1:
  d + 1 for dense noise; for rank-r noise E_j = UᵀV/√r on an m×n matrix,
  Isserlis' theorem over U and V gives E‖X‖² = (mn + 2 + 2(m + n + 1)/r)‖g‖²,
  whatever g's structure, so d_eff = mn + 1 + 2(m + n + 1)/r;
- low-rank cosine: no exact law; to first order in 1/N it is √(N / (N + d_eff))
  (:func:`lrne.diagnostics.predicted_cosine`), which Jensen's inequality makes a
  slight underestimate (measured within 4% at N = 16, d = 120).

Statistical tolerance: means over DRAWS independent draws (each its own ask
key), |mean − expected| < 4 standard errors of the mean (a false alarm with
probability ≈ 6·10⁻⁵ for a Gaussian mean; the keys are fixed, so the test is
deterministic).
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import gammaln

import lrne
from lrne.callbacks import MetricsLog
from lrne.diagnostics import (
    GradientDiagnostics,
    effective_dim,
    effective_rank,
    gradient_diagnostics,
    predicted_cosine,
)
from lrne.errors import ArgumentError

SHAPE = (12, 10)
PAIRS = 16
DRAWS = 400
G = jax.random.normal(jax.random.key(5), SHAPE)
LINEAR = lrne.tasks.Function(lambda x: jnp.sum(G * x["w"]), {"w": jnp.zeros(SHAPE)})


def draws(noise_rank: int) -> dict[str, np.ndarray]:
    """DRAWS diagnostics of an antithetic ES of PAIRS pairs on LINEAR, identity shaping."""
    strategy = lrne.es(
        2 * PAIRS, 0.1, optax.sgd(0.1), noise_rank=noise_rank, fitness_shaping=lambda f: f
    )
    state = strategy.init(jax.random.key(0), LINEAR.init_params(jax.random.key(0)))
    one = lambda k: gradient_diagnostics(strategy, LINEAR, state, k)
    metrics = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), DRAWS))
    return {name: np.asarray(value, np.float64) for name, value in metrics.items()}


@pytest.fixture(scope="module", params=[0, 1, 4], ids=["dense", "rank1", "rank4"])
def measured(request):
    return request.param, draws(request.param)


def close(samples: np.ndarray, expected: float, sigmas: float = 4.0) -> bool:
    error = samples.std(ddof=1) / math.sqrt(samples.size)
    return abs(samples.mean() - expected) < sigmas * error


def test_dense_cosine_follows_its_beta_law(measured):
    rank, m = measured
    if rank:
        pytest.skip("the exact law is for dense noise")
    n, d = PAIRS, math.prod(SHAPE)
    exact = math.exp(
        gammaln((n + 1) / 2) + gammaln((n + d - 1) / 2) - gammaln(n / 2) - gammaln((n + d) / 2)
    )
    assert close(m["grad/cos"], exact)
    assert abs(exact - math.sqrt(n / (n + d - 1))) < 0.01  # the large-d form
    # A bare {"w": ...} genome: one layer, so per layer equals overall.
    assert np.array_equal(m["grad/cos/w"], m["grad/cos"])


def test_norm_ratio_matches_the_exact_second_moment(measured):
    rank, m = measured
    d_eff = effective_dim([SHAPE], rank, [1.0])
    expected = math.prod(SHAPE) + 1 + (2 * (sum(SHAPE) + 1) / rank if rank else 0)
    assert d_eff == pytest.approx(expected)
    assert close(m["grad/norm_ratio"] ** 2, 1 + d_eff / PAIRS)


def test_lowrank_cosine_is_near_its_first_order_prediction(measured):
    rank, m = measured
    predicted = predicted_cosine(PAIRS, effective_dim([SHAPE], rank, [1.0]))
    # First order in 1/N, an underestimate by Jensen: within 5% above, 4 s.e. below.
    assert m["grad/cos"].mean() > predicted - 4 * m["grad/cos"].std() / math.sqrt(DRAWS)
    assert m["grad/cos"].mean() < 1.05 * predicted


def test_linear_fitness_has_no_even_part_and_rank_bounds_hold(measured):
    rank, m = measured
    assert np.all(np.isinf(m["grad/pair_snr"]))  # F⁺ + F⁻ = 2F(θ) exactly
    assert np.all(m["grad/finite_fraction"] == 1.0)
    erank = m["grad/erank/w"]
    assert np.all((erank >= 1.0 - 1e-4) & (erank <= min(SHAPE) + 1e-4))
    if rank == 1:  # ĝ = Σ_j c_j u_j v_jᵀ over 16 rank-one terms: at most rank 10, still flat-ish
        assert np.all(erank > 2.0)
    assert np.allclose(m["grad/erank_backprop/w"], float(effective_rank(G)), rtol=1e-4)


def test_effective_rank_of_known_spectra():
    assert float(effective_rank(jnp.eye(5))) == pytest.approx(5.0, rel=1e-5)
    assert float(effective_rank(jnp.outer(jnp.arange(1.0, 4.0), jnp.ones(6)))) == pytest.approx(
        1.0, abs=1e-3
    )
    assert float(effective_rank(jnp.zeros((3, 4)))) == 0.0


def test_callback_adds_metrics_every_k_generations(tmp_path):
    task = lrne.tasks.Function(lambda x: -jnp.sum((x["w"] - 1.0) ** 2), {"w": jnp.zeros((4, 3))})
    strategy = lrne.es(8, 0.1, optax.adam(0.05), noise_rank=1)
    diagnostics = GradientDiagnostics(strategy, task, every=3, key=jax.random.key(7))
    log = MetricsLog(tmp_path / "metrics.jsonl")
    result = lrne.run(strategy, task, jax.random.key(0), 7, callbacks=[diagnostics, log])
    measured = [row["generation"] for row in result.history if "grad/cos" in row]
    assert measured == [0, 3, 6] == [row["generation"] for row in diagnostics.rows]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["generation"] for row in lines if "grad/cos" in row] == [0, 3, 6]
    keys = {k for k in lines[0] if k.startswith("grad/")}
    assert {"grad/cos", "grad/cos/w", "grad/norm_ratio", "grad/pair_snr", "grad/erank/w"} <= keys
    assert all(isinstance(lines[0][k], float) for k in keys)
    # Far from the optimum with 4 pairs in 12 dimensions: a positive, informative cosine.
    assert 0.0 < lines[0]["grad/cos"] <= 1.0


def test_a_task_without_a_differentiable_loss_says_so():
    task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((8,), 2), max_steps=20)
    strategy = lrne.es(8, 0.1, optax.adam(0.05))
    with pytest.raises(NotImplementedError, match="Gymnax has no differentiable loss"):
        GradientDiagnostics(strategy, task)
    with pytest.raises(NotImplementedError, match="differentiable_loss"):
        task.differentiable_loss(jax.random.key(0), task.init_params(jax.random.key(0)))


def test_a_strategy_without_an_estimate_and_bad_every_are_refused():
    with pytest.raises(ArgumentError, match="need an ES") as error:
        GradientDiagnostics(lrne.ga(8, 2, 0.1), LINEAR)
    assert error.value.argument == "strategy"
    with pytest.raises(ArgumentError) as error:
        GradientDiagnostics(lrne.es(8, 0.1, optax.sgd(0.1)), LINEAR, every=0)
    assert error.value.argument == "every"


def test_tasks_losses_are_minus_their_fitness_on_the_same_batch():
    text = "".join(chr(97 + (i * 7) % 26) for i in range(4000))
    model = lrne.nn.Transformer(vocab_size=26, hidden=8, num_heads=2, ff=16, num_blocks=1)
    lm = lrne.tasks.LanguageModel(model, text, context=8, batch_size=4, eval_tokens=64)
    lorenz = lrne.tasks.Lorenz(horizon=50)
    for task in (lm, lorenz, LINEAR):
        params = task.init_params(jax.random.key(0))
        key = jax.random.key(3)
        one = lrne.genome.Population({}, jax.tree.map(lambda x: x[None], params))
        fitness, _ = task.evaluate_members(task.member_keys(key, 1), one)
        loss = task.differentiable_loss(key, params)
        assert float(loss) == pytest.approx(-float(fitness[0]), rel=1e-5, abs=1e-6)


def test_progress_bar_keeps_showing_the_last_cosine():
    from lrne.callbacks import ProgressBar

    bar = ProgressBar(3)
    row = {"best_fitness": 1.0, "fitness_mean": 0.5, "seconds": 1.0}
    bar.on_generation(0, {**row, "generation": 0}, None)
    assert "cos" not in bar.progress.tasks[0].fields["info"]
    bar.on_generation(1, {**row, "generation": 1, "grad/cos": 0.25}, None)
    bar.on_generation(2, {**row, "generation": 2}, None)
    assert "cos(ĝ, −∇L) 0.250 (gen 1)" in bar.progress.tasks[0].fields["info"]
