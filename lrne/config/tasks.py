"""The ``[task]`` section: one kind per task of :mod:`lrne.tasks`, and what each builds.

A task key that is an argument of the task's class defaults to that argument's
default (:func:`library_default`): defaults are stated once, in the library.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import gymnax
from pydantic import Field

from lrne.config.schema import TINYSHAKESPEARE, ConfigError, FilePath, Quick, Section
from lrne.config.sections import ModelSection, ModelSpec
from lrne.tasks import Classification, Gymnax, LanguageModel, Lorenz
from lrne.tasks.classification import OBJECTIVES

GymnaxEnv = Literal[tuple(gymnax.registered_envs)]
Objective = Literal[OBJECTIVES]


def library_default(owner: Callable[..., Any], param: str) -> Any:
    """The default of argument ``param`` of ``owner`` (a class: of its constructor).

    A config key that is a library argument takes its default from the library,
    so the two cannot disagree.
    """
    return inspect.signature(owner).parameters[param].default


class TaskSection(Section):
    """``[task]``: base of the task kinds (:data:`TASKS`); a kind builds its task and model."""

    SECTION: ClassVar[str] = "task"
    MODELS: ClassVar[tuple[str, ...]] = ()  # allowed model kinds; () = no model
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {}
    UNROLLABLE: ClassVar[bool] = False  # an online ES can unroll it
    kind: str = "gymnax"

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        """``(task, model module or None)``."""
        raise NotImplementedError

    def stamp(self) -> tuple:
        """What besides the config identifies the built task (a data file's state)."""
        return ()

    def arguments(self, *names: str) -> dict[str, Any]:
        """The keys ``names`` as keyword arguments of the task's class."""
        return {name: getattr(self, name) for name in names}

    def wrap(self, strategy: Any) -> Any:
        """The strategy the task is run with, from the one ``[strategy]`` builds: itself."""
        return strategy


class _RolloutTask(TaskSection):
    """Shared keys of the gymnax kinds (:class:`lrne.tasks.Gymnax`)."""

    MODELS: ClassVar[tuple[str, ...]] = ("mlp", "minatar_cnn")
    UNROLLABLE: ClassVar[bool] = True
    num_episodes: Annotated[int, Quick(1)] = Field(library_default(Gymnax, "num_episodes"), ge=1)
    max_steps: Annotated[int | None, Quick(20, fill=True)] = Field(
        library_default(Gymnax, "max_steps"), ge=1
    )
    early_exit: bool = library_default(Gymnax, "early_exit")
    # 0 = off (Gymnax's compaction=None)
    compaction: float = Field(library_default(Gymnax, "compaction"), ge=0, lt=1)
    # Running mean/variance of the observations (lrne.normalized): the policy sees
    # clip((obs - mean) / std, -5, 5), the statistics saved with the run.
    normalize_observations: bool = False

    def make_env(self) -> tuple[Any, Any]:
        """``(env, env_params)``."""
        raise NotImplementedError

    def wrap(self, strategy: Any) -> Any:
        """With ``normalize_observations``: the strategy under :func:`lrne.normalized`."""
        from lrne.normalization import normalized

        return normalized(strategy) if self.normalize_observations else strategy

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        from lrne.tasks import action_size

        env, env_params = self.make_env()
        shape = tuple(env.observation_space(env_params).shape)
        module = model.build(ModelSpec(action_size(env, env_params), shape))
        task = Gymnax(
            env,
            module,
            compaction=self.compaction or None,  # 0 = off
            env_params=env_params,
            **self.arguments("num_episodes", "max_steps", "early_exit"),
        )
        return task, module


class GymnaxTask(_RolloutTask):
    """``kind = "gymnax"``: a gymnax environment by id (``gymnax.registered_envs``)."""

    ARGUMENTS: ClassVar[dict[str, str]] = {"env_id": "env"}
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {"kind": "mlp"}
    kind: Literal["gymnax"] = "gymnax"
    env: GymnaxEnv = "CartPole-v1"

    def make_env(self) -> tuple[Any, Any]:
        from lrne.tasks import make_env

        return make_env(self.env)


class PixelPendulumTask(_RolloutTask):
    """``kind = "pixel_pendulum"``: Pendulum-v1 seen as (size, size, frames) images
    (:func:`lrne.wrappers.pixel_pendulum`)."""

    MODELS: ClassVar[tuple[str, ...]] = ("minatar_cnn", "mlp")
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {
        "kind": "minatar_cnn",
        "strides": [2, 2],
        "hidden": 64,
    }
    kind: Literal["pixel_pendulum"] = "pixel_pendulum"
    size: Annotated[int, Quick(8)] = Field(32, ge=4)
    frames: int = Field(2, ge=1)

    def make_env(self) -> tuple[Any, Any]:
        from lrne.wrappers import pixel_pendulum

        env = pixel_pendulum(self.size, self.frames)
        return env, env.default_params


class LanguageModelTask(TaskSection):
    """``kind = "language_model"``: :class:`lrne.tasks.LanguageModel` on a text file.

    ``text``: a path (relative to the current directory) or ``"tinyshakespeare"``
    (:func:`lrne.tasks.load_tinyshakespeare`: a cached, md5-checked download).
    """

    MODELS: ClassVar[tuple[str, ...]] = ("transformer",)
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {"kind": "transformer"}
    ARGUMENTS: ClassVar[dict[str, str]] = {"seed": "batch_seed"}
    kind: Literal["language_model"] = "language_model"
    text: FilePath = TINYSHAKESPEARE
    context: Annotated[int, Quick(8)] = Field(library_default(LanguageModel, "context"), ge=1)
    batch_size: Annotated[int, Quick(2)] = Field(library_default(LanguageModel, "batch_size"), ge=1)
    fresh_batches: bool = library_default(LanguageModel, "fresh_batches")
    eval_fraction: float = Field(library_default(LanguageModel, "eval_fraction"), gt=0, lt=1)
    eval_tokens: Annotated[int, Quick(64)] = Field(
        library_default(LanguageModel, "eval_tokens"), ge=1
    )
    batch_seed: int = Field(library_default(LanguageModel, "seed"), ge=0)

    def check(self) -> None:
        if self.text != TINYSHAKESPEARE and not Path(self.text).is_file():
            raise ConfigError(
                "task.text",
                f"no such file {self.text!r} (give a path relative to the current directory, "
                f"or {TINYSHAKESPEARE!r} for the downloaded corpus)",
            )

    def stamp(self) -> tuple:
        if self.text == TINYSHAKESPEARE:
            return ()
        stat = Path(self.text).stat()
        return (stat.st_mtime_ns, stat.st_size)

    def read_text(self) -> str:
        """The corpus."""
        from lrne.tasks import load_tinyshakespeare

        try:
            if self.text == TINYSHAKESPEARE:
                return load_tinyshakespeare()
            return Path(self.text).read_text(encoding="utf-8")
        except (OSError, ValueError) as error:
            raise ConfigError("task.text", str(error).splitlines()[0]) from None

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        text = self.read_text()
        module = model.build(ModelSpec(len(LanguageModel.vocabulary(text)), (self.context,)))
        keys = ("context", "batch_size", "eval_fraction", "fresh_batches", "eval_tokens")
        task = LanguageModel(module, text, seed=self.batch_seed, **self.arguments(*keys))
        return task, module


class LorenzTask(TaskSection):
    """``kind = "lorenz"``: :class:`lrne.tasks.Lorenz`, fit (log a, log r); no model."""

    UNROLLABLE: ClassVar[bool] = True
    kind: Literal["lorenz"] = "lorenz"
    horizon: Annotated[int, Quick(40)] = Field(library_default(Lorenz, "horizon"), ge=1)
    dt: float = Field(library_default(Lorenz, "dt"), gt=0)

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        return Lorenz(horizon=self.horizon, dt=self.dt), None


class ClassificationTask(TaskSection):
    """``kind = "classification"``: :class:`lrne.tasks.Classification` on 8×8 digits
    (``sklearn.datasets.load_digits``, pixels / 16), split at random into train and test."""

    MODELS: ClassVar[tuple[str, ...]] = ("mlp",)
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {"kind": "mlp", "hidden": [32], "rank": 0}
    kind: Literal["classification"] = "classification"
    dataset: Literal["digits"] = "digits"
    objective: Objective = library_default(Classification, "objective")
    ensemble_size: int = Field(library_default(Classification, "ensemble_size"), ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, ge=0)

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        import numpy as np

        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ConfigError(
                "task.dataset", "'digits' needs scikit-learn: pip install scikit-learn"
            ) from None
        digits = load_digits()
        inputs = (digits.data / 16.0).astype(np.float32)
        labels = digits.target.astype(np.int32)
        order = np.random.default_rng(self.split_seed).permutation(len(labels))
        test = order[: round(len(labels) * self.test_fraction)]
        train = order[len(test) :]
        module = model.build(ModelSpec(10, inputs.shape[1:]))
        task = Classification(
            module,
            inputs[train],
            labels[train],
            inputs[test],
            labels[test],
            objective=self.objective,
            ensemble_size=self.ensemble_size,
        )
        return task, module


TASKS: dict[str, type[TaskSection]] = {
    "gymnax": GymnaxTask,
    "pixel_pendulum": PixelPendulumTask,
    "language_model": LanguageModelTask,
    "lorenz": LorenzTask,
    "classification": ClassificationTask,
}
"""Task kinds by name."""
