"""Flax layers and models with a rank knob (0 = dense, r > 0 = W = A·B), and the
forward-pass perturbation hook that makes any flax.linen model evaluable by ES."""

from lrne.genome import evaluation_layout, layer_rank
from lrne.nn.layers import Conv, Dense, Embed, LayerNorm, factor_init, factored_matmul
from lrne.nn.models import MLP, MinAtarCNN
from lrne.nn.perturbed import (
    apply,
    member_params,
    member_variables,
    population_apply,
    prepare,
)
from lrne.nn.transformer import Transformer, causal_attention, rotary

__all__ = [
    "MLP",
    "Conv",
    "Dense",
    "Embed",
    "LayerNorm",
    "MinAtarCNN",
    "Transformer",
    "apply",
    "causal_attention",
    "evaluation_layout",
    "factor_init",
    "factored_matmul",
    "layer_rank",
    "member_params",
    "member_variables",
    "population_apply",
    "prepare",
    "rotary",
]
