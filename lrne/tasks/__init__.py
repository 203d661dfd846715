"""Tasks: evaluate a population -> fitness (P,), higher is better."""

from lrne.tasks.base import Task, TaskWrapper, Unrollable, member_keys
from lrne.tasks.chunked import Chunked
from lrne.tasks.classification import Classification
from lrne.tasks.function import Function
from lrne.tasks.gymnax import Gymnax, Unrolled, action_size, make_env
from lrne.tasks.language import LanguageModel, load_tinyshakespeare
from lrne.tasks.lorenz import Lorenz

__all__ = [
    "Chunked",
    "Classification",
    "Function",
    "Gymnax",
    "LanguageModel",
    "Lorenz",
    "Task",
    "TaskWrapper",
    "Unrollable",
    "Unrolled",
    "action_size",
    "load_tinyshakespeare",
    "make_env",
    "member_keys",
]
