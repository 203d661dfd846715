"""Policy networks with a rank knob; like flax modules, they accept leading batch axes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flax import linen as nn

from lrne.errors import ArgumentError
from lrne.genome import Array, layer_rank
from lrne.nn.layers import Conv, Dense, check_rank


class MLP(nn.Module):
    """Multi-layer perceptron; batched like a flax module.

    One input is the last ``input_ndim`` axes of ``x``, flattened (3 for a
    (10, 10, C) MinAtar observation, 0 for a scalar one); any axes before them
    are batch axes.

    Attributes:
        features: hidden widths, e.g. ``(256, 256)``.
        num_outputs: output width (logits or pre-squash actions).
        rank: factor rank of every layer where it is below min(in, out); 0 = dense.
        activation: hidden nonlinearity.
        input_ndim: axes that make one input, >= 0.
    """

    features: Sequence[int]
    num_outputs: int
    rank: int = 0
    activation: Callable[[Array], Array] = nn.tanh
    input_ndim: int = 1

    def __post_init__(self) -> None:
        check_rank("MLP", self.rank)
        if any(f < 1 for f in self.features) or self.num_outputs < 1:
            raise ArgumentError(
                "features",
                f"MLP: widths must be >= 1, got features={tuple(self.features)}, "
                f"num_outputs={self.num_outputs}",
            )
        if (
            not isinstance(self.input_ndim, int)
            or isinstance(self.input_ndim, bool)
            or self.input_ndim < 0
        ):
            raise ArgumentError(
                "input_ndim", f"MLP: input_ndim must be an int >= 0, got {self.input_ndim!r}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if x.ndim < self.input_ndim:
            raise ValueError(
                f"MLP: input of shape {x.shape} has fewer than input_ndim={self.input_ndim} axes"
            )
        x = x.reshape(*x.shape[: x.ndim - self.input_ndim], -1)
        widths = [*self.features, self.num_outputs]
        for i, width in enumerate(widths):
            x = Dense(width, rank=layer_rank(self.rank, x.shape[-1], width))(x)
            if i < len(widths) - 1:
                x = self.activation(x)
        return x


class MinAtarCNN(nn.Module):
    """The MinAtar policy network (Young & Tian 2019): one 3×3 conv with 16
    channels, a 128-unit hidden layer, and the output layer; ReLU.

    Takes (..., H, W, C) observations: (10, 10, C) on MinAtar, with any leading
    batch axes. ``strides`` > 1 shrinks larger images (pixel Pendulum: 32×32 at
    stride 2).
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
        if x.ndim < 3:
            raise ValueError(f"MinAtarCNN: input of shape {x.shape} is not an image (..., H, W, C)")
        fan_in = 9 * x.shape[-1]
        rank = layer_rank(self.rank, fan_in, self.channels)
        x = Conv(self.channels, (3, 3), self.strides, rank=rank)(x)
        x = nn.relu(x)
        x = x.reshape(*x.shape[:-3], -1)
        x = Dense(self.hidden, rank=layer_rank(self.rank, x.shape[-1], self.hidden))(x)
        x = nn.relu(x)
        rank = layer_rank(self.rank, self.hidden, self.num_outputs)
        return Dense(self.num_outputs, rank=rank)(x)
