"""Flax layers and models with a rank knob (0 = dense, r > 0 = W = A·B)."""

from lrne.nn.layers import (
    Conv,
    Dense,
    Embed,
    evaluation_layout,
    factor_init,
    factored_matmul,
)
from lrne.nn.models import MLP, MinAtarCNN, layer_rank

__all__ = [
    "MLP",
    "Conv",
    "Dense",
    "Embed",
    "MinAtarCNN",
    "evaluation_layout",
    "factor_init",
    "factored_matmul",
    "layer_rank",
]
