"""Rank-knob layers, materialize/factorize, init variance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrne
from lrne.genome import TransposedFactors
from lrne.nn import MLP, Conv, Dense, Embed, MinAtarCNN, factor_init


def test_materialize_is_explicit_product(key):
    params = Dense(6, rank=2).init(key, jnp.ones(5))
    factors = params["params"]["kernel"]
    dense = lrne.materialize(params)
    assert isinstance(factors, lrne.Factors)
    expected = np.asarray(factors.A) @ np.asarray(factors.B)
    np.testing.assert_allclose(dense["params"]["kernel"], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(dense["params"]["bias"], params["params"]["bias"])


def test_materialize_conv_kernel_is_reshaped_product(key):
    params = Conv(5, (3, 3), rank=2).init(key, jnp.ones((6, 6, 3)))
    a = np.asarray(params["params"]["kernel"].A)
    b = np.asarray(params["params"]["kernel"].B)
    assert a.shape == (3, 3, 3, 2) and b.shape == (2, 5)
    expected = (a.reshape(27, 2) @ b).reshape(3, 3, 3, 5)
    kernel = lrne.materialize(params)["params"]["kernel"]
    np.testing.assert_allclose(kernel, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("factorized", "dense", "shape"),
    [
        (MLP((32, 16), 3, rank=4, input_ndim=3), MLP((32, 16), 3, input_ndim=3), (4, 5, 2)),
        (MinAtarCNN(4, rank=3), MinAtarCNN(4, rank=0), (10, 10, 4)),
    ],
    ids=["mlp", "cnn"],
)
def test_factorized_forward_equals_dense_forward(key, factorized, dense, shape):
    x = jax.random.normal(jax.random.key(1), shape)
    params = jax.jit(factorized.init)(key, x)
    expected = jax.jit(dense.apply)(lrne.materialize(params), x)
    np.testing.assert_allclose(jax.jit(factorized.apply)(params, x), expected, rtol=1e-5, atol=1e-5)
    # The same holds for a population evaluated with vmap (the multiply-sum path).
    keys = jax.random.split(key, 3)
    population = jax.jit(jax.vmap(factorized.init, (0, None)))(keys, x)
    out = jax.jit(jax.vmap(factorized.apply, (0, None)))(population, x)
    materialized = jax.vmap(lrne.materialize)(population)
    ref = jax.jit(jax.vmap(dense.apply, (0, None)))(materialized, x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_embed_lookup_and_tied_decoder(key):
    ids = jnp.array([0, 3, 7])
    layer = Embed(10, 6, rank=2)
    params = layer.init(key, ids)
    table = np.asarray(lrne.materialize(params)["params"]["embedding"])
    np.testing.assert_allclose(layer.apply(params, ids), table[[0, 3, 7]], rtol=1e-6, atol=1e-7)
    x = jax.random.normal(jax.random.key(2), (6,))
    attended = layer.apply(params, x, method=Embed.attend)
    np.testing.assert_allclose(attended, table @ np.asarray(x), rtol=1e-5, atol=1e-6)


def test_factor_init_variance_matches_dense_variance():
    # One entry of A·B per independent init: iid samples of W_00.
    # For r Gaussian products, Var(W²) = v²(2 + 6/r); n = 40000 samples give a
    # standard error of v·sqrt(3.5/40000) ≈ 0.0094v at r = 4; tolerance is 5 SE.
    variance, rank, n = 1.0 / 64, 4, 40_000
    init = factor_init(variance, rank, (64, rank), (rank, 8))
    w00 = jax.vmap(lambda k: (lambda f: f.A[0] @ f.B[:, 0])(init(k)))(
        jax.random.split(jax.random.key(3), n)
    )
    assert abs(float(jnp.mean(w00**2)) / variance - 1.0) < 5 * np.sqrt(3.5 / n)
    # The dense layer's own init has the same variance (512 iid entries x 80 inits).
    dense = jax.vmap(lambda k: Dense(8).init(k, jnp.ones(64))["params"]["kernel"])(
        jax.random.split(jax.random.key(4), 80)
    )
    assert abs(float(jnp.var(dense)) / variance - 1.0) < 0.03


def test_rank_validation():
    with pytest.raises(ValueError, match="rank must be an int >= 0"):
        Dense(4, rank=-1)
    with pytest.raises(ValueError, match=r"rank=5 exceeds min\(in, out\)"):
        Dense(4, rank=5).init(jax.random.key(0), jnp.ones(8))
    with pytest.raises(ValueError, match="rank must be an int >= 0"):
        MLP((8,), 2, rank=-2)


def test_layer_rank_keeps_small_layers_dense(key):
    params = MLP((64,), 3, rank=4).init(key, jnp.ones(10))["params"]
    assert isinstance(params["Dense_0"]["kernel"], lrne.Factors)
    assert params["Dense_0"]["kernel"].rank == 4
    assert isinstance(params["Dense_1"]["kernel"], jax.Array)  # 64 -> 3 stays dense


def test_factorize_is_truncated_svd(key):
    dense_model = MLP((20,), 12, rank=0)
    params = dense_model.init(key, jnp.ones(16))
    factors = lrne.factorize(params, 3)
    kernel = np.asarray(params["params"]["Dense_0"]["kernel"])
    u, s, vt = np.linalg.svd(kernel, full_matrices=False)
    best = (u[:, :3] * s[:3]) @ vt[:3]
    got = lrne.materialize(factors)["params"]["Dense_0"]["kernel"]
    np.testing.assert_allclose(got, best, rtol=1e-4, atol=1e-5)
    # Same structure as the model built at that rank.
    structure = jax.tree.structure(MLP((20,), 12, rank=3).init(key, jnp.ones(16)))
    assert jax.tree.structure(factors) == structure
    # A rank-r matrix is recovered exactly.
    low = lrne.materialize(MLP((20,), 12, rank=3).init(key, jnp.ones(16)))
    again = lrne.materialize(lrne.factorize(low, 3))
    np.testing.assert_allclose(
        again["params"]["Dense_0"]["kernel"],
        low["params"]["Dense_0"]["kernel"],
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="rank must be an int >= 1"):
        lrne.factorize(params, 0)


def test_count_params_and_genome_bytes(key):
    params = jax.eval_shape(MLP((256, 256), 3, rank=4).init, key, jnp.ones(400))
    expected = (400 * 4 + 4 * 256 + 256) + (256 * 4 + 4 * 256 + 256) + (256 * 3 + 3)
    assert lrne.count_params(params) == expected
    assert lrne.genome_bytes(params) == 4 * expected
    dense = jax.eval_shape(MLP((256, 256), 3).init, key, jnp.ones(400))
    assert lrne.count_params(dense) == 400 * 256 + 256 + 256 * 256 + 256 + 256 * 3 + 3


def test_evaluation_layout_transposes_only_2d_factors_and_changes_no_output(key):
    model = MLP((32, 16), 3, rank=4, input_ndim=3)
    x = jax.random.normal(jax.random.key(1), (4, 5, 2))
    members = jax.vmap(model.init, (0, None))(jax.random.split(key, 6), x)
    relaid = lrne.nn.prepare(lrne.Population({}, members)).members
    first = relaid["params"]["Dense_0"]["kernel"]
    assert isinstance(first, TransposedFactors) and first.At.shape == (6, 4, 40)
    np.testing.assert_array_equal(
        first.At, jnp.swapaxes(members["params"]["Dense_0"]["kernel"].A, 1, 2)
    )
    # The thin head (16 -> 3) stays a dense kernel, as stored: stock flax checks its shape.
    head = relaid["params"]["Dense_2"]["kernel"]
    np.testing.assert_array_equal(head, members["params"]["Dense_2"]["kernel"])
    expected = jax.vmap(model.apply, (0, None))(members, x)
    got = jax.vmap(model.apply, (0, None))(relaid, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The genome itself is untouched: materialize still sees A (in×r).
    assert members["params"]["Dense_0"]["kernel"].A.shape == (6, 40, 4)


@pytest.mark.parametrize("rank", [0, 3])
def test_mlp_is_batched_like_a_flax_module(rank):
    model = MLP((16,), 3, rank=rank, input_ndim=2)
    one = jax.random.normal(jax.random.key(1), (4, 5))
    params = model.init(jax.random.key(0), one)
    batch = jax.random.normal(jax.random.key(2), (2, 3, 4, 5))
    expected = jax.vmap(jax.vmap(lambda x: model.apply(params, x)))(batch)
    got = model.apply(params, batch)
    assert got.shape == (2, 3, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The same params as a plain flax MLP over the flattened input: no batch axis leaks in.
    assert params["params"]["Dense_0"]["bias"].shape == (16,)
    flat = MLP((16,), 3, rank=rank)
    np.testing.assert_allclose(flat.apply(params, batch.reshape(2, 3, 20)), got, rtol=1e-6)


def test_mlp_with_too_few_axes_errors_clearly():
    with pytest.raises(ValueError, match=r"input of shape \(10, 10\) has fewer than input_ndim=3"):
        MLP((8,), 2, input_ndim=3).init(jax.random.key(0), jnp.ones((10, 10)))
    with pytest.raises(ValueError, match="input_ndim must be an int >= 0"):
        MLP((8,), 2, input_ndim=-1)
    # A scalar observation is one input of one feature.
    scalar = MLP((8,), 2, input_ndim=0)
    params = scalar.init(jax.random.key(0), jnp.float32(3.0))
    assert params["params"]["Dense_0"]["kernel"].shape == (1, 8)
    assert scalar.apply(params, jnp.ones(5)).shape == (5, 2)


@pytest.mark.parametrize("rank", [0, 3])
def test_minatar_cnn_is_batched_like_a_flax_module(rank):
    model = MinAtarCNN(4, rank=rank, channels=8, hidden=16)
    one = jax.random.normal(jax.random.key(1), (10, 10, 4))
    params = model.init(jax.random.key(0), one)
    batch = jax.random.normal(jax.random.key(2), (2, 3, 10, 10, 4))
    expected = jax.vmap(jax.vmap(lambda x: model.apply(params, x)))(batch)
    got = model.apply(params, batch)
    assert got.shape == (2, 3, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="MinAtarCNN: input of shape"):
        model.apply(params, jnp.ones((10, 40)))
