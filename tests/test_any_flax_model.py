"""Any flax.linen model, every strategy: a user's model built from stock flax layers only.

- The ES forward of a stock ``nn.Dense``, ``nn.DenseGeneral``, ``nn.Conv`` and
  ``nn.Embed`` (lookup and ``attend``) equals the plain forward on the explicit
  dense weights W + δ, for dense and low-rank δ; a low-rank δ no layer consumed
  is an error naming the leaf.
- A stock MLP (``nn.Dense(32)`` → tanh → ``nn.Dense``) and a stock CNN
  (``nn.Conv`` → relu → flatten → ``nn.Dense``) under GA, ES (dense and rank-1
  noise) and NRES: every member's fitness equals its explicit reference (GA: its
  own params; ES, NRES: mean + δ formed densely), it moves with sigma (the old
  silent no-op scored σ = 0.05 and σ = 5 alike), and a short run improves the
  model.
- That low-rank ES solves CartPole-v1 with a stock flax policy is checked on
  the README's API example, in ``test_readme.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import lrne
from lrne import perturb
from lrne.genome import LowRank, Population
from lrne.nn import member_variables


class StockMLP(nn.Module):
    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_outputs)(jnp.tanh(nn.Dense(32)(x)))


class StockCNN(nn.Module):
    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(4, (3, 3), padding="VALID")(x))
        return nn.Dense(self.num_outputs)(x.reshape(*x.shape[:-3], -1))


def explicit(variables: dict, delta: dict) -> dict:
    """A member's variables with its perturbation formed densely: W + δ."""
    return {**variables, "params": perturb.apply(variables["params"], delta)}


# --- The forward pass of each stock layer ----------------------------------------------

IDS = jnp.array([[1, 4, 9], [0, 10, 4]])
LAYERS = {
    "Dense": (nn.Dense(5), (3, 4), {}),
    "DenseGeneral": (nn.DenseGeneral(5), (3, 4), {}),
    "DenseGeneral_axis0": (nn.DenseGeneral(5, axis=0), (4, 3, 2), {}),
    "DenseGeneral_3d_kernel": (nn.DenseGeneral((2, 3)), (3, 4), {}),
    "DenseGeneral_in_and_out_axes": (nn.DenseGeneral((3, 2), axis=(-2, -1)), (2, 4, 5), {}),
    "MultiHeadDotProductAttention": (
        nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8),
        (2, 4, 6),
        {},
    ),
    "SelfAttention_causal": (
        nn.SelfAttention(num_heads=2, qkv_features=8),
        (2, 4, 6),
        {"mask": nn.make_causal_mask(jnp.ones((2, 4)))},
    ),
    "Einsum": (nn.Einsum((5, 2, 3), "btd,dhk->bthk"), (2, 4, 5), {}),
    "Conv": (nn.Conv(3, (3, 3)), (2, 6, 6, 2), {}),
    "Conv_strided_same": (nn.Conv(16, (3, 3), strides=2, padding="SAME"), (2, 7, 7, 4), {}),
    # Few output channels: δ's split is not (window·in × out), so δ is formed in the layer.
    "Conv_few_outputs": (nn.Conv(2, (5, 5)), (1, 8, 8, 1), {}),
    "Conv_1d_dilated": (nn.Conv(8, (3,), kernel_dilation=2), (2, 9, 4), {}),
    "ConvTranspose": (nn.ConvTranspose(6, (3, 3), strides=(2, 2)), (2, 5, 5, 4), {}),
    "Embed": (nn.Embed(11, 6), None, {}),
    "Embed_attend": (nn.Embed(11, 6), (2, 6), {"method": "attend"}),
}


