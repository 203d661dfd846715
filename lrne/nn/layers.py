"""Flax layers whose weight is dense (``rank=0``) or a low-rank product W = A·B.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037): every weight matrix is stored as factors
A (in×r) and B (r×out) with no frozen base matrix, and evolution searches the
factors. Biases and norms are never factorized.

A factorized weight is stored as one flax param whose value is a typed node
:class:`lrne.genome.Factors` ``(A, B)``; :func:`lrne.materialize` replaces it
by ``A·B`` to give the dense pytree of the same architecture at ``rank=0``.
An ES member's low-rank perturbation of a weight (``perturb`` collection, see
:mod:`lrne.nn.perturbed`) is added inside the forward pass, between the
factors for a factorized one.

The forward pass computes ``(x·A)·B``, never ``A·B``. Layers are written for one
example; a population is evaluated with ``jax.vmap`` over members, which on
XLA:CPU turns ``x @ A`` into a slow batched matmul. For a single input row the
broadcast-multiply-sum form is used instead (measured 4.7x faster on the 2-core
CPU for rank-4 factors of a 400-256-256-3 MLP at 256 members).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from lrne import perturb
from lrne.errors import ArgumentError
from lrne.genome import Array, Factors, LowRank, TransposedFactors, TransposedKernel
from lrne.nn.perturbed import conv_term, read


def check_rank(name: str, rank: int) -> None:
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise ArgumentError("rank", f"{name}: rank must be an int >= 0 (0 = dense), got {rank!r}")


def _check_rank_fits(name: str, rank: int, fan_in: int, fan_out: int) -> None:
    if rank > min(fan_in, fan_out):
        raise ArgumentError(
            "rank",
            f"{name}: rank={rank} exceeds min(in, out)=min({fan_in}, {fan_out}); "
            f"allowed range is 0 <= rank <= {min(fan_in, fan_out)}",
        )


def dense_init(variance: float):
    """Gaussian initializer with the given per-entry variance."""

    def init(key: Array, shape: Sequence[int], dtype=jnp.float32) -> Array:
        return math.sqrt(variance) * jax.random.normal(key, shape, dtype)

    return init


def factor_init(variance: float, rank: int, a_shape: Sequence[int], b_shape: Sequence[int]):
    """Initializer for :class:`~lrne.genome.Factors` such that Var((A·B)_ij) = ``variance``.

    With i.i.d. zero-mean entries, Var((A·B)_ij) = rank · Var(A) · Var(B), so both
    factors get standard deviation ``(variance / rank) ** (1/4)``.
    """
    std = (variance / rank) ** 0.25

    def init(key: Array) -> Factors:
        key_a, key_b = jax.random.split(key)
        return Factors(
            std * jax.random.normal(key_a, tuple(a_shape), jnp.float32),
            std * jax.random.normal(key_b, tuple(b_shape), jnp.float32),
        )

    return init


def _first_factor(x: Array, factors: Factors | TransposedFactors) -> Array:
    """``x·A`` for either layout of A, over the last axis of x."""
    if isinstance(factors, TransposedFactors):
        if x.ndim == 1:
            return jnp.sum(x[None, :] * factors.At, axis=1)
        return x @ factors.At.T
    if x.ndim == 1:
        return jnp.sum(x[:, None] * factors.A, axis=0)
    return x @ factors.A


def _plus(y: Array, x: Array, delta: LowRank | None) -> Array:
    """``y + x·δ`` for a low-rank δ, or y when there is none."""
    return y if delta is None else y + perturb.matmul(x, delta)


def _factor_deltas(delta: Factors | None) -> tuple[Any, Any]:
    """The low-rank perturbations of A and B (or None) from a member's ``perturb`` entry."""
    return (None, None) if delta is None else (delta.A, delta.B)


