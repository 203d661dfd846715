"""Flax layers whose weight is dense (``rank=0``) or a low-rank product W = A·B.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037): every weight matrix is stored as factors
A (in×r) and B (r×out) with no frozen base matrix, and evolution searches the
factors. Biases and norms are never factorized.

A factorized weight is stored as one flax param whose value is the dict
``{"A": ..., "B": ...}``; :func:`lrne.materialize` replaces that dict by
``A·B`` to give the dense pytree of the same architecture at ``rank=0``.

The forward pass computes ``(x·A)·B``, never ``A·B``. Layers are written for one
example; a population is evaluated with ``jax.vmap`` over members, which on
XLA:CPU turns ``x @ A`` into a slow batched matmul. For a single input row the
broadcast-multiply-sum form is used instead (measured 4.7x faster on the 2-core
CPU for rank-4 factors of a 400-256-256-3 MLP at 256 members).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from lrne import perturb

Array = jax.Array


def check_rank(name: str, rank: int) -> None:
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise ValueError(f"{name}: rank must be an int >= 0 (0 = dense), got {rank!r}")


def _check_rank_fits(name: str, rank: int, fan_in: int, fan_out: int) -> None:
    if rank > min(fan_in, fan_out):
        raise ValueError(
            f"{name}: rank={rank} exceeds min(in, out)=min({fan_in}, {fan_out}); "
            f"allowed range is 0 <= rank <= {min(fan_in, fan_out)}"
        )


def dense_init(variance: float):
    """Gaussian initializer with the given per-entry variance."""

    def init(key: Array, shape: Sequence[int], dtype=jnp.float32) -> Array:
        return math.sqrt(variance) * jax.random.normal(key, shape, dtype)

    return init


def factor_init(variance: float, rank: int, a_shape: Sequence[int], b_shape: Sequence[int]):
    """Initializer for factors ``{"A", "B"}`` such that Var((A·B)_ij) = ``variance``.

    With i.i.d. zero-mean entries, Var((A·B)_ij) = rank · Var(A) · Var(B), so both
    factors get standard deviation ``(variance / rank) ** (1/4)``.
    """
    std = (variance / rank) ** 0.25

    def init(key: Array) -> dict[str, Array]:
        key_a, key_b = jax.random.split(key)
        return {
            "A": std * jax.random.normal(key_a, tuple(a_shape), jnp.float32),
            "B": std * jax.random.normal(key_b, tuple(b_shape), jnp.float32),
        }

    return init


THIN = 8


def evaluation_layout(variables: Any) -> Any:
    """Relayout one member's ``params`` collection for population evaluation.

    Takes a flax variables dict (apply under vmap for a population); other
    collections, such as ES perturbations, are left as they are.

    Each 2-D factor A (in×r) becomes ``{"At": Aᵀ, "B": B}`` and each thin dense
    kernel W (in×out, out <= 8: policy heads) becomes ``{"Wt": Wᵀ}``, so that ``x·A`` and
    ``x·W`` reduce over the contiguous axis. Measured on XLA:CPU for a rank-4
    400-256-256-3 MLP at 256 members: 0.21 ms per step instead of 0.64. XLA does
    not hoist a transpose out of the rollout loop by itself, so the evaluator
    applies this once before the loop. Wide dense kernels keep their layout
    (transposed they were 13x slower). Layers accept both layouts; the genome
    itself always stores A (in×r) and W (in×out).
    """

    def visit(node: Any) -> Any:
        if not isinstance(node, Mapping):
            return node
        if set(node) == {"A", "B"}:
            if node["A"].ndim != 2:
                return node
            return {"At": jnp.swapaxes(node["A"], 0, 1), "B": node["B"]}
        out = {}
        for name, child in node.items():
            thin = getattr(child, "ndim", 0) == 2 and child.shape[1] <= THIN
            out[name] = {"Wt": child.T} if name == "kernel" and thin else visit(child)
        return out

    if "params" not in variables:
        return variables
    return {**variables, "params": visit(variables["params"])}


def _perturbation(module: nn.Module, name: str) -> Any:
    """The member's perturbation δ of param ``name`` (``perturb`` collection), or None."""
    if module.has_variable("perturb", name):
        return module.get_variable("perturb", name)
    return None


def _plus(y: Array, x: Array, delta: Any) -> Array:
    """``y + x·δ`` (δ dense or low-rank), or y when there is no δ."""
    return y if delta is None else y + perturb.matmul(x, delta)


def _first_factor(x: Array, factors: Mapping[str, Array]) -> Array:
    """``x·A`` for either layout of A, over the last axis of x."""
    if "At" in factors:
        if x.ndim == 1:
            return jnp.sum(x[None, :] * factors["At"], axis=1)
        return x @ factors["At"].T
    if x.ndim == 1:
        return jnp.sum(x[:, None] * factors["A"], axis=0)
    return x @ factors["A"]


