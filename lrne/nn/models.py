"""Policy networks with a rank knob, written for one example (``vmap`` for batches)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from flax import linen as nn

from lrne.nn.layers import Conv, Dense, check_rank

Array = jax.Array


def layer_rank(rank: int, fan_in: int, fan_out: int) -> int:
    """The rank a model gives one layer: ``rank`` where it is below min(in, out).

    A factorization at rank >= min(in, out) has more parameters than the dense
    matrix and no less expressivity, so such layers (e.g. a 3-action output
    head at rank 4) stay dense.
    """
    return rank if rank < min(fan_in, fan_out) else 0


class MLP(nn.Module):
    """Multi-layer perceptron over one flattened observation.

    Attributes:
        features: hidden widths, e.g. ``(256, 256)``.
        num_outputs: output width (logits or pre-squash actions).
        rank: factor rank of every layer where it is below min(in, out); 0 = dense.
        activation: hidden nonlinearity.
    """

    features: Sequence[int]
    num_outputs: int
    rank: int = 0
    activation: Callable[[Array], Array] = nn.tanh

    def __post_init__(self) -> None:
        check_rank("MLP", self.rank)
        if any(f < 1 for f in self.features) or self.num_outputs < 1:
            raise ValueError(
                f"MLP: widths must be >= 1, got features={tuple(self.features)}, "
                f"num_outputs={self.num_outputs}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = x.reshape(-1)
        widths = [*self.features, self.num_outputs]
        for i, width in enumerate(widths):
            x = Dense(width, rank=layer_rank(self.rank, x.shape[-1], width))(x)
            if i < len(widths) - 1:
                x = self.activation(x)
        return x


class MinAtarCNN(nn.Module):
    """The MinAtar policy network (Young & Tian 2019): one 3×3 conv with 16
    channels, a 128-unit hidden layer, and the output layer; ReLU.

    Takes one (H, W, C) observation: (10, 10, C) on MinAtar. ``strides`` > 1
    shrinks larger images (pixel Pendulum: 32×32 at stride 2).
    """

    num_outputs: int
    rank: int = 0
    channels: int = 16
    hidden: int = 128
    strides: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        check_rank("MinAtarCNN", self.rank)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        fan_in = 9 * x.shape[-1]
        rank = layer_rank(self.rank, fan_in, self.channels)
        x = Conv(self.channels, (3, 3), self.strides, rank=rank)(x)
        x = nn.relu(x).reshape(-1)
        x = Dense(self.hidden, rank=layer_rank(self.rank, x.shape[-1], self.hidden))(x)
        x = nn.relu(x)
        rank = layer_rank(self.rank, self.hidden, self.num_outputs)
        return Dense(self.num_outputs, rank=rank)(x)
