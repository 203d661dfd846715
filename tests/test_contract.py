"""The strategy contract, checked for every entry of ``lrne.strategies.REGISTRY``.

For every registered strategy, on one policy that mixes both kinds of genome
leaf: lrne's factorized ``Dense(rank=2)`` (a ``Factors`` node) → tanh → a stock
``flax.linen.Dense`` (a plain kernel). (Each layer's forward against explicit
dense weights: tests/test_nn.py and tests/test_any_flax_model.py. Under
``-m slow`` the same contract also runs on a policy of stock flax.linen layers
alone.)

- the generation step jits and compiles once over many generations
  (``chex.assert_max_traces``); a Python loop over it equals ``lax.scan`` over
  the same keys, bit for bit;
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


class MixedPolicy(nn.Module):
    """A factorized lrne layer, then a stock flax.linen head."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(1)(jnp.tanh(lrne.nn.Dense(8, rank=2)(x)))


class StockPolicy(nn.Module):
    """A user's policy, built from flax.linen alone (no Factors node)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(1)(jnp.tanh(nn.Dense(8)(x)))


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
    """``strategy`` whose evaluation hook sets the fitness of 3 members (consecutive, from
    a random slot) to NaN, +inf and −inf, and reports the fitness it passes to ``tell``
    as the metric ``SEEN``."""

    def evaluate(key, state, population, task):
        fitness, metrics, state = strategy.evaluate(key, state, population, task)
        # Three distinct members from a random offset (a shuffle compiles to much more).
        offset = jax.random.randint(jax.random.fold_in(key, 99), (), 0, fitness.shape[0])
        slots = (offset + jnp.arange(len(POISON))) % fitness.shape[0]
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


@pytest.mark.parametrize(
    "policy",
    [MixedPolicy, pytest.param(StockPolicy, marks=pytest.mark.slow)],
    ids=lambda policy: policy.__name__,
)
def test_contract(strategy_name, policy):
    task = CommonNoise("Pendulum-v1", policy(), max_steps=32, early_exit=False)
    strategy = poisoned(build(strategy_name, task))
    params = task.init_params(jax.random.key(1))
    nodes = jax.tree.leaves(params, is_leaf=lrne.genome.is_node)
    factorized = any(isinstance(x, lrne.Factors) for x in nodes)
    assert factorized == (policy is MixedPolicy)
    assert any(isinstance(x, jax.Array) and x.ndim == 2 for x in nodes)  # a stock kernel
    start = strategy.init(jax.random.key(0), params, task)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(2), jnp.arange(GENERATIONS))

    states, history = run_loop(strategy, task, start, keys)

    assert set(history) >= SHARED_METRICS, sorted(history)
    assert strategy_name in STRATEGY_METRICS, f"add {strategy_name!r}'s metrics to the table"
    assert set(history) >= STRATEGY_METRICS[strategy_name], sorted(history)
    check_nonfinite_never_reaches_the_state(states, history)
    check_best_fitness_is_the_max_seen(states, history)
    check_the_model_consumes_the_members(strategy_name, start, states, history)

    scan = jax.jit(lambda s, k: jax.lax.scan(lrne.generation_step(strategy, task), s, k))
    final, scanned = scan(start, keys)
    for i, (a, b) in enumerate(zip(arrays(final), arrays(states[-1]), strict=True)):
        np.testing.assert_array_equal(a, b, f"state leaf {i}: scan != loop")
    assert set(scanned) == set(history)
    for k in history:
        np.testing.assert_array_equal(scanned[k], history[k], f"{k}: scan != loop")


# --- Any pytree: a raw array under every strategy ----------------------------------------


def sphere(x: jax.Array) -> jax.Array:
    return -jnp.sum((x - 1.0) ** 2)


def test_contract_on_a_raw_array(strategy_name):
    """A raw, constant array is a genome for every strategy: it mutates, the answer moves
    toward the optimum, and ``x`` and ``{"params": x}`` give the same answer, bit for bit."""
    start_value = jnp.full((4, 3), 0.5)  # constant: the GA's relative scale must not be 0
    answers = []
    for wrap, unwrap in (
        (lambda x: x, lambda x: x),
        (lambda x: {"params": x}, lambda v: v["params"]),
    ):
        task = lrne.tasks.Function(
            lambda g, unwrap=unwrap: sphere(unwrap(g)), wrap(start_value), horizon=4
        )
        strategy = build(strategy_name, task)
        start = strategy.init(jax.random.key(0), task.init_params(jax.random.key(0)), task)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(2), jnp.arange(12))
        states, _ = run_loop(strategy, task, start, keys)
        members = lrne.nn.member_params(strategy.ask(jax.random.key(3), states[-1])[0])
        assert unwrap(members).shape == (POPULATION, 4, 3)
        assert len(np.unique(np.asarray(unwrap(members)).reshape(POPULATION, -1), axis=0)) > 1
        answers.append(np.asarray(unwrap(states[-1].best_params)))
    np.testing.assert_array_equal(answers[0], answers[1])
    assert float(sphere(answers[0])) > float(sphere(start_value)), strategy_name


# --- Stock attention, convolutions and embeddings stay on the low-rank path ---------------


class StockTransformer(nn.Module):
    """Embed, causal SelfAttention, LayerNorm and a Dense MLP: stock flax.linen only."""

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        x = nn.Embed(11, 8)(ids)
        mask = nn.make_causal_mask(ids)
        x = nn.LayerNorm()(x + nn.SelfAttention(num_heads=2, qkv_features=8)(x, mask=mask))
        x = nn.LayerNorm()(x + nn.Dense(8)(nn.relu(nn.Dense(16)(x))))
        return nn.Dense(11)(x)


class StockCNN(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
        return nn.ConvTranspose(4, (3, 3), strides=(2, 2))(h)


class ModelFit(lrne.tasks.Task):
    """Fit a stock model's outputs to a target: fitness −MSE; unrollable (each step
    scores the fit again), so the online strategies run on it too."""

    horizon = 4

    def __init__(self, model: nn.Module, inputs: jax.Array) -> None:
        self.model, self.inputs = model, inputs
        self.target = jnp.sin(
            jnp.arange(model.apply(self.init_params(jax.random.key(9)), inputs).size)
        )

    def init_params(self, key):
        return self.model.init(key, self.inputs)

    def fit(self, population):
        out = lrne.nn.population_apply(self.model, population, self.inputs)
        return -jnp.mean((out.reshape(out.shape[0], -1) - self.target) ** 2, axis=1)

    def evaluate_members(self, keys, population):
        return self.fit(population), {}

    def reset(self, keys):
        return jnp.zeros(keys.shape[0], jnp.int32)

    def unroll(self, keys, population, inner, t, num_steps):
        fitness = self.fit(population)
        return inner + num_steps, jnp.broadcast_to(fitness[:, None], (fitness.shape[0], num_steps))


# Each weight as the matrix its layer multiplies by: (∏ in-axes, ∏ out-axes).
def layer_matrix(path: str, shape: tuple) -> tuple[int, int]:
    if any(name in path for name in ("query", "key", "value")) and len(shape) == 3:
        return shape[0], shape[1] * shape[2]  # DenseGeneral (in) -> (heads, head_dim)
    if "bias" in path:  # a DenseGeneral bias over (heads, head_dim): added, not multiplied
        return 1, int(np.prod(shape))
    return int(np.prod(shape[:-1])), shape[-1]


STOCK = {
    "transformer": (StockTransformer(), jnp.array([[1, 4, 9, 2, 0, 7]])),
    "cnn": (StockCNN(), jax.random.normal(jax.random.key(4), (1, 9, 9, 3))),
}
NOISE_RANK = ["es", "es_lowrank", "nres", "pes", "tes", "full_es"]


@pytest.mark.parametrize("model", sorted(STOCK))
@pytest.mark.parametrize("name", NOISE_RANK)
def test_stock_layers_never_get_per_member_weights(name, model):
    task = ModelFit(*STOCK[model])
    online = STRATEGY_METRICS[name] is ONLINE_ES
    kw = {"noise_rank": 1, **({"horizon": task.horizon} if online else {})}
    strategy = REGISTRY[name](POPULATION, **kw)
    params = task.init_params(jax.random.key(1))
    state = strategy.init(jax.random.key(0), params, task)
    population, _ = strategy.ask(jax.random.key(2), state)
    perturbations = population.members["perturb"]
    weights = jax.tree_util.tree_leaves_with_path(params["params"])
    deltas = jax.tree.leaves(perturbations, is_leaf=lambda d: isinstance(d, lrne.LowRank))
    dense_bytes = 0
    for (path, weight), delta in zip(weights, deltas, strict=True):
        printable = lrne.genome.path_str(path)
        for leaf in jax.tree.leaves(delta):
            assert leaf.shape != (POPULATION, *weight.shape) or weight.ndim < 2, printable
        if weight.ndim >= 2:
            m, n = layer_matrix(printable, weight.shape)
            assert isinstance(delta, lrne.LowRank), printable
            got = delta.U.nbytes + delta.V.nbytes
            assert got <= POPULATION * 1 * (m + n) * 4, (printable, got, m, n)
        else:
            dense_bytes += delta.nbytes
    small = sum(w.size for _, w in weights if w.ndim < 2)  # biases and norms: dense noise
    assert dense_bytes == POPULATION * small * 4
    # The perturbations reach the model: members differ under the same inputs. (The
    # whole generation step of every strategy: test_contract above.)
    score = jax.jit(lambda k, s, p: strategy.evaluate(k, s, p, task)[0])
    fitness = np.asarray(score(jax.random.key(3), state, population))
    assert np.all(np.isfinite(fitness)) and len(np.unique(fitness)) > 1, name
