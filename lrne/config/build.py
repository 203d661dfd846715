"""A whole config (:class:`Config`): its four sections, checked together, and what they build."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lrne.config.io import DEFAULT, SECTIONS, as_toml, assignments_layer, flatten, merge, read_toml
from lrne.config.schema import ConfigError, library_error
from lrne.config.sections import MODELS, ModelSection, RunSection, StrategySection
from lrne.config.tasks import TASKS, TaskSection
from lrne.strategies import registry


class Built(NamedTuple):
    """What a config builds: the strategy, the task and its model (None for Lorenz)."""

    strategy: Any
    task: Any
    model: Any


@functools.lru_cache(maxsize=8)
def build_task(task: TaskSection, model: ModelSection | None, stamp: tuple) -> tuple[Any, Any]:
    """``task.build(model)``, cached: the same sections give the same objects, so
    :func:`lrne.run`'s compiled step is reused (a resumed or extended run in one
    process compiles once). ``stamp`` (:meth:`TaskSection.stamp`) is in the cache
    key only: a data file that changed builds anew.

    Raises:
        ConfigError: naming the key of an argument a library check rejected.
    """
    del stamp
    try:
        return task.build(model)
    except ConfigError:
        raise
    except ValueError as error:
        raise library_error(error, task, model) from None


@functools.lru_cache(maxsize=8)
def build_all(
    strategy: StrategySection, task: TaskSection, model: ModelSection | None, stamp: tuple
) -> Built:
    """The strategy, task and model of resolved sections, cached (see :func:`build_task`)."""
    built_task, module = build_task(task, model, stamp)
    return Built(task.wrap(strategy.build(built_task)), built_task, module)


@dataclass(frozen=True)
class Config:
    """A whole config: the four sections (``model`` is None for a task without one)."""

    run: RunSection
    strategy: StrategySection
    task: TaskSection
    model: ModelSection | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> Config:
        """Check and type a config given as nested dicts (a parsed TOML file)."""
        if not isinstance(data, Mapping):
            raise ConfigError("", f"a config is a TOML document of tables, got {data!r}")
        for name, value in data.items():
            if name not in SECTIONS:
                raise ConfigError(name, f"unknown section; sections: {', '.join(SECTIONS)}")
            if not isinstance(value, Mapping):
                raise ConfigError(name, f"must be a table [{name}], got {value!r}")
        if strict:
            missing = [s for s in SECTIONS[:3] if s not in data]
            if missing:
                raise ConfigError(missing[0], "missing section")
        run = RunSection.parse(data.get("run", {}), strict=strict)
        strategy = StrategySection.parse(data.get("strategy", {}), strict=strict)
        task_data = data.get("task", {})
        kind = task_data.get("kind", DEFAULT["task"]["kind"])
        what = f"task kind {kind!r}"
        task = _kind(TASKS, "task", kind).parse(task_data, strict=strict, what=what)
        return cls(run, strategy, task, _parse_model(task, data.get("model"), strict))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The config as nested dicts of TOML values (``None`` left out)."""
        out = {name: getattr(self, name).to_dict() for name in SECTIONS[:3]}
        if self.model is not None:
            out["model"] = self.model.to_dict()
        return out

    def to_toml(self) -> str:
        """The config as a TOML document that :meth:`from_dict` reads back equal."""
        return as_toml(self.to_dict())

    def shrink(self, keep: Container[str] = ()) -> Config:
        """The ``--quick`` config: small populations, episodes, models and few
        generations (each key's ``quick`` cap); keys in ``keep`` stay."""
        model = None if self.model is None else self.model.shrink(keep)
        sections = (self.run, self.strategy, self.task)
        return Config(*(s.shrink(keep) for s in sections), model)

    def resolve(self) -> Config:
        """The config with every strategy option set: the keys left out hold the
        registry's defaults (an online ES's ``truncation_length`` follows from its
        task's horizon, so the task is built). What a run writes to ``config.toml``.

        Raises:
            ConfigError: an online ES on a task it cannot unroll, a key the strategy
                does not take, or one a library check rejected.
        """
        horizon = None
        if self.strategy.name in registry.ONLINE:
            if not self.task.UNROLLABLE:
                unrollable = ", ".join(k for k, c in TASKS.items() if c.UNROLLABLE)
                raise ConfigError(
                    "strategy.name",
                    f"{self.strategy.name!r} is an online ES: it unrolls its task, which task "
                    f"kinds {unrollable} can do, not {self.task.kind!r}",
                )
            built_task, _ = build_task(self.task, self.model, self.task.stamp())
            horizon = built_task.horizon
        return dataclasses.replace(self, strategy=self.strategy.resolve(horizon))

    def build(self) -> Built:
        """The strategy, task and model; ConfigError names a key a library check rejected.

        The same sections, or sections that differ only in defaults written out,
        give the same (cached) objects.
        """
        config = self.resolve()
        return build_all(config.strategy, config.task, config.model, config.task.stamp())

    def get(self, key: str) -> Any:
        """The value of ``"section.key"`` (None where unset or absent)."""
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name, None)


def _kind(kinds: Mapping[str, type], section: str, kind: Any) -> Any:
    """The class of ``kind`` in ``kinds``; ConfigError for an unknown one."""
    if not isinstance(kind, str) or kind not in kinds:
        allowed = ", ".join(map(repr, kinds))
        raise ConfigError(f"{section}.kind", f"unknown value {kind!r}; allowed: {allowed}")
    return kinds[kind]


def _parse_model(task: TaskSection, data: Any, strict: bool) -> ModelSection | None:
    if not task.MODELS:
        if data is not None:
            raise ConfigError("model", f"task kind {task.kind!r} takes no model; remove [model]")
        return None
    if data is None:
        if strict:
            raise ConfigError("model", "missing section")
        data = {}
    default = task.DEFAULT_MODEL
    kind = data.get("kind", default["kind"])
    model_cls = _kind(MODELS, "model", kind)
    if kind not in task.MODELS:
        raise ConfigError(
            "model.kind",
            f"task kind {task.kind!r} takes model kind {' or '.join(map(repr, task.MODELS))}, "
            f"got {kind!r}",
        )
    if kind == default["kind"] and not strict:
        data = {**default, **data}  # the task's own model defaults under the file's keys
    return model_cls.parse(data, strict=strict, what=f"model kind {kind!r}")


def load(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    quick: bool = False,
) -> Config:
    """The config of ``path`` (default: :data:`~lrne.config.DEFAULT`) with ``--set``-style
    ``overrides`` (``"strategy.sigma=0.05"``), shrunk by ``quick`` (overrides stay).

    Example:
        >>> config = lrne.config.load("configs/cartpole_es_lowrank.toml", ["run.generations=5"])
        >>> strategy, task, model = config.build()
    """
    base = [DEFAULT] if path is None else [read_toml(path)]
    layer = assignments_layer(overrides)
    config = Config.from_dict(merge([*base, layer]))
    return config.shrink(keep=flatten(layer)) if quick else config