def factored_matmul(x: Array, factors: Factors | TransposedFactors, delta: Any = None) -> Array:
    """``(x·A)·B`` for factors in either layout (see :func:`lrne.genome.evaluation_layout`).

    With a low-rank perturbation ``delta = Factors(δA, δB)`` it computes
    ``(x·(A + δA))·(B + δB)`` as ``h = x·A + x·δA``, ``h·B + h·δB``, never
    forming A + δA or B + δB.
    """
    delta_a, delta_b = _factor_deltas(delta)
    h = _plus(_first_factor(x, factors), x, delta_a)
    y = jnp.sum(h[:, None] * factors.B, axis=0) if h.ndim == 1 else h @ factors.B
    return _plus(y, h, delta_b)


def _weight(module: nn.Module, name: str, init: Any, *shape: Any) -> Any:
    """``module.param``, except that an existing value is returned as stored:
    flax would reject the evaluation layout's transposed shapes."""
    if module.has_variable("params", name):
        return module.get_variable("params", name)
    return module.param(name, init, *shape)


def _bias(module: nn.Module, y: Array, features: int) -> Array:
    return y + module.param("bias", nn.initializers.zeros_init(), (features,))


class Dense(nn.Module):
    """Fully connected layer, ``y = x·W + b`` with W dense or W = A·B.

    Attributes:
        features: output width.
        rank: 0 stores W (in×out); r > 0 stores A (in×r), B (r×out).
        use_bias: add a (never factorized) bias.
        init_scale: Var(W_ij) = init_scale / in (LeCun normal at 1.0); the factors
            are initialized so that Var((A·B)_ij) is the same.
    """

    features: int
    rank: int = 0
    use_bias: bool = True
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_rank("Dense", self.rank)
        if self.features < 1:
            raise ArgumentError("features", f"Dense: features must be >= 1, got {self.features}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        fan_in = x.shape[-1]
        variance = self.init_scale / fan_in
        if self.rank == 0:
            kernel = _weight(self, "kernel", dense_init(variance), (fan_in, self.features))
            if isinstance(kernel, TransposedKernel):  # a thin head, in evaluation layout
                y = jnp.sum(x[None, :] * kernel.Wt, axis=1) if x.ndim == 1 else x @ kernel.Wt.T
            else:
                y = x @ kernel
            y = _plus(y, x, read(self, "kernel"))
        else:
            _check_rank_fits("Dense", self.rank, fan_in, self.features)
            init = factor_init(variance, self.rank, (fan_in, self.rank), (self.rank, self.features))
            y = factored_matmul(x, _weight(self, "kernel", init), read(self, "kernel"))
        return _bias(self, y, self.features) if self.use_bias else y


class LayerNorm(nn.Module):
    """Layer normalization over the last axis with a learned scale and bias.

    Computes the variance as mean((x - mean)²), two passes, where
    ``flax.linen.LayerNorm`` uses mean(x²) - mean(x)².
    """

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: Array) -> Array:
        features = x.shape[-1]
        mean = jnp.mean(x, axis=-1, keepdims=True)
        variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(variance + self.epsilon)
        y = y * self.param("scale", nn.initializers.ones_init(), (features,))
        return _bias(self, y, features)


