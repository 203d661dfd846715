"""A decoder-only transformer language model with a rank knob per component.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037), evolve a small transformer on TinyStories:
3 blocks, hidden width 32, 4 heads, feed-forward width 128, ReLU, post-norm
LayerNorm kept frozen, and a tied input embedding / output decoder. Their
factorized arm stores every projection as A·B of rank 4 and the embedding at a
small rank; the small arm shrinks the width to 4 (feed-forward 16). Positions
enter through rotary embeddings (Su et al. 2021, *RoFormer*, arXiv 2104.09864)
on queries and keys, so there is no position table to evolve.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from lrne.errors import ArgumentError
from lrne.genome import Array
from lrne.nn.layers import Dense, Embed, LayerNorm, check_rank

PRESETS: dict[str, dict[str, int]] = {
    "full": dict(hidden=32, num_heads=4, ff=128, num_blocks=3),
    "factorized": dict(
        hidden=32, num_heads=4, ff=128, num_blocks=3, qkv_rank=4, o_rank=4, ff_rank=4, embed_rank=4
    ),
    "small": dict(hidden=4, num_heads=2, ff=16, num_blocks=3),
}


def rotary(x: Array, positions: Array, base: float = 10000.0) -> Array:
    """Rotate feature pairs (i, i + d/2) of ``x`` (..., d) by angle position·base^(-2i/d).

    ``positions`` broadcasts against ``x`` without its last axis: (L,) for
    ``x`` (..., L, d), (L, 1) for (..., L, heads, d). A rotation, so norms are
    kept; and the dot product of a query rotated at position m with a key
    rotated at n depends only on m − n.
    """
    half = x.shape[-1] // 2
    if x.shape[-1] != 2 * half:
        raise ValueError(f"rotary: the feature size must be even, got {x.shape[-1]}")
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = positions[..., None].astype(jnp.float32) * freq
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    first, second = x[..., :half], x[..., half:]
    return jnp.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)


def causal_attention(q: Array, k: Array, v: Array) -> Array:
    """Softmax attention (..., L, heads, d) where position i attends to j <= i only."""
    length = q.shape[-3]
    scores = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    causal = jnp.tril(jnp.ones((length, length), bool))
    scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
    return jnp.einsum("...hqk,...khd->...qhd", jax.nn.softmax(scores, axis=-1), v)


class Block(nn.Module):
    """Post-norm block: x = LN(x + attention(x)); x = LN(x + FF(x))."""

    hidden: int
    num_heads: int
    ff: int
    qkv_rank: int = 0
    o_rank: int = 0
    ff_rank: int = 0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        head = self.hidden // self.num_heads
        split = lambda y: y.reshape(*y.shape[:-1], self.num_heads, head)
        positions = jnp.arange(x.shape[-2])[:, None]
        q = rotary(split(Dense(self.hidden, self.qkv_rank, name="q")(x)), positions)
        k = rotary(split(Dense(self.hidden, self.qkv_rank, name="k")(x)), positions)
        v = split(Dense(self.hidden, self.qkv_rank, name="v")(x))
        attended = causal_attention(q, k, v).reshape(x.shape)
        x = x + Dense(self.hidden, self.o_rank, name="o")(attended)
        x = LayerNorm(name="LayerNorm_attention")(x)
        h = nn.relu(Dense(self.ff, self.ff_rank, name="ff_in")(x))
        x = x + Dense(self.hidden, self.ff_rank, name="ff_out")(h)
        return LayerNorm(name="LayerNorm_ff")(x)


class Transformer(nn.Module):
    """Decoder-only language model: token ids (..., L) -> next-token logits (..., L, vocab).

    Attributes:
        vocab_size: number of tokens.
        hidden, num_heads, ff, num_blocks: width, heads (dividing ``hidden``,
            head size even for the rotary embedding), feed-forward width, depth.
        qkv_rank, o_rank, ff_rank, embed_rank: rank of the query/key/value
            projections, the attention output projection, both feed-forward
            layers and the tied embedding; 0 = dense.

    ``Transformer.preset("factorized" | "full" | "small", vocab_size)`` gives
    the paper's three arms. The GA's default ``freeze`` keeps its LayerNorms
    (paths containing ``LayerNorm``) fixed, as the paper does.
    """

    vocab_size: int
    hidden: int = 32
    num_heads: int = 4
    ff: int = 128
    num_blocks: int = 3
    qkv_rank: int = 0
    o_rank: int = 0
    ff_rank: int = 0
    embed_rank: int = 0

    def __post_init__(self) -> None:
        for name in ("qkv_rank", "o_rank", "ff_rank", "embed_rank"):
            check_rank(f"Transformer {name}", getattr(self, name))
        for name in ("vocab_size", "hidden", "num_heads", "ff", "num_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ArgumentError(name, f"Transformer: {name} must be an int >= 1, got {value!r}")
        if self.hidden % self.num_heads or (self.hidden // self.num_heads) % 2:
            raise ArgumentError(
                "hidden",
                f"Transformer: hidden ({self.hidden}) must be num_heads ({self.num_heads}) "
                "times an even head size (rotary embedding)",
            )
        super().__post_init__()

    @classmethod
    def preset(cls, arm: str, vocab_size: int, **overrides: Any) -> Transformer:
        """The paper's arms: ``"factorized"``, ``"full"`` or ``"small"``."""
        if arm not in PRESETS:
            raise ArgumentError("arm", f"arm must be one of {tuple(PRESETS)}, got {arm!r}")
        return cls(vocab_size=vocab_size, **{**PRESETS[arm], **overrides})

    @nn.compact
    def __call__(self, ids: Array) -> Array:
        embed = Embed(self.vocab_size, self.hidden, rank=self.embed_rank, name="embed")
        x = embed(ids)
        for i in range(self.num_blocks):
            x = Block(
                self.hidden,
                self.num_heads,
                self.ff,
                self.qkv_rank,
                self.o_rank,
                self.ff_rank,
                name=f"block_{i}",
            )(x)
        return embed.attend(x)
