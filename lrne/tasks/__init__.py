"""Tasks: evaluate a population -> fitness (P,), higher is better."""

from lrne.tasks.classification import Classification
from lrne.tasks.gymnax import Gymnax, Unrolled, action_size, make_env
from lrne.tasks.language import LanguageModel, load_tinyshakespeare
from lrne.tasks.lorenz import Lorenz
from lrne.tasks.pixels import PixelObservation, pixel_pendulum, render_pendulum

__all__ = [
    "Classification",
    "Gymnax",
    "LanguageModel",
    "Lorenz",
    "PixelObservation",
    "Unrolled",
    "action_size",
    "load_tinyshakespeare",
    "make_env",
    "pixel_pendulum",
    "render_pendulum",
]
