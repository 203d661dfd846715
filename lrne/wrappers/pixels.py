"""Observations from pixels: any gymnax environment, seen through a renderer.

Garbus & Pollack 2025 (arXiv 2504.03037) test continuous control from pixels on
CarRacing. The stand-in here is Pendulum-v1 rendered into a small grey image,
with the last frames stacked so that a policy can see the swing's direction.
:class:`PixelObservation` wraps any gymnax environment given a function from
its state to an image; :func:`render_pendulum` is Pendulum's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from lrne.errors import ArgumentError

Array = jax.Array


@struct.dataclass
class PixelState(environment.EnvState):
    """The wrapped environment's state and the stacked frames (H, W, frames)."""

    inner: Any
    frames: Array


def render_pendulum(state: Any, size: int = 32, width: float = 1.5) -> Array:
    """A (size, size) image of the pendulum: a bright rod from the centre.

    Pendulum's angle θ is 0 upright and grows counter-clockwise (as gym draws
    it), so the tip is at x = −L·sin θ, y = L·cos θ, with the rod of length
    L = 0.4·size from the pivot at the image centre, y pointing up (row
    ``size/2 − y``). Intensity falls linearly to 0 at ``width`` pixels from the
    rod, so the image is a smooth function of θ.
    """
    centre = (size - 1) / 2.0
    length = 0.4 * size
    tip = jnp.stack([-length * jnp.sin(state.theta), length * jnp.cos(state.theta)])
    cols, rows = jnp.meshgrid(jnp.arange(size), jnp.arange(size))
    points = jnp.stack([cols - centre, centre - rows], axis=-1).astype(jnp.float32)
    along = jnp.clip(points @ tip / (length**2), 0.0, 1.0)
    distance = jnp.linalg.norm(points - along[..., None] * tip, axis=-1)
    return jnp.clip(1.0 - distance / width, 0.0, 1.0)


class PixelObservation(environment.Environment):
    """``env`` whose observation is the last ``frames`` renders of its state.

    Args:
        env: a gymnax environment.
        render: state -> (H, W) float image.
        frames: how many renders to stack (the oldest first) on the last axis.

    Rewards, termination, actions and params are the wrapped environment's.
    At reset the first render fills every frame slot.
    """

    def __init__(
        self, env: environment.Environment, render: Callable[[Any], Array], frames: int = 2
    ):
        if not isinstance(frames, int) or frames < 1:
            raise ArgumentError("frames", f"frames must be an int >= 1, got {frames!r}")
        super().__init__()
        self.env = env
        self.render = render
        self.frames = frames

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    @property
    def name(self) -> str:
        return f"Pixel{self.env.name}"

    def reset_env(self, key: Array, params: Any) -> tuple[Array, PixelState]:
        _, inner = self.env.reset_env(key, params)
        image = self.render(inner)
        frames = jnp.repeat(image[..., None], self.frames, axis=-1)
        return frames, PixelState(time=0, inner=inner, frames=frames)

    def step_env(
        self, key: Array, state: PixelState, action: Any, params: Any
    ) -> tuple[Array, PixelState, Array, Array, dict]:
        out = self.env.step_env(key, state.inner, action, params)
        _, inner, reward, terminated = out[:4]
        frames = jnp.concatenate([state.frames[..., 1:], self.render(inner)[..., None]], axis=-1)
        new = PixelState(time=state.time + 1, inner=inner, frames=frames)
        return frames, new, reward, terminated, out[-1]

    def is_truncated(self, state: PixelState, params: Any) -> Array:
        return self.env.is_truncated(state.inner, params)

    def is_terminated(self, state: PixelState, params: Any) -> Array:
        return self.env.is_terminated(state.inner, params)

    def action_space(self, params: Any = None) -> Any:
        return self.env.action_space(params)

    def observation_space(self, params: Any = None) -> spaces.Box:
        shape = jax.eval_shape(self.reset_env, jax.random.key(0), self.default_params)[0].shape
        return spaces.Box(0.0, 1.0, shape, jnp.float32)


def pixel_pendulum(size: int = 32, frames: int = 2) -> PixelObservation:
    """Pendulum-v1 from pixels: (size, size, frames) images, continuous torque."""
    import gymnax

    env, _ = gymnax.make("Pendulum-v1")
    return PixelObservation(env, lambda state: render_pendulum(state, size), frames)
