"""Chunked evaluation scores every member exactly as the unchunked task does."""

import jax
import numpy as np
import optax
import pytest

import lrne
from lrne.tasks import Chunked, Unrollable


def _classification():
    inputs = jax.random.normal(jax.random.key(0), (24, 8))
    labels = jax.random.randint(jax.random.key(1), (24,), 0, 3)
    model = lrne.nn.MLP((16,), 3)
    return lrne.tasks.Classification(model, inputs, labels, objective="log_likelihood")


@pytest.mark.parametrize("kind", ["es_lowrank", "ga_gymnax"])
def test_chunked_generation_equals_the_unchunked_one(kind):
    if kind == "es_lowrank":
        task = _classification()
        strategy = lrne.es(16, 0.1, optax.adam(0.05), noise_rank=1)
    else:  # episodes of different lengths: env_steps is summed over chunks
        task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((8,), 2, rank=2), max_steps=40)
        strategy = lrne.ga(16, num_elites=4, sigma=0.3)
    start = strategy.init(jax.random.key(2), task.init_params(jax.random.key(3)))
    out = []
    for t in (task, Chunked(task, 4)):
        step = jax.jit(lrne.generation_step(strategy, t))
        state, metrics = step(start, jax.random.key(4))
        state, metrics = step(state, jax.random.key(5))
        out.append((state, metrics))
    (plain, plain_metrics), (chunked, chunked_metrics) = out
    assert set(plain_metrics) == set(chunked_metrics)
    # Slot-steps executed: each chunk stops when its own episodes have ended.
    computed = "env_steps_computed"
    if computed in plain_metrics:
        assert chunked_metrics.pop(computed) <= plain_metrics.pop(computed)
        assert int(plain_metrics["env_steps"]) > 0
    for name, value in plain_metrics.items():
        np.testing.assert_allclose(chunked_metrics[name], value, rtol=1e-6, err_msg=name)
    assert float(plain_metrics["fitness_max"]) > float(plain_metrics["fitness_mean"])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        chunked.best_params,
        plain.best_params,
    )


def test_chunk_size_is_checked_and_the_task_shows_through():
    task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((8,), 2), max_steps=20)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        Chunked(task, 0)
    chunked = Chunked(task, 3)
    assert chunked.horizon == 20 and isinstance(chunked, Unrollable)
    assert not isinstance(Chunked(_classification(), 2), Unrollable)
    population = lrne.Population(
        {}, jax.vmap(task.init_params)(jax.random.split(jax.random.key(0), 4))
    )
    with pytest.raises(
        ValueError, match=r"population \(4 members\) must be a multiple of chunk_size \(3\)"
    ):
        chunked.evaluate(jax.random.key(1), population)


def test_noise_drawn_per_chunk_gives_the_stored_noise_run_bit_for_bit():
    """lrne.es(store_noise=False): members carry keys and signs; the draws are the same."""
    task = _classification()
    params = task.init_params(jax.random.key(3))
    keys = jax.random.split(jax.random.key(4), 3)
    runs = {}
    for store in (True, False):
        strategy = lrne.es(16, 0.1, optax.adam(0.05), noise_rank=1, store_noise=store)
        population, _ = strategy.ask(keys[0], strategy.init(jax.random.key(2), params))
        members = population.members["perturb"]
        assert isinstance(members, lrne.genome.Drawn) == (not store)
        step = jax.jit(lrne.generation_step(strategy, task if store else Chunked(task, 4)))
        state = strategy.init(jax.random.key(2), params)
        for k in keys:
            state, metrics = step(state, k)
        scanned = None
        if not store:  # and under lax.scan
            scanned, _ = jax.lax.scan(step, strategy.init(jax.random.key(2), params), keys)
        runs[store] = (state, metrics, scanned)
        assert step._cache_size() == 1
    (stored, stored_metrics, _), (drawn, drawn_metrics, drawn_scan) = runs[True], runs[False]
    for name in ("fitness_mean", "fitness_max", "best_fitness"):
        np.testing.assert_array_equal(drawn_metrics[name], stored_metrics[name], err_msg=name)
    for tree in (drawn, drawn_scan):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
            (tree.mean, tree.best_params),
            (stored.mean, stored.best_params),
        )
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), stored.mean, params)
    assert max(jax.tree.leaves(moved)) > 0


def test_store_noise_false_needs_full_density():
    with pytest.raises(ValueError, match="store_noise=False needs density=1"):
        lrne.es(8, 0.1, optax.sgd(0.1), density=0.5, store_noise=False)