def factored_matmul(x: Array, factors: Mapping[str, Array], delta: Any = None) -> Array:
    """``(x·A)·B`` for a factor dict in either layout (see :func:`evaluation_layout`).

    With a perturbation ``delta = {"A": δA, "B": δB}`` it computes
    ``(x·(A + δA))·(B + δB)`` as ``h = x·A + x·δA``, ``h·B + h·δB``.
    """
    h = _plus(_first_factor(x, factors), x, None if delta is None else delta["A"])
    y = jnp.sum(h[:, None] * factors["B"], axis=0) if h.ndim == 1 else h @ factors["B"]
    return _plus(y, h, None if delta is None else delta["B"])


def _bias(module: nn.Module, y: Array, features: int) -> Array:
    y = y + module.param("bias", nn.initializers.zeros_init(), (features,))
    delta = _perturbation(module, "bias")
    return y if delta is None else y + delta


def _weight(module: nn.Module, name: str, init: Any, *shape: Any) -> Any:
    """``module.param``, except that an existing value is returned as stored:
    flax would reject the evaluation layout's transposed shapes."""
    if module.has_variable("params", name):
        return module.get_variable("params", name)
    return module.param(name, init, *shape)


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
            raise ValueError(f"Dense: features must be >= 1, got {self.features}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        fan_in = x.shape[-1]
        variance = self.init_scale / fan_in
        if self.rank == 0:
            kernel = _weight(self, "kernel", dense_init(variance), (fan_in, self.features))
            if isinstance(kernel, Mapping):  # evaluation layout: {"Wt": Wᵀ}
                wt = kernel["Wt"]
                y = jnp.sum(x[None, :] * wt, axis=1) if x.ndim == 1 else x @ wt.T
            else:
                y = x @ kernel
            y = _plus(y, x, _perturbation(self, "kernel"))
        else:
            _check_rank_fits("Dense", self.rank, fan_in, self.features)
            init = factor_init(variance, self.rank, (fan_in, self.rank), (self.rank, self.features))
            y = factored_matmul(x, _weight(self, "kernel", init), _perturbation(self, "kernel"))
        return _bias(self, y, self.features) if self.use_bias else y


class LayerNorm(nn.Module):
    """Layer normalization over the last axis with a learned scale and bias.

    Like ``flax.linen.LayerNorm``, and it adds an ES member's perturbation of
    its scale and bias (``perturb`` collection), so ES evolves it too.
    """

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: Array) -> Array:
        features = x.shape[-1]
        mean = jnp.mean(x, axis=-1, keepdims=True)
        variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(variance + self.epsilon)
        scale = self.param("scale", nn.initializers.ones_init(), (features,))
        delta = _perturbation(self, "scale")
        y = y * (scale if delta is None else scale + delta)
        return _bias(self, y, features)


class Conv(nn.Module):
    """2-D convolution over (H, W, C) inputs, kernel dense or A·B reshaped.

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
        unbatched = x.ndim == 3
        if unbatched:
            x = x[None]
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

        # A conv kernel is 4-D: its perturbation is dense, added to the kernel.
        delta = _perturbation(self, "kernel")
        if self.rank == 0:
            shape = (kh, kw, channels, self.features)
            kernel = self.param("kernel", dense_init(variance), shape)
            y = conv(x, kernel if delta is None else kernel + delta)
        else:
            _check_rank_fits("Conv", self.rank, fan_in, self.features)
            init = factor_init(
                variance, self.rank, (kh, kw, channels, self.rank), (self.rank, self.features)
            )
            factors = self.param("kernel", init)
            a = factors["A"] if delta is None else factors["A"] + delta["A"]
            h = conv(x, a)
            y = _plus(h @ factors["B"], h, None if delta is None else delta["B"])
        if self.use_bias:
            y = _bias(self, y, self.features)
        return y[0] if unbatched else y


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

    def __call__(self, ids: Array) -> Array:
        delta = _perturbation(self, "embedding")
        if self.rank == 0:
            return _rows(self.embedding, delta, ids)
        a = self.embedding["At"].T if "At" in self.embedding else self.embedding["A"]
        h = _rows(a, None if delta is None else delta["A"], ids)
        return _plus(h @ self.embedding["B"], h, None if delta is None else delta["B"])

    def attend(self, x: Array) -> Array:
        """``x·Eᵀ``: logits over the vocabulary for a tied output decoder."""
        delta = _perturbation(self, "embedding")
        if self.rank == 0:
            return _plus_t(x @ self.embedding.T, x, delta)
        a = self.embedding["At"].T if "At" in self.embedding else self.embedding["A"]
        h = _plus_t(x @ self.embedding["B"].T, x, None if delta is None else delta["B"])
        return _plus_t(h @ a.T, h, None if delta is None else delta["A"])


def _rows(table: Array, delta: Any, ids: Array) -> Array:
    """Rows ``ids`` of table + δ, without forming table + δ."""
    rows = jnp.take(table, ids, axis=0)
    if delta is None:
        return rows
    if perturb.is_lowrank(delta):
        return rows + jnp.moveaxis(jnp.take(delta["U"], ids, axis=1), 0, -1) @ delta["V"]
    return rows + jnp.take(delta, ids, axis=0)


def _plus_t(y: Array, x: Array, delta: Any) -> Array:
    """``y + x·δᵀ`` (δ dense or low-rank), or y when there is no δ."""
    if delta is None:
        return y
    if perturb.is_lowrank(delta):
        return y + (x @ delta["V"].T) @ delta["U"]
    return y + x @ delta.T