@pytest.mark.parametrize("noise_rank", [0, 2])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_stock_layer_forward_equals_explicit_w_plus_delta(name, noise_rank):
    layer, shape, kwargs = LAYERS[name]
    x = IDS if shape is None else jax.random.normal(jax.random.key(1), shape)
    variables = layer.init(jax.random.key(0), IDS if name.startswith("Embed") else x)
    delta = perturb.sample(jax.random.key(2), variables["params"], 0.3, noise_rank)
    if noise_rank:  # every weight of two or more axes: a low-rank δ, inside the forward pass
        weights = jax.tree.leaves(variables["params"])
        deltas = jax.tree.leaves(delta, is_leaf=lambda d: isinstance(d, LowRank))
        for weight, d in zip(weights, deltas, strict=True):
            assert isinstance(d, LowRank) == (weight.ndim >= 2)
    got = lrne.nn.apply(layer, {**variables, "perturb": delta}, x, **kwargs)
    expected = layer.apply(explicit(variables, delta), x, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    unperturbed = layer.apply(variables, x, **kwargs)
    assert np.abs(np.asarray(got - unperturbed)).max() > 0.05  # δ really reached the output


class Einsum(nn.Module):
    """A custom layer: a 2-D weight matrix used in an einsum that no interceptor knows,
    and a 2-D position table that is added, not multiplied."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.normal(1.0), (x.shape[-1], 3))
        table = self.param("position", nn.initializers.normal(1.0), (2, 3))
        return jnp.einsum("i,ij->j", x, kernel) + table.sum(0)


class Mixed(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return Einsum(name="custom")(nn.Dense(4)(x))


def test_an_unconsumed_lowrank_perturbation_is_an_error_naming_the_leaf():
    model = Mixed()
    x = jnp.ones(5)
    variables = model.init(jax.random.key(0), x)
    delta = perturb.sample(jax.random.key(1), variables["params"], 0.1, 1)
    # Every leaf of two or more axes gets low-rank noise, whatever its name.
    assert isinstance(delta["custom"]["kernel"], LowRank)
    assert isinstance(delta["Dense_0"]["kernel"], LowRank)
    assert isinstance(delta["custom"]["position"], LowRank)
    with pytest.raises(ValueError, match=r"'custom/kernel' \(module 'custom'\) was not consumed"):
        lrne.nn.apply(model, {**variables, "perturb": delta}, x)
    # Named in dense_noise, a param gets dense noise; the other one is still an error.
    opted = perturb.sample(jax.random.key(1), variables["params"], 0.1, 1, frozenset({"position"}))
    assert opted["custom"]["position"].shape == (2, 3)
    with pytest.raises(ValueError, match=r"'custom/kernel' \(module 'custom'\) was not consumed"):
        lrne.nn.apply(model, {**variables, "perturb": opted}, x)
    opted = perturb.sample(
        jax.random.key(1), variables["params"], 0.1, 1, frozenset({"custom/kernel", "position"})
    )
    got = lrne.nn.apply(model, {**variables, "perturb": opted}, x)
    np.testing.assert_allclose(got, model.apply(explicit(variables, opted), x), rtol=1e-5)
    # Dense noise is folded into the params: any layer reads it, W + δ exactly.
    dense = perturb.sample(jax.random.key(1), variables["params"], 0.1, 0)
    got = lrne.nn.apply(model, {**variables, "perturb": dense}, x)
    np.testing.assert_allclose(got, model.apply(explicit(variables, dense), x), rtol=1e-5)


# --- Stock MLP and CNN under every kind of strategy --------------------------------------


class Stream(lrne.tasks.Classification):
    """Classification by log-likelihood that online strategies can unroll too.

    Step t of an episode scores example t (fitness log p(label_t)); an episode
    is one pass over the data, so ``horizon`` is the number of examples.
    """

    def __init__(self, model: nn.Module, inputs: jax.Array, labels: jax.Array) -> None:
        super().__init__(model, inputs, labels, objective="log_likelihood", ensemble_size=1)
        self.horizon = len(labels)

    def reset(self, keys: jax.Array) -> jax.Array:
        return jnp.zeros(keys.shape[0])  # stateless: the step index picks the example

    def step_fitness(self, variables: dict, index: jax.Array) -> jax.Array:
        logits = self.apply(variables, self.inputs[index])
        return jnp.take_along_axis(
            jax.nn.log_softmax(logits), self.labels[index][:, None], axis=-1
        )[:, 0]

    def unroll(self, keys, population, inner, t, num_steps):
        del keys
        shared, members = population
        index = lambda t0: jnp.clip(t0 + jnp.arange(num_steps), 0, self.horizon - 1)
        one = lambda m, t0: self.step_fitness(member_variables(shared, m), index(t0))
        return inner, jax.vmap(one)(members, t)


def stream(model_name: str) -> Stream:
    """32 examples: 4 features, 3 classes (MLP), or 6×6×2 images, 2 classes (CNN)."""
    key = jax.random.key(7)
    if model_name == "mlp":
        x = jax.random.normal(key, (32, 4))
        return Stream(StockMLP(3), x, jnp.argmax(x[:, :3], axis=1))
    x = jax.random.normal(key, (32, 6, 6, 2))
    labels = (x[..., 0].mean((1, 2)) > x[..., 1].mean((1, 2))).astype(jnp.int32)
    return Stream(StockCNN(2), x, labels)


WINDOW = 8


def make(kind: str, sigma: float, horizon: int) -> lrne.Strategy:
    if kind == "ga":
        return lrne.ga(16, 4, sigma)
    if kind == "nres":
        return lrne.nres(8, sigma, optax.adam(0.05), WINDOW, horizon, noise_rank=1)
    return lrne.es(16, sigma, optax.adam(0.05), noise_rank={"es": 0, "es_rank1": 1}[kind])


KINDS = ["ga", "es", "es_rank1", "nres"]


def reference_log_p(task: Stream, kind: str, population: Population) -> jax.Array:
    """(members, examples) log p(label) from each member's explicit dense variables,
    with plain ``model.apply``: GA members' own params (as stored: the evaluation
    layout must be invisible to the stock layers, which check the thin head's
    (32, n) kernel shape), ES members' mean + δ."""

    def one(member: dict) -> jax.Array:
        variables = member if kind == "ga" else explicit(population.shared, member["perturb"])
        logits = jax.vmap(lambda x: task.model.apply(variables, x))(task.inputs)
        return jax.nn.log_softmax(logits)[jnp.arange(len(task.labels)), task.labels]

    return jax.vmap(one)(population.members)


