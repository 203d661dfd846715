"""The strategy contract, checked for every entry of ``lrne.strategies.REGISTRY``.

For every registered strategy, on a stock-flax policy (``nn.Dense`` → tanh →
``nn.Dense``, nothing from lrne) and on lrne's factorized ``MLP(rank=2)``:

- the generation step jits and compiles once over many generations
  (``chex.assert_max_traces``); a Python loop over it equals ``lax.scan`` over
  the same keys, bit for bit (stock-flax run);
- NaN, +inf and −inf injected into every generation's fitness (3 random
  members) never reach the state: a state entry that was finite stays finite;
- ``best_fitness`` is the running max of the finite fitness the steps
  evaluated, recomputed here from the fitness itself and from the
  ``fitness_max`` history;
- the metric keys: the shared ones and each strategy's own;
- the model consumes the members' perturbations: the task gives every member
  the same randomness, so members' fitness can differ only through their
  params (an ES perturbation the model ignored would score every member
  alike); the run moves the answer and the fitness.

The task is Pendulum-v1 cut to 32 steps: its reward is continuous in the
actions, so any change of a policy shows in its fitness, and it is Unrollable,
so the online strategies run on it too.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import lrne
from lrne.strategies import REGISTRY

POPULATION = 8
GENERATIONS = 6
SEEN = "contract/fitness"  # the evaluated fitness, passed through the metrics
POISON = (jnp.nan, jnp.inf, -jnp.inf)

# Metrics every step reports, and each strategy's own (a new registry entry
# must say which it reports).
SHARED_METRICS = {"fitness_mean", "fitness_max", "best_fitness"}
# env_steps comes from Task.evaluate; the online hook unrolls and reports none.
OFFLINE_ES = {"env_steps", "num_nonfinite", "update_norm"}
OFFLINE_GA = {"env_steps", "num_nonfinite", "elite_fitness_mean"}
ONLINE_ES = {"num_nonfinite", "num_masked_in", "episodes_started", "update_norm"}
STRATEGY_METRICS = {
    "ga": OFFLINE_GA,
    "ga_subspace": OFFLINE_GA,
    "es": OFFLINE_ES,
    "es_lowrank": OFFLINE_ES,
    "es_subspace": OFFLINE_ES,
    "metropolis": {"env_steps", "acceptance_rate"},
    "nres": ONLINE_ES,
    "pes": ONLINE_ES,
    "tes": ONLINE_ES,
    "full_es": ONLINE_ES,
}


class StockPolicy(nn.Module):
    """A user's policy, built from flax.linen alone."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(1)(jnp.tanh(nn.Dense(8)(x)))


MODELS = {"flax": StockPolicy(), "lrne": lrne.nn.MLP((8,), 1, rank=2)}


def _common(keys: jax.Array) -> jax.Array:
    return keys[jnp.zeros(keys.shape[0], jnp.int32)]


class CommonNoise(lrne.tasks.Gymnax):
    """Gymnax with every member's randomness drawn from the first member's key.

    Pendulum's dynamics are deterministic after the reset, so members with
    equal params score equal fitness, bit for bit: fitness that differs across
    members proves the members' params (or perturbations) reached the model.
    """

    def evaluate_members(self, keys, population):
        return super().evaluate_members(_common(keys), population)

    def reset(self, keys):
        return super().reset(_common(keys))

    def unroll(self, keys, population, inner, t, num_steps):
        return super().unroll(_common(keys), population, inner, t, num_steps)


def poisoned(strategy: lrne.Strategy) -> lrne.Strategy:
    """``strategy`` whose evaluation hook sets 3 random members' fitness to NaN, +inf
    and −inf, and reports the fitness it passes to ``tell`` as the metric ``SEEN``."""

    def evaluate(key, state, population, task):
        fitness, metrics, state = strategy.evaluate(key, state, population, task)
        slots = jax.random.choice(
            jax.random.fold_in(key, 99), fitness.shape[0], (len(POISON),), replace=False
        )
        fitness = fitness.at[slots].set(jnp.asarray(POISON, fitness.dtype))
        return fitness, {**metrics, SEEN: fitness}, state

    return strategy._replace(evaluate=evaluate)


def build(name: str, task: lrne.tasks.Gymnax) -> lrne.Strategy:
    """The registry's strategy ``name``; online ones get the task's horizon."""
    online = STRATEGY_METRICS.get(name) is ONLINE_ES
    return REGISTRY[name](POPULATION, **({"horizon": task.horizon} if online else {}))


