"""Flax layers and models with a rank knob (0 = dense, r > 0 = W = A·B)."""

from lrne.nn.layers import Conv, Dense, Embed, factor_init, lowrank_matmul
from lrne.nn.models import MLP, MinAtarCNN, layer_rank

__all__ = [
    "MLP",
    "Conv",
    "Dense",
    "Embed",
    "MinAtarCNN",
    "factor_init",
    "layer_rank",
    "lowrank_matmul",
]