# The MLP under -m slow: its Dense layers' forward against explicit W + δ is
# test_stock_layer_forward_equals_explicit_w_plus_delta, and a stock MLP runs
# under every registry strategy in test_contract; the CNN here covers the rest.
@pytest.mark.parametrize("model_name", [pytest.param("mlp", marks=pytest.mark.slow), "cnn"])
@pytest.mark.parametrize("kind", KINDS)
def test_stock_model_under_each_strategy(kind, model_name):
    task = stream(model_name)
    params = task.init_params(jax.random.key(0))
    reference = jax.jit(reference_log_p, static_argnums=(0, 1))

    # Every member's fitness is that of its explicit dense variables, and moves with sigma.
    spread = {}
    for sigma in (0.05, 5.0):
        strategy = make(kind, sigma, task.horizon)
        state = strategy.init(jax.random.key(1), params, task)
        population, state = strategy.ask(jax.random.key(2), state)
        # Offline strategies share one hook (task.evaluate): one compile for both sigmas.
        evaluate = jax.jit(strategy.evaluate, static_argnums=3)
        fitness, _, _ = evaluate(jax.random.key(3), state, population, task)
        log_p = np.asarray(reference(task, kind, population))
        if kind == "nres":  # a window of W examples from each particle's step t
            t = np.tile(np.asarray(state.t), 2)
            expected = [row[s : s + WINDOW].sum() for row, s in zip(log_p, t, strict=True)]
        else:
            expected = log_p.mean(axis=1)
        np.testing.assert_allclose(fitness, expected, rtol=2e-4, atol=2e-4)
        fitness = np.asarray(fitness)
        if kind == "ga":
            spread[sigma] = float(np.std(fitness))
        else:  # antithetic pairs see the same examples: they differ only through ±δ
            half = len(fitness) // 2
            spread[sigma] = float(np.mean(np.abs(fitness[:half] - fitness[half:])))
    # Members differ, and differ more the larger sigma (the old no-op scored all alike).
    assert 0 < spread[0.05] and 10 * spread[0.05] < spread[5.0], spread

    # A short run improves the model's mean log-likelihood over the 32 examples.
    strategy = make(kind, {"ga": 0.3}.get(kind, 0.1), task.horizon)
    state = strategy.init(jax.random.key(1), params, task)
    step = lrne.generation_step(strategy, task)
    keys = jax.random.split(jax.random.key(2), 40)
    state, _ = jax.jit(lambda s, k: jax.lax.scan(step, s, k))(state, keys)
    one = lambda tree: Population({}, jax.tree.map(lambda x: x[None], tree))
    before = float(jnp.mean(reference(task, "ga", one(params))))
    after = float(jnp.mean(reference(task, "ga", one(state.best_params))))
    assert after > before + 0.3, (before, after)  # measured: +0.47 to +1.2