class Conv(nn.Module):
    """2-D convolution over (..., H, W, C) inputs, kernel dense or A·B reshaped.

    The factorized kernel is A (kh, kw, in, r) · B (r, out), i.e. the (kh·kw·in)×r
    matrix A times B reshaped to (kh, kw, in, out). Convolution is linear in the
    kernel, so ``conv(x, A·B) = conv(x, A)·B``: the forward pass convolves with
    r channels and projects with B, never forming the full kernel.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: str = "VALID"
    rank: int = 0
    use_bias: bool = True
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_rank("Conv", self.rank)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if x.ndim < 3:
            raise ValueError(f"Conv: input of shape {x.shape} is not an image (..., H, W, C)")
        batch = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        kh, kw = self.kernel_size
        channels = x.shape[-1]
        fan_in = kh * kw * channels
        variance = self.init_scale / fan_in

        def conv(inputs: Array, kernel: Array) -> Array:
            return jax.lax.conv_general_dilated(
                inputs,
                kernel,
                window_strides=self.strides,
                padding=self.padding,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )

        # A low-rank δ of a 4-D kernel (or factor A) is a convolution to r channels
        # and a projection (:func:`lrne.nn.perturbed.conv_term`); dense ones are
        # folded into the params before the forward pass.
        def conv_plus(kernel: Array, delta: Any) -> Array:
            y = conv(x, kernel)
            if isinstance(delta, LowRank):
                y = y + conv_term(conv, x, delta, kernel.shape)
            return y

        if self.rank == 0:
            shape = (kh, kw, channels, self.features)
            y = conv_plus(self.param("kernel", dense_init(variance), shape), read(self, "kernel"))
        else:
            _check_rank_fits("Conv", self.rank, fan_in, self.features)
            init = factor_init(
                variance, self.rank, (kh, kw, channels, self.rank), (self.rank, self.features)
            )
            factors = self.param("kernel", init)
            delta_a, delta_b = _factor_deltas(read(self, "kernel"))
            h = conv_plus(factors.A, delta_a)
            y = _plus(h @ factors.B, h, delta_b)
        if self.use_bias:
            y = _bias(self, y, self.features)
        return y.reshape(*batch, *y.shape[1:])


class Embed(nn.Module):
    """Embedding table E (vocab×features), dense or E = A·B.

    ``__call__`` looks up token ids; ``attend`` computes ``x·Eᵀ`` for a tied
    output decoder (factorized: ``(x·Bᵀ)·Aᵀ``). Var(E_ij) = 1 / features.
    """

    num_embeddings: int
    features: int
    rank: int = 0

    def __post_init__(self) -> None:
        check_rank("Embed", self.rank)
        super().__post_init__()

    def setup(self) -> None:
        variance = 1.0 / self.features
        shape = (self.num_embeddings, self.features)
        if self.rank == 0:
            self.embedding = self.param("embedding", dense_init(variance), shape)
        else:
            _check_rank_fits("Embed", self.rank, *shape)
            init = factor_init(
                variance,
                self.rank,
                (self.num_embeddings, self.rank),
                (self.rank, self.features),
            )
            self.embedding = _weight(self, "embedding", init)

    def _factor_a(self) -> Array:
        table = self.embedding
        return table.At.T if isinstance(table, TransposedFactors) else table.A

    def __call__(self, ids: Array) -> Array:
        delta = read(self, "embedding")
        if self.rank == 0:
            return _rows(self.embedding, delta, ids)
        delta_a, delta_b = _factor_deltas(delta)
        h = _rows(self._factor_a(), delta_a, ids)
        return _plus(h @ self.embedding.B, h, delta_b)

    def attend(self, x: Array) -> Array:
        """``x·Eᵀ``: logits over the vocabulary for a tied output decoder."""
        delta = read(self, "embedding")
        if self.rank == 0:
            return _plus_t(x @ self.embedding.T, x, delta)
        delta_a, delta_b = _factor_deltas(delta)
        h = _plus_t(x @ self.embedding.B.T, x, delta_b)
        return _plus_t(h @ self._factor_a().T, h, delta_a)


def _rows(table: Array, delta: LowRank | None, ids: Array) -> Array:
    """Rows ``ids`` of table + δ, without forming table + δ."""
    rows = jnp.take(table, ids, axis=0)
    return rows if delta is None else rows + perturb.rows(delta, ids)


def _plus_t(y: Array, x: Array, delta: LowRank | None) -> Array:
    """``y + x·δᵀ`` for a low-rank δ, or y when there is none."""
    return y if delta is None else y + perturb.matmul_t(x, delta)


# Dense kernels with at most this many outputs (policy heads) take the
# transposed evaluation layout (:class:`~lrne.genome.TransposedKernel`).
THIN = 8


def thin_kernels(model: nn.Module, *inputs: Any) -> frozenset[str]:
    """Paths (``'Dense_2/kernel'``) of the thin dense kernels of lrne's ``Dense``
    layers in ``model``, found by tracing ``model.init`` on ``inputs`` once.

    :func:`lrne.genome.evaluation_layout` transposes only these, so a stock
    flax layer, which checks its param shapes, never sees a relayout.
    """
    found = set()

    def record(next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
        module = context.module
        if context.method_name == "__call__" and isinstance(module, Dense):
            if module.rank == 0 and module.features <= THIN:
                found.add("/".join((*module.path, "kernel")))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))
    return frozenset(found)
