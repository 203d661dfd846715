"""Tasks: evaluate a population -> fitness (P,), higher is better."""

from lrne.tasks.gymnax import Gymnax, action_size, make_env

__all__ = ["Gymnax", "action_size", "make_env"]