def arrays(tree) -> list[np.ndarray]:
    """Every leaf as a NumPy array (PRNG keys as their key data)."""
    out = []
    for x in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out


def run_loop(strategy, task, start, keys):
    """A Python loop over the jitted step; it must be traced (compiled) once."""
    chex.clear_trace_counter()
    step = jax.jit(chex.assert_max_traces(lrne.generation_step(strategy, task), n=1))
    states, history = [start], []
    for k in keys:
        state, metrics = step(states[-1], k)
        states.append(state)
        history.append(metrics)
    return states, jax.tree.map(lambda *x: np.stack(x), *history)


def check_nonfinite_never_reaches_the_state(states, history):
    for g in range(1, len(states)):
        before, after = arrays(states[g - 1]), arrays(states[g])
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            if np.issubdtype(a.dtype, np.floating):
                leaked = np.isfinite(b) & ~np.isfinite(a)
                assert not leaked.any(), f"generation {g}: state leaf {i} became non-finite"
    assert np.all(np.isfinite(history["fitness_mean"])), "non-finite fitness reached the mean"
    assert np.all(np.isfinite(history["best_fitness"])), "a non-finite fitness became the best"
    if "num_nonfinite" in history:
        np.testing.assert_array_equal(history["num_nonfinite"], len(POISON))


def check_best_fitness_is_the_max_seen(states, history):
    seen = history[SEEN]
    poisoned = np.sum(~np.isfinite(seen), axis=1)
    np.testing.assert_array_equal(poisoned, len(POISON), "non-finite fitness per generation")
    per_generation = np.max(np.where(np.isfinite(seen), seen, -np.inf), axis=1)
    np.testing.assert_array_equal(history["fitness_max"], per_generation, "fitness_max")
    np.testing.assert_array_equal(
        history["best_fitness"], np.maximum.accumulate(history["fitness_max"]), "best_fitness"
    )
    np.testing.assert_array_equal(
        [float(s.best_fitness) for s in states[1:]], history["best_fitness"], "state.best_fitness"
    )


def check_the_model_consumes_the_members(name, start, states, history):
    seen = history[SEEN]
    for g in range(1, GENERATIONS):
        finite = seen[g][np.isfinite(seen[g])]
        assert len(np.unique(finite)) > 1, (
            f"{name}: generation {g}: finite member fitness {finite} under common "
            "randomness: the members' params or perturbations did not reach the model"
        )
    assert len(np.unique(history["fitness_mean"])) > 1, f"{name}: fitness never changed"
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(arrays(start.best_params), arrays(states[-1].best_params), strict=True)
    ]
    assert any(moved), f"{name}: best_params is still the initial params"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_contract(strategy_name, model):
    task = CommonNoise("Pendulum-v1", MODELS[model], max_steps=32, early_exit=False)
    strategy = poisoned(build(strategy_name, task))
    params = task.init_params(jax.random.key(1))
    nodes = jax.tree.leaves(params, is_leaf=lrne.genome.is_node)
    assert any(isinstance(x, lrne.Factors) for x in nodes) == (model == "lrne")
    start = strategy.init(jax.random.key(0), params, task)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(2), jnp.arange(GENERATIONS))

    states, history = run_loop(strategy, task, start, keys)

    assert set(history) >= SHARED_METRICS, sorted(history)
    assert strategy_name in STRATEGY_METRICS, f"add {strategy_name!r}'s metrics to the table"
    assert set(history) >= STRATEGY_METRICS[strategy_name], sorted(history)
    check_nonfinite_never_reaches_the_state(states, history)
    check_best_fitness_is_the_max_seen(states, history)
    check_the_model_consumes_the_members(strategy_name, start, states, history)

    if model == "flax":
        # The scan compiles the step again: once per strategy keeps this file fast.
        scan = jax.jit(lambda s, k: jax.lax.scan(lrne.generation_step(strategy, task), s, k))
        final, scanned = scan(start, keys)
        for i, (a, b) in enumerate(zip(arrays(final), arrays(states[-1]), strict=True)):
            np.testing.assert_array_equal(a, b, f"state leaf {i}: scan != loop")
        assert set(scanned) == set(history)
        for k in history:
            np.testing.assert_array_equal(scanned[k], history[k], f"{k}: scan != loop")
