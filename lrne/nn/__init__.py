"""Flax layers and models with a rank knob (0 = dense, r > 0 = W = A·B)."""

from lrne.nn.layers import (
    Conv,
    Dense,
    Embed,
    LayerNorm,
    evaluation_layout,
    factor_init,
    factored_matmul,
)
from lrne.nn.models import MLP, MinAtarCNN, layer_rank
from lrne.nn.transformer import Transformer, causal_attention, rotary

__all__ = [
    "MLP",
    "Conv",
    "Dense",
    "Embed",
    "LayerNorm",
    "MinAtarCNN",
    "Transformer",
    "causal_attention",
    "evaluation_layout",
    "factor_init",
    "factored_matmul",
    "layer_rank",
    "rotary",
]
