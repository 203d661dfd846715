"""Environment wrappers: gymnax environments seen differently (e.g. from pixels)."""

from lrne.wrappers.pixels import PixelObservation, pixel_pendulum, render_pendulum

__all__ = ["PixelObservation", "pixel_pendulum", "render_pendulum"]
