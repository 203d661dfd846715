"""Subspace mutations (static and dynamic masks), ensembles and the classification task."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrne
from lrne.nn import MLP
from lrne.strategies.subspace import subspace_mask


def test_mask_density_matches_within_five_standard_errors(key):
    # Each entry is in the subspace independently with probability d, so a leaf
    # of n entries holds Binomial(n, d) of them: mean n·d, std sqrt(n·d·(1 − d)).
    # Bound: 5 standard deviations (two-sided p < 6e-7 per check).
    params = {"a": jnp.zeros((300, 200)), "b": jnp.zeros(500)}
    for density in (0.01, 0.1, 0.5):
        mask = subspace_mask(key, params, density)
        for leaf, name in ((mask["a"], "a"), (mask["b"], "b")):
            assert leaf.dtype == jnp.bool_ and leaf.shape == params[name].shape
            n = leaf.size
            count = int(leaf.sum())
            assert abs(count - n * density) < 5 * math.sqrt(n * density * (1 - density)), (
                name,
                density,
                count,
            )
    # A mask is a function of its key: the same key gives the same mask, another key
    # an independent one: two masks at d = 0.1 agree on d² + (1 − d)² = 82% of
    # entries (60,000 entries: standard error 0.16%; bound 1%).
    again = subspace_mask(key, params, 0.1)
    np.testing.assert_array_equal(again["a"], subspace_mask(key, params, 0.1)["a"])
    other = subspace_mask(jax.random.key(1), params, 0.1)
    agreement = float(jnp.mean(other["a"] == again["a"]))
    assert abs(agreement - 0.82) < 0.01, agreement
    # Leaves draw from their own keys: a's first 500 entries are not b's.
    assert not np.array_equal(np.ravel(again["a"])[:500], again["b"])


def children_changes(population, num_elites):
    """Bool per child and entry: did the child differ from elite 0 there? (one elite)."""
    leaves = jax.tree.leaves(population.members)
    flat = jnp.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=1)
    return np.asarray(flat[num_elites:] != flat[0])


@pytest.mark.parametrize("rank", [0, 3])
def test_dynamic_subspace_mutates_the_requested_fraction(rank):
    model = MLP((32,), 4, rank=rank)
    variables = model.init(jax.random.key(0), jnp.zeros(16))
    strategy = lrne.ga(65, num_elites=1, sigma=0.1, density=0.1)
    state = strategy.init(jax.random.key(1), variables)
    ask = jax.jit(strategy.ask)
    population, _ = ask(jax.random.key(2), state)
    changed = children_changes(population, 1)
    n = changed.size
    assert abs(changed.mean() - 0.1) < 5 * math.sqrt(0.09 / n)
    # Two generations draw different subspaces.
    other, _ = ask(jax.random.key(3), state)
    assert np.mean(children_changes(other, 1) == changed) < 0.95


def test_static_subspace_is_inherited_along_a_lineage():
    variables = {"params": {"w": jnp.zeros((20, 10)), "b": jnp.zeros(10)}}
    strategy = lrne.ga(9, num_elites=1, sigma=0.5, density=0.2, mask="static")
    state = strategy.init(jax.random.key(0), variables)
    fitness = lambda pop: (
        jnp.sum(pop.members["params"]["w"], axis=(1, 2)) + jnp.sum(pop.members["params"]["b"], 1)
    )
    seen_lineages = set()
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    for k in jax.random.split(jax.random.key(1), 6):
        population, state = ask(k, state)
        lineage = np.asarray(state.population_lineage)
        elite_lineage = int(state.lineage[0])
        if elite_lineage >= 0:  # children of a mutated elite keep its subspace
            assert np.all(lineage[1:] == elite_lineage)
            expected = subspace_mask(
                jax.random.fold_in(state.mask_key, elite_lineage),
                jax.tree.map(lambda x: x[0], population.members),
                0.2,
            )
            allowed = np.concatenate([np.ravel(x) for x in jax.tree.leaves(expected)])
            changed = children_changes(population, 1)
            assert not np.any(changed[:, ~allowed])
            assert changed.any()
        else:  # children of the root start new lineages
            assert len(set(lineage[1:].tolist())) == 8
        seen_lineages.add(elite_lineage)
        state, _ = tell(k, state, population, fitness(population))
    assert len(seen_lineages) >= 2


def test_dense_ga_is_unchanged_by_the_subspace_option(key):
    variables = {"params": {"w": jnp.ones((5, 4))}}
    dense = lrne.ga(8, num_elites=2, sigma=0.1)
    full = lrne.ga(8, num_elites=2, sigma=0.1, density=1.0, mask="static")
    a, _ = dense.ask(key, dense.init(key, variables))
    b, _ = full.ask(key, full.init(key, variables))
    np.testing.assert_array_equal(a.members["params"]["w"], b.members["params"]["w"])


def test_es_subspace_noise_masks_and_stays_unbiased():
    # Linear fitness c·θ, no shaping: E[ĝ] = c exactly (the estimate is divided by
    # the density). 400 generations × 64 draws; tolerance 5 standard errors.
    c = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    identity = lambda f: f
    strategy = lrne.es(128, 0.1, optax.sgd(0.0), density=0.25, fitness_shaping=identity)
    state = strategy.init(jax.random.key(0), {"params": {"w": jnp.zeros((2, 3))}})
    masks = []
    draw = lambda k: strategy.ask(k, state)[0].members["perturb"]["w"]
    deltas = np.asarray(jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(1), 400)))
    grads = []
    for delta in deltas:
        masks.append(delta != 0)
        f = np.sum(delta * np.asarray(c), axis=(1, 2))
        w = f[:64] - f[64:]
        grads.append(np.einsum("p,pij->ij", w, delta[:64]) / (128 * 0.1**2 * 0.25))
    grads = np.stack(grads)
    se = grads.std(0) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(0) - np.asarray(c)) < 5 * se + 1e-6)
    fraction = np.mean(np.stack(masks))
    assert abs(fraction - 0.25) < 0.01
    # The strategy's own update is the same estimate.
    population, _ = strategy.ask(jax.random.key(9), state)
    delta = population.members["perturb"]["w"]
    fit = jnp.sum(delta * c, axis=(1, 2))
    plain = lrne.es(128, 0.1, optax.sgd(1.0), density=0.25, fitness_shaping=identity)
    moved, _ = plain.tell(
        jax.random.key(9), plain.init(jax.random.key(0), state.mean), population, fit
    )
    w = np.asarray(fit[:64] - fit[64:])
    expected = np.einsum("p,pij->ij", w, np.asarray(delta[:64])) / (128 * 0.1**2 * 0.25)
    np.testing.assert_allclose(moved.mean["params"]["w"], expected, rtol=1e-4, atol=1e-5)


def test_es_static_masks_repeat_and_dynamic_masks_change():
    variables = {"params": {"w": jnp.zeros((6, 5))}}
    for mask, same in (("static", True), ("dynamic", False)):
        strategy = lrne.es(8, 0.1, optax.sgd(0.1), density=0.3, mask=mask)
        state = strategy.init(jax.random.key(0), variables)
        a, state = strategy.ask(jax.random.key(1), state)
        state = state._replace(generation=state.generation + 1)
        b, _ = strategy.ask(jax.random.key(2), state)
        ma = np.asarray(a.members["perturb"]["w"] != 0)
        mb = np.asarray(b.members["perturb"]["w"] != 0)
        assert np.array_equal(ma, mb) == same


def test_subspace_errors():
    with pytest.raises(ValueError, match="density"):
        lrne.ga(8, 2, 0.1, density=0.0)
    with pytest.raises(ValueError, match="mask"):
        lrne.ga(8, 2, 0.1, density=0.5, mask="sometimes")
    with pytest.raises(ValueError, match="noise_rank must be 0"):
        lrne.es(8, 0.1, optax.sgd(0.1), noise_rank=1, density=0.5)


def test_ensemble_predict_averages_top_k_softmax(key):
    model = MLP((8,), 3)
    x = jax.random.normal(key, (5, 4))
    members = jax.vmap(lambda k: model.init(k, x[0]))(jax.random.split(key, 6))
    population = lrne.Population({}, members)
    fitness = jnp.array([0.1, 0.9, jnp.nan, 0.5, 0.7, 0.2])
    got = lrne.ensemble_predict(model, population, fitness, x, k=3)
    chosen = [jax.tree.map(lambda p, i=i: p[i], members) for i in (1, 4, 3)]
    expected = np.mean([jax.nn.softmax(model.apply(m, x), -1) for m in chosen], axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="k must be"):
        lrne.ensemble_predict(model, population, fitness, x, k=7)


def test_ensemble_predict_of_es_members_includes_their_perturbations(key):
    model = MLP((8,), 3)
    x = jax.random.normal(key, (5, 4))
    strategy = lrne.es(6, 0.5, optax.sgd(0.1), noise_rank=1)
    population, _ = strategy.ask(jax.random.key(1), strategy.init(key, model.init(key, x[0])))
    fitness = jnp.array([0.3, 0.1, 0.9, 0.2, 0.5, 0.0])
    got = lrne.ensemble_predict(model, population, fitness, x, k=2)
    delta = population.members["perturb"]
    explicit = [
        {
            "params": lrne.perturb.apply(
                population.shared["params"], jax.tree.map(lambda d, i=i: d[i], delta)
            )
        }
        for i in (2, 4)
    ]
    expected = np.mean([jax.nn.softmax(model.apply(v, x), -1) for v in explicit], axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_classification_task_scores_accuracy_and_the_ensemble(key):
    model = MLP((8,), 3)
    x = jax.random.normal(key, (40, 4))
    labels = jnp.argmax(x[:, :3], axis=1)
    task = lrne.tasks.Classification(model, x, labels, ensemble_size=2)
    strategy = lrne.ga(16, num_elites=2, sigma=0.5)
    state = strategy.init(key, task.init_params(key))
    population, state = jax.jit(strategy.ask)(jax.random.key(1), state)
    fitness, metrics = jax.jit(task.evaluate)(key, population)
    logits = jax.vmap(lambda v: model.apply(v, x))(population.members)
    np.testing.assert_allclose(fitness, np.mean(np.argmax(logits, -1) == labels, axis=1))
    top = np.argsort(-np.asarray(fitness), kind="stable")[:2]
    probs = np.mean(np.asarray(jax.nn.softmax(logits[top], -1)), axis=0)
    assert float(metrics["ensemble_accuracy"]) == pytest.approx(
        float(np.mean(np.argmax(probs, -1) == labels))
    )
    assert float(metrics["best_eval_accuracy"]) == pytest.approx(float(fitness[top[0]]))


def test_log_likelihood_objective_matches_optax(key):
    model = MLP((8,), 3)
    x = jax.random.normal(key, (20, 4))
    labels = jnp.argmax(x[:, :3], axis=1)
    task = lrne.tasks.Classification(model, x, labels, objective="log_likelihood")
    members = jax.vmap(lambda k: model.init(k, x[0]))(jax.random.split(key, 4))
    fitness, _ = jax.jit(task.evaluate)(key, lrne.Population({}, members))
    for i in range(4):
        member = jax.tree.map(lambda p, i=i: p[i], members)
        ce = optax.softmax_cross_entropy_with_integer_labels(model.apply(member, x), labels)
        assert float(fitness[i]) == pytest.approx(-float(ce.mean()), rel=1e-5)
