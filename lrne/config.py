"""Run configs: a typed schema of four TOML sections, read with ``tomllib``.

``lrne train --config FILE.toml`` runs any registry strategy on any task. A
config has four sections; every key has a default, so a file holds only what
it changes::

    [run]        # seed, generations, seconds, checkpoint_every, output, eval_episodes
    seed = 0
    generations = 100

    [strategy]   # name: a key of lrne.strategies.REGISTRY; then its overrides
    name = "es_lowrank"
    population_size = 256
    sigma = 0.05

    [task]       # kind: gymnax | pixel_pendulum | language_model | lorenz | classification
    kind = "gymnax"
    env = "CartPole-v1"

    [model]      # kind: mlp | minatar_cnn | transformer (lorenz has no model)
    kind = "mlp"
    hidden = [64, 64]
    rank = 4

Each section is a frozen dataclass whose fields are the allowed keys, with
their type, range and choices in the field's metadata (:func:`setting`); the
task and model sections have one dataclass per ``kind`` (:data:`TASKS`,
:data:`MODELS`). Strategy overrides left out keep the registry's defaults
(:func:`lrne.strategies.registry.defaults`); an override a strategy does not
take (``num_elites`` for ES) is an error. Online ES
(:data:`lrne.strategies.registry.ONLINE`) get ``horizon=task.horizon``. A task
key that is an argument of the task's class defaults to that argument's
default (:func:`library_default`): defaults are stated once, in the library.
:meth:`Config.resolve` fills in every default, so the ``config.toml`` a run
writes holds every value the run used and reruns it bit for bit.

Relative paths (``run.output``, ``task.text``) are relative to the current
directory; the config a run writes (``config.toml`` in its directory, itself a
valid config) holds them resolved. ``task.text = "tinyshakespeare"`` reads
the corpus through :func:`lrne.tasks.load_tinyshakespeare` (cached download).

Every bad value raises :class:`ConfigError` naming the key and what is
allowed, before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

from lrne.strategies import registry
from lrne.tasks import Classification, Gymnax, LanguageModel, Lorenz
from lrne.tasks.classification import OBJECTIVES

if TYPE_CHECKING:
    import jax

SECTIONS = ("run", "strategy", "task", "model")
# A section whose discriminator changes (in a later layer) starts afresh from its defaults.
DISCRIMINATORS = {"strategy": "name", "task": "kind", "model": "kind"}
OPTIMIZERS = registry.OPTIMIZERS
ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "sigmoid")
TINYSHAKESPEARE = "tinyshakespeare"

DEFAULT: dict[str, dict[str, Any]] = {
    "run": {},
    "strategy": {"name": "ga"},
    "task": {"kind": "gymnax"},
    "model": {"kind": "mlp"},
}
"""What ``lrne train`` runs without ``--config`` (``configs/cartpole_ga.toml``): every key
at its default, the factorized GA (the registry's ``ga``) on CartPole-v1, ~10 s on 2 cores.
It names only the kinds, so that a later layer that changes one drops the others' keys."""


def library_default(owner: Callable[..., Any], param: str) -> Any:
    """The default of argument ``param`` of ``owner`` (a class: of its constructor).

    A config key that is a library argument takes its default from the library,
    so the two cannot disagree.
    """
    return inspect.signature(owner).parameters[param].default


class ConfigError(ValueError):
    """A bad config value; ``key`` (``"strategy.sigma"``) names it, or is ``""``."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


def setting(
    default: Any,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
    quick: int | None = None,
    fill: bool = False,
    path: bool = False,
) -> Any:
    """A schema field: its default and checks, kept in the dataclass field's metadata.

    Args:
        default: the value when the key is left out (``None``: not passed on,
            the library's own default applies).
        at_least: the smallest allowed value (each element of a list).
        above: values must exceed this.
        at_most: the largest allowed value.
        below: values must be less than this.
        choices: the allowed strings, or a function returning them.
        quick: ``--quick`` caps the value (each element of a list) at this.
        fill: ``--quick`` also sets a ``None`` value to ``quick``.
        path: a filesystem path, resolved against the current directory.
    """
    meta = dict(
        at_least=at_least,
        above=above,
        at_most=at_most,
        below=below,
        choices=choices,
        quick=quick,
        fill=fill,
        path=path,
    )
    return field(
        default=default,
        metadata={k: v for k, v in meta.items() if v is not None and v is not False},
    )


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        (item, *rest) = typing.get_args(hint)
        count = "" if rest == [Ellipsis] else f"{len(typing.get_args(hint))} "
        return f"a list of {count}{_type_name(item).removeprefix('an ').removeprefix('a ')}s"
    return {int: "an int", float: "a number", bool: "true or false", str: "a string"}[hint]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as the field's type (lists become tuples, ints floats), or ConfigError."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = (a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        fixed = args[-1] is not Ellipsis
        if not isinstance(value, list | tuple) or (fixed and len(value) != len(args)):
            example = "[2, 2]" if fixed else "[64, 64]" if args[0] is int else '["LayerNorm"]'
            raise ConfigError(key, f"must be {_type_name(hint)}, e.g. {example}; got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[hint]
    if not ok:
        raise ConfigError(key, f"must be {_type_name(hint)}, got {value!r}")
    return float(value) if hint is float else value


def _check(value: Any, meta: Mapping[str, Any], hint: Any, key: str) -> None:
    items = value if isinstance(value, tuple) else (value,)
    kind = "an int" if "int" in str(hint) else "a number"
    if isinstance(value, tuple):
        kind = f"a list of {kind.split()[-1]}s"
    bounds = (
        ("at_least", ">=", lambda v, b: v >= b),
        ("above", ">", lambda v, b: v > b),
        ("at_most", "<=", lambda v, b: v <= b),
        ("below", "<", lambda v, b: v < b),
    )
    limits = [(meta[name], sign, test) for name, sign, test in bounds if name in meta]
    for v in items:
        if isinstance(v, int | float) and not all(test(v, b) for b, _, test in limits):
            wanted = " and ".join(f"{sign} {b:g}" for b, sign, _ in limits)
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(key, f"must be {kind} {wanted}, got {shown!r}")
    if "choices" in meta:
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        if value not in choices:
            raise ConfigError(
                key, f"unknown value {value!r}; allowed: {', '.join(map(repr, choices))}"
            )


@dataclass(frozen=True)
class Section:
    """Base of a config section: its fields are the allowed keys."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> list[str]:
        """The allowed keys, in order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, strict: bool = False, what: str = "") -> Self:
        """The section from a TOML table; ConfigError for unknown keys and bad values.

        With ``strict`` (a run directory's saved config), every key whose
        default is not ``None`` must be present.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(cls.SECTION, f"must be a table ([{cls.SECTION}]), got {data!r}")
        unknown = [k for k in data if k not in cls.keys()]
        if unknown:
            owner = what or f"[{cls.SECTION}]"
            raise ConfigError(
                f"{cls.SECTION}.{unknown[0]}",
                f"unknown key for {owner}; allowed: {', '.join(cls.keys())}",
            )
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            key = f"{cls.SECTION}.{f.name}"
            if f.name not in data:
                if strict and f.default is not None:
                    raise ConfigError(key, "missing")
                if not f.metadata.get("path"):
                    continue
                value = f.default  # a default path is resolved as a given one is
            else:
                value = _coerce(data[f.name], hints[f.name], key)
            if f.metadata.get("path") and value != TINYSHAKESPEARE:
                value = str(Path(value).expanduser().resolve())
            _check(value, f.metadata, hints[f.name], key)
            values[f.name] = value
        section = cls(**values)
        section.validate()
        return section

    def validate(self) -> None:
        """Checks across keys of the section (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        """The set keys as TOML values (``None`` left out); a kind's own keys first."""
        own = inspect.get_annotations(type(self))
        fields = sorted(
            dataclasses.fields(self), key=lambda f: (f.name != "kind", f.name not in own)
        )
        out = {}
        for f in fields:
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def shrink(self, keep: Container[str] = ()) -> Self:
        """The ``--quick`` version: values capped by their ``quick`` setting, but
        the keys in ``keep`` (``"strategy.population_size"``) stay as they are."""
        changes = {}
        for f in dataclasses.fields(self):
            cap, value = f.metadata.get("quick"), getattr(self, f.name)
            if cap is None or f"{self.SECTION}.{f.name}" in keep:
                continue
            if value is None:
                if f.metadata.get("fill"):
                    changes[f.name] = cap
            elif isinstance(value, tuple):
                changes[f.name] = tuple(min(v, cap) for v in value)
            else:
                changes[f.name] = min(value, cap)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class RunSection(Section):
    """``[run]``: how long, how often to checkpoint, where to write."""

    SECTION: ClassVar[str] = "run"
    seed: int = setting(0, at_least=0)
    generations: int = setting(20, at_least=1, quick=2)
    seconds: float | None = setting(None, at_least=0)  # wall-clock limit; 0 = none
    checkpoint_every: int = setting(10, at_least=0)
    output: str = setting("runs/train", path=True)
    eval_episodes: int = setting(32, at_least=1, quick=2)


def _strategy_names() -> list[str]:
    return sorted(registry.REGISTRY)


@dataclass(frozen=True)
class StrategySection(Section):
    """``[strategy]``: a registry name, the population size and overrides of its defaults.

    Overrides left out (``None``) keep the registry entry's defaults
    (:func:`lrne.strategies.registry.defaults`; :meth:`resolve` writes them in).
    ``optimizer`` names an optax optimizer built with ``learning_rate``
    (``learning_rate`` alone: the strategy's default optimizer); ``decay_steps``
    makes the learning rate a cosine decay to a tenth of itself over that many
    updates (then constant).
    """

    SECTION: ClassVar[str] = "strategy"
    name: str = setting("ga", choices=_strategy_names)
    population_size: int = setting(256, at_least=1, quick=8)
    sigma: float | None = setting(None, above=0)
    num_elites: int | None = setting(None, at_least=1, quick=2)
    noise_rank: int | None = setting(None, at_least=0)
    density: float | None = setting(None, above=0, at_most=1)
    mask: str | None = setting(None, choices=("dynamic", "static"))
    freeze: tuple[str, ...] | None = None
    antithetic: bool | None = None
    beta: float | None = setting(None, above=0)
    optimizer: str | None = setting(None, choices=OPTIMIZERS)
    learning_rate: float | None = setting(None, above=0)
    decay_steps: int | None = setting(None, at_least=1)
    truncation_length: int | None = setting(None, at_least=1, quick=5)
    dense_noise: tuple[str, ...] | None = None

    def validate(self) -> None:
        if self.optimizer is not None and self.learning_rate is None:
            raise ConfigError("strategy.learning_rate", "required with strategy.optimizer")
        if self.decay_steps is not None and self.learning_rate is None:
            raise ConfigError("strategy.learning_rate", "required with strategy.decay_steps")

    def options(self) -> list[str]:
        """The keys (past ``name`` and ``population_size``) the strategy takes.

        Raises:
            ConfigError: the section sets a key the strategy does not take.
        """
        takes = set(registry.options(self.name))
        if "optimizer" in takes:
            takes.add("decay_steps")
        options = [k for k in self.keys()[2:] if k in takes]
        for key in self.to_dict():
            if key not in ("name", "population_size", *options):
                raise ConfigError(
                    f"strategy.{key}",
                    f"not an option of strategy {self.name!r}; its options: {', '.join(options)}",
                )
        return options

    def resolve(self, horizon: int | None = None) -> StrategySection:
        """The section with every option the strategy takes set: the keys left out
        get the registry's defaults (``horizon``: an online ES's task's).

        Raises:
            ConfigError: a key the strategy does not take.
        """
        options = self.options()
        given = self.to_dict()
        library = registry.defaults(self.name, self.population_size, horizon)
        filled = {k: v for k, v in library.items() if k in options and k not in given}
        filled = {k: list(v) if isinstance(v, tuple) else v for k, v in filled.items()}
        return type(self).parse({**given, **filled})

    def overrides(self) -> dict[str, Any]:
        """The keyword arguments of :func:`lrne.strategies.registry.make` the section sets."""
        import optax

        kw = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
            and f.name not in ("name", "population_size", "decay_steps")
        }
        if self.decay_steps is not None:
            rate = optax.cosine_decay_schedule(self.learning_rate, self.decay_steps, alpha=0.1)
            kw["learning_rate"] = rate
        return kw

    def build(self, task: Any) -> Any:
        """The strategy, for ``task`` (its ``horizon`` for an online ES)."""
        self.options()  # names a key the strategy does not take
        kw = self.overrides()
        if self.name in registry.ONLINE:
            horizon = getattr(task, "horizon", None)
            if horizon is None:
                unrollable = ", ".join(k for k, c in TASKS.items() if c.UNROLLABLE)
                raise ConfigError(
                    "strategy.name",
                    f"{self.name!r} is an online ES: it unrolls its task, which task kinds "
                    f"{unrollable} can do, not {type(task).__name__}",
                )
            kw["horizon"] = horizon
        try:
            return registry.make(self.name, self.population_size, **kw)
        except ValueError as error:
            raise ConfigError(self._key_in(str(error)), str(error)) from None

    def _key_in(self, message: str) -> str:
        first = re.match(r"\w+", message)
        word = first.group() if first else ""
        return f"strategy.{word}" if word in self.keys() else "strategy"


class ModelSpec(NamedTuple):
    """What a task needs of its model: outputs per input, and one input's shape."""

    num_outputs: int
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSection(Section):
    """``[model]``: base of the model kinds (:data:`MODELS`)."""

    SECTION: ClassVar[str] = "model"
    kind: str = setting("mlp", choices=lambda: tuple(MODELS))

    def build(self, spec: ModelSpec) -> Any:
        """The flax module for a task's ``spec``."""
        raise NotImplementedError


@dataclass(frozen=True)
class MLPModel(ModelSection):
    """``kind = "mlp"``: :class:`lrne.nn.MLP`; an input is the observation's axes, flattened."""

    kind: str = setting("mlp", choices=lambda: tuple(MODELS))
    hidden: tuple[int, ...] = setting((64, 64), at_least=1, quick=8)
    rank: int = setting(4, at_least=0)
    activation: str = setting("tanh", choices=ACTIVATIONS)

    def build(self, spec: ModelSpec) -> Any:
        from flax import linen as nn

        from lrne.nn import MLP

        activation = getattr(nn, self.activation)
        return MLP(self.hidden, spec.num_outputs, self.rank, activation, len(spec.input_shape))


@dataclass(frozen=True)
class MinAtarCNNModel(ModelSection):
    """``kind = "minatar_cnn"``: :class:`lrne.nn.MinAtarCNN` on (H, W, C) images."""

    kind: str = setting("minatar_cnn", choices=lambda: tuple(MODELS))
    rank: int = setting(4, at_least=0)
    channels: int = setting(16, at_least=1, quick=4)
    hidden: int = setting(128, at_least=1, quick=8)
    strides: tuple[int, int] = setting((1, 1), at_least=1)

    def build(self, spec: ModelSpec) -> Any:
        from lrne.nn import MinAtarCNN

        if len(spec.input_shape) != 3:
            raise ConfigError(
                "model.kind",
                f"minatar_cnn takes (H, W, C) images; the task's inputs have shape "
                f"{spec.input_shape} (use kind = 'mlp')",
            )
        return MinAtarCNN(spec.num_outputs, self.rank, self.channels, self.hidden, self.strides)


def _presets() -> tuple[str, ...]:
    from lrne.nn.transformer import PRESETS

    return tuple(PRESETS)


@dataclass(frozen=True)
class TransformerModel(ModelSection):
    """``kind = "transformer"``: :meth:`lrne.nn.Transformer.preset` and overrides of it."""

    kind: str = setting("transformer", choices=lambda: tuple(MODELS))
    preset: str = setting("factorized", choices=_presets)
    hidden: int | None = setting(None, at_least=1, quick=8, fill=True)
    num_heads: int | None = setting(None, at_least=1, quick=2, fill=True)
    ff: int | None = setting(None, at_least=1, quick=16, fill=True)
    num_blocks: int | None = setting(None, at_least=1, quick=1, fill=True)
    qkv_rank: int | None = setting(None, at_least=0)
    o_rank: int | None = setting(None, at_least=0)
    ff_rank: int | None = setting(None, at_least=0)
    embed_rank: int | None = setting(None, at_least=0)

    def build(self, spec: ModelSpec) -> Any:
        from lrne.nn import Transformer

        overrides = {k: v for k, v in self.to_dict().items() if k not in ("kind", "preset")}
        return Transformer.preset(self.preset, spec.num_outputs, **overrides)


MODELS: dict[str, type[ModelSection]] = {
    "mlp": MLPModel,
    "minatar_cnn": MinAtarCNNModel,
    "transformer": TransformerModel,
}
"""Model kinds by name."""


@dataclass(frozen=True)
class TaskSection(Section):
    """``[task]``: base of the task kinds (:data:`TASKS`).

    A kind builds its task (and model), and says what a fresh score means,
    how to draw a policy playing and whether it writes text.
    """

    SECTION: ClassVar[str] = "task"
    MODELS: ClassVar[tuple[str, ...]] = ()  # allowed model kinds; () = no model
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {}
    UNROLLABLE: ClassVar[bool] = False
    kind: str = setting("gymnax", choices=lambda: tuple(TASKS))

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        """``(task, model module or None)``."""
        raise NotImplementedError

    def stamp(self) -> tuple:
        """What besides the config identifies the built task (a data file's state)."""
        return ()

    def describe(self, fitness: float, episodes: int) -> str:
        """Words for a :func:`lrne.evaluate_best` value of this task."""
        return f"fresh fitness {fitness:.6g}"

    def render(self, task: Any, params: Any, key: jax.Array, path: Path, max_steps: int) -> int:
        """Write a GIF of ``params`` acting; returns the frames written."""
        raise ConfigError("", f"task kind {self.kind!r} has nothing to render")

    def sample(
        self,
        task: Any,
        params: Any,
        prompt: str,
        length: int,
        key: jax.Array,
        temperature: float = 1.0,
    ) -> str:
        """Text written by ``params`` after ``prompt``."""
        raise ConfigError("", f"task kind {self.kind!r} is not a language model: nothing to sample")


@dataclass(frozen=True)
class _RolloutTask(TaskSection):
    """Shared keys of the gymnax kinds (:class:`lrne.tasks.Gymnax`)."""

    MODELS: ClassVar[tuple[str, ...]] = ("mlp", "minatar_cnn")
    UNROLLABLE: ClassVar[bool] = True
    num_episodes: int = setting(library_default(Gymnax, "num_episodes"), at_least=1, quick=1)
    max_steps: int | None = setting(
        library_default(Gymnax, "max_steps"), at_least=1, quick=20, fill=True
    )
    early_exit: bool = library_default(Gymnax, "early_exit")
    # 0 = off (Gymnax's compaction=None)
    compaction: float = setting(library_default(Gymnax, "compaction"), at_least=0, below=1)

    def make_env(self) -> tuple[Any, Any]:
        """``(env, env_params)``."""
        raise NotImplementedError

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        from lrne.tasks import Gymnax, action_size

        env, env_params = self.make_env()
        shape = tuple(env.observation_space(env_params).shape)
        module = model.build(ModelSpec(action_size(env, env_params), shape))
        task = Gymnax(
            env,
            module,
            num_episodes=self.num_episodes,
            max_steps=self.max_steps,
            early_exit=self.early_exit,
            compaction=self.compaction or None,  # 0 = off
            env_params=env_params,
        )
        return task, module

    def describe(self, fitness: float, episodes: int) -> str:
        return f"mean return {fitness:.6g} over {episodes} fresh episodes"

    def render(self, task: Any, params: Any, key: jax.Array, path: Path, max_steps: int) -> int:
        from lrne.saved import rollout

        episode = rollout(task, params, key, max_steps)
        self.draw(task, episode, path)
        return len(episode.states)

    def draw(self, task: Any, episode: Any, path: Path) -> None:
        """Write ``episode`` (a :class:`lrne.saved.Episode`) as a GIF."""
        raise NotImplementedError


def _gymnax_envs() -> tuple[str, ...]:
    import gymnax

    return tuple(gymnax.registered_envs)


@dataclass(frozen=True)
class GymnaxTask(_RolloutTask):
    """``kind = "gymnax"``: a gymnax environment by id (``gymnax.registered_envs``)."""

    kind: str = setting("gymnax", choices=lambda: tuple(TASKS))
    env: str = setting("CartPole-v1", choices=_gymnax_envs)
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {"kind": "mlp"}

    def make_env(self) -> tuple[Any, Any]:
        from lrne.tasks import make_env

        return make_env(self.env)

    def draw(self, task: Any, episode: Any, path: Path) -> None:
        from lrne.saved import draw_with_gymnax

        draw_with_gymnax(task.env, task.env_params, episode, path)


@dataclass(frozen=True)
class PixelPendulumTask(_RolloutTask):
    """``kind = "pixel_pendulum"``: Pendulum-v1 seen as (size, size, frames) images
    (:func:`lrne.wrappers.pixel_pendulum`)."""

    kind: str = setting("pixel_pendulum", choices=lambda: tuple(TASKS))
    size: int = setting(32, at_least=4, quick=8)
    frames: int = setting(2, at_least=1)
    MODELS: ClassVar[tuple[str, ...]] = ("minatar_cnn", "mlp")
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {
        "kind": "minatar_cnn",
        "strides": [2, 2],
        "hidden": 64,
    }

    def make_env(self) -> tuple[Any, Any]:
        from lrne.wrappers import pixel_pendulum

        env = pixel_pendulum(self.size, self.frames)
        return env, env.default_params

    def draw(self, task: Any, episode: Any, path: Path) -> None:
        from lrne.saved import write_gif

        write_gif([obs[..., -1] for obs in episode.observations], path, fps=20)


@dataclass(frozen=True)
class LanguageModelTask(TaskSection):
    """``kind = "language_model"``: :class:`lrne.tasks.LanguageModel` on a text file.

    ``text``: a path (relative to the current directory) or ``"tinyshakespeare"``
    (:func:`lrne.tasks.load_tinyshakespeare`: a cached, md5-checked download).
    """

    kind: str = setting("language_model", choices=lambda: tuple(TASKS))
    text: str = setting(TINYSHAKESPEARE, path=True)
    context: int = setting(library_default(LanguageModel, "context"), at_least=1, quick=8)
    batch_size: int = setting(library_default(LanguageModel, "batch_size"), at_least=1, quick=2)
    fresh_batches: bool = library_default(LanguageModel, "fresh_batches")
    eval_fraction: float = setting(
        library_default(LanguageModel, "eval_fraction"), above=0, below=1
    )
    eval_tokens: int = setting(library_default(LanguageModel, "eval_tokens"), at_least=1, quick=64)
    batch_seed: int = setting(library_default(LanguageModel, "seed"), at_least=0)
    MODELS: ClassVar[tuple[str, ...]] = ("transformer",)
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {"kind": "transformer"}

    def validate(self) -> None:
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
        from lrne.tasks import LanguageModel

        text = self.read_text()
        module = model.build(ModelSpec(len(LanguageModel.vocabulary(text)), (self.context,)))
        task = LanguageModel(
            module,
            text,
            context=self.context,
            batch_size=self.batch_size,
            seed=self.batch_seed,
            eval_fraction=self.eval_fraction,
            fresh_batches=self.fresh_batches,
            eval_tokens=self.eval_tokens,
        )
        return task, module

    def describe(self, fitness: float, episodes: int) -> str:
        return f"held-out loss {-fitness:.4f} nats/char"

    def sample(
        self,
        task: Any,
        params: Any,
        prompt: str,
        length: int,
        key: jax.Array,
        temperature: float = 1.0,
    ) -> str:
        try:
            return task.sample(params, prompt, length, key, temperature)
        except ValueError as error:
            raise ConfigError("--prompt", str(error)) from None


@dataclass(frozen=True)
class LorenzTask(TaskSection):
    """``kind = "lorenz"``: :class:`lrne.tasks.Lorenz`, fit (log a, log r); no model."""

    kind: str = setting("lorenz", choices=lambda: tuple(TASKS))
    horizon: int = setting(library_default(Lorenz, "horizon"), at_least=1, quick=40)
    dt: float = setting(library_default(Lorenz, "dt"), above=0)
    UNROLLABLE: ClassVar[bool] = True

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        from lrne.tasks import Lorenz

        return Lorenz(horizon=self.horizon, dt=self.dt), None

    def describe(self, fitness: float, episodes: int) -> str:
        return f"loss {-fitness:.6g} (mean (z - z*)^2 over the horizon)"


@dataclass(frozen=True)
class ClassificationTask(TaskSection):
    """``kind = "classification"``: :class:`lrne.tasks.Classification` on 8×8 digits
    (``sklearn.datasets.load_digits``, pixels / 16), split at random into train and test."""

    kind: str = setting("classification", choices=lambda: tuple(TASKS))
    dataset: str = setting("digits", choices=("digits",))
    objective: str = setting(library_default(Classification, "objective"), choices=OBJECTIVES)
    ensemble_size: int = setting(library_default(Classification, "ensemble_size"), at_least=1)
    test_fraction: float = setting(0.2, above=0, below=1)
    split_seed: int = setting(0, at_least=0)
    MODELS: ClassVar[tuple[str, ...]] = ("mlp",)
    DEFAULT_MODEL: ClassVar[dict[str, Any]] = {"kind": "mlp", "hidden": [32], "rank": 0}

    def build(self, model: ModelSection | None) -> tuple[Any, Any]:
        import numpy as np

        from lrne.tasks import Classification

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

    def describe(self, fitness: float, episodes: int) -> str:
        return f"{self.objective} {fitness:.4f} on the test split"


TASKS: dict[str, type[TaskSection]] = {
    "gymnax": GymnaxTask,
    "pixel_pendulum": PixelPendulumTask,
    "language_model": LanguageModelTask,
    "lorenz": LorenzTask,
    "classification": ClassificationTask,
}
"""Task kinds by name."""


class Built(NamedTuple):
    """What a config builds: the strategy, the task and its model (None for Lorenz)."""

    strategy: Any
    task: Any
    model: Any


@functools.lru_cache(maxsize=8)
def _build_task(task: TaskSection, model: ModelSection | None, stamp: tuple) -> tuple[Any, Any]:
    # Cached: the same sections give the same objects, so lrne.run's compiled
    # step is reused (a resumed or extended run in one process compiles once).
    del stamp  # in the cache key only: a data file that changed builds anew
    try:
        return task.build(model)
    except ConfigError:
        raise
    except ValueError as error:
        # The library's construction errors start with the argument they name.
        message = str(error).splitlines()[0]
        word = (re.match(r"\w+", message) or re.match("", "")).group()
        key = {"policy": "model", "model": "model"}.get(word, "task")
        raise ConfigError(f"task.{word}" if word in task.keys() else key, message) from None


@functools.lru_cache(maxsize=8)
def _build(
    strategy: StrategySection, task: TaskSection, model: ModelSection | None, stamp: tuple
) -> Built:
    built_task, module = _build_task(task, model, stamp)
    return Built(strategy.build(built_task), built_task, module)


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
        kind = task_data.get("kind", TaskSection.kind) if isinstance(task_data, Mapping) else None
        _check(kind, {"choices": tuple(TASKS)}, str, "task.kind")
        task_cls = TASKS[kind]
        task = task_cls.parse(task_data, strict=strict, what=f"task kind {kind!r}")
        return cls(run, strategy, task, _parse_model(task_cls, data.get("model"), strict))

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
            ConfigError: a key the strategy does not take, or one a library check rejected.
        """
        horizon = None
        if self.strategy.name in registry.ONLINE:
            built_task, _ = _build_task(self.task, self.model, self.task.stamp())
            horizon = getattr(built_task, "horizon", None)
        return dataclasses.replace(self, strategy=self.strategy.resolve(horizon))

    def build(self) -> Built:
        """The strategy, task and model; ConfigError names a key a library check rejected.

        The same sections, or sections that differ only in defaults written out,
        give the same (cached) objects.
        """
        config = self.resolve()
        return _build(config.strategy, config.task, config.model, config.task.stamp())

    def get(self, key: str) -> Any:
        """The value of ``"section.key"`` (None where unset or absent)."""
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name, None)


def _parse_model(task_cls: type[TaskSection], data: Any, strict: bool) -> ModelSection | None:
    kind_name = task_cls.kind
    if not task_cls.MODELS:
        if data is not None:
            raise ConfigError("model", f"task kind {kind_name!r} takes no model; remove [model]")
        return None
    if data is None:
        if strict:
            raise ConfigError("model", "missing section")
        data = {}
    default = task_cls.DEFAULT_MODEL
    kind = data.get("kind", default["kind"])
    _check(kind, {"choices": tuple(MODELS)}, str, "model.kind")
    if kind not in task_cls.MODELS:
        raise ConfigError(
            "model.kind",
            f"task kind {kind_name!r} takes model kind {' or '.join(map(repr, task_cls.MODELS))}, "
            f"got {kind!r}",
        )
    if kind == default["kind"] and not strict:
        data = {**default, **data}  # the task's own model defaults under the file's keys
    return MODELS[kind].parse(data, strict=strict, what=f"model kind {kind!r}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value).replace("infinity", "inf")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as dicts; ConfigError (key ``""``) names the file and the problem."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError("", f"cannot read {str(path)!r}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError("", f"{str(path)!r} is not valid TOML: {error}") from None


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``"strategy.sigma=0.05"`` -> ``("strategy", "sigma", 0.05)``.

    The value is read as a TOML value (``0.05``, ``true``, ``[64, 64]``,
    ``"text"``); what is not one (``CartPole-v1``, ``runs/x``) is a string.
    """
    name, sep, raw = text.partition("=")
    parts = name.strip().split(".")
    if not sep or len(parts) != 2 or not all(re.fullmatch(r"[A-Za-z_]\w*", p) for p in parts):
        raise ConfigError(
            "--set", f"expected SECTION.KEY=VALUE (e.g. strategy.sigma=0.05), got {text!r}"
        )
    raw = raw.strip()
    if not raw:
        raise ConfigError("--set", f"{name.strip()}: empty value")
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts[0], parts[1], value


def merge(layers: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Later layers' keys over earlier ones', section by section.

    A layer that changes a section's discriminator (``strategy.name``,
    ``task.kind``, ``model.kind``) drops that section's earlier keys (the new
    kind starts from its defaults); a new task kind drops the model too.
    """
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        order = sorted(layer, key=lambda s: SECTIONS.index(s) if s in SECTIONS else len(SECTIONS))
        for section in order:
            values = layer[section]
            if not isinstance(values, Mapping):
                out[section] = values  # reported by Config.from_dict
                continue
            current = out.setdefault(section, {})
            if not isinstance(current, dict):
                current = out[section] = {}
            disc = DISCRIMINATORS.get(section)
            if disc in values and current.get(disc, values[disc]) != values[disc]:
                current.clear()
                if section == "task":
                    out.pop("model", None)
            current.update(values)
    return out


def assignments_layer(assignments: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set`` assignments as one layer."""
    layer: dict[str, dict[str, Any]] = {}
    for text in assignments:
        section, key, value = parse_assignment(text)
        layer.setdefault(section, {})[key] = value
    return layer


def flatten(layer: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The ``"section.key"`` names a layer sets."""
    return [f"{s}.{k}" for s, table in layer.items() if isinstance(table, Mapping) for k in table]


def load(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    quick: bool = False,
) -> Config:
    """The config of ``path`` (default: :data:`DEFAULT`) with ``--set``-style
    ``overrides`` (``"strategy.sigma=0.05"``), shrunk by ``quick`` (overrides stay).

    Example:
        >>> config = lrne.config.load("configs/cartpole_es_lowrank.toml", ["run.generations=5"])
        >>> strategy, task, model = config.build()
    """
    base = [DEFAULT] if path is None else [read_toml(path)]
    layer = assignments_layer(overrides)
    config = Config.from_dict(merge([*base, layer]))
    return config.shrink(keep=flatten(layer)) if quick else config


def as_toml(data: Mapping[str, Any]) -> str:
    """Nested dicts of TOML values as a TOML document (what :meth:`Config.to_toml` writes)."""
    lines = []
    for name, table in data.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        lines.append("")
    return "\n".join(lines)
