"""Tasks: evaluate a population -> fitness (P,), higher is better."""

from lrne.tasks.classification import Classification
from lrne.tasks.gymnax import Gymnax, Unrolled, action_size, make_env
from lrne.tasks.lorenz import Lorenz

__all__ = ["Classification", "Gymnax", "Lorenz", "Unrolled", "action_size", "make_env"]
