"""The ``[run]``, ``[strategy]`` and ``[model]`` sections, and what the last two build."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import Field

from lrne.config.schema import ConfigError, FilePath, Quick, Section, library_error
from lrne.nn.transformer import PRESETS
from lrne.strategies import registry

ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "sigmoid")

Positive = Annotated[int, Field(ge=1)]
StrategyName = Literal[tuple(sorted(registry.REGISTRY))]
Optimizer = Literal[registry.OPTIMIZERS]
Activation = Literal[ACTIVATIONS]
Preset = Literal[tuple(PRESETS)]


class RunSection(Section):
    """``[run]``: how long, how often to checkpoint, where to write."""

    SECTION: ClassVar[str] = "run"
    seed: int = Field(0, ge=0)
    generations: Annotated[int, Quick(2)] = Field(20, ge=1)
    seconds: float | None = Field(None, ge=0)  # wall-clock limit; 0 = none
    checkpoint_every: int = Field(10, ge=0)
    # Gradient diagnostics (lrne.diagnostics) every this many generations; None or 0: off.
    # None, not 0, by default: a run directory saved before the key existed still loads.
    diagnostics_every: int | None = Field(None, ge=0)
    output: FilePath = "runs/train"
    eval_episodes: Annotated[int, Quick(2)] = Field(32, ge=1)


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
    name: StrategyName = "ga"
    population_size: Annotated[int, Quick(8)] = Field(256, ge=1)
    sigma: float | None = Field(None, gt=0)
    num_elites: Annotated[int | None, Quick(2)] = Field(None, ge=1)
    noise_rank: int | None = Field(None, ge=0)
    density: float | None = Field(None, gt=0, le=1)
    mask: Literal["dynamic", "static"] | None = None
    freeze: tuple[str, ...] | None = None
    antithetic: bool | None = None
    beta: float | None = Field(None, gt=0)
    optimizer: Optimizer | None = None
    learning_rate: float | None = Field(None, gt=0)
    decay_steps: int | None = Field(None, ge=1)
    truncation_length: Annotated[int | None, Quick(5)] = Field(None, ge=1)
    dense_noise: tuple[str, ...] | None = None

    def check(self) -> None:
        for key in ("optimizer", "decay_steps"):
            if getattr(self, key) is not None and self.learning_rate is None:
                raise ConfigError("strategy.learning_rate", f"required with strategy.{key}")

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
        return type(self).parse({**given, **filled})

    def overrides(self) -> dict[str, Any]:
        """The keyword arguments of :func:`lrne.strategies.registry.make` the section sets."""
        import optax

        kw = {
            key: value
            for key, value in self
            if value is not None and key not in ("name", "population_size", "decay_steps")
        }
        if self.decay_steps is not None:
            rate = optax.cosine_decay_schedule(self.learning_rate, self.decay_steps, alpha=0.1)
            kw["learning_rate"] = rate
        return kw

    def build(self, task: Any) -> Any:
        """The strategy, for ``task`` (its ``horizon`` for an online ES).

        Raises:
            ConfigError: a key the strategy does not take, or one the library rejected.
        """
        self.options()  # names a key the strategy does not take
        kw = self.overrides()
        if self.name in registry.ONLINE and hasattr(task, "horizon"):
            kw["horizon"] = task.horizon
        try:
            return registry.make(self.name, self.population_size, **kw)
        except ValueError as error:
            raise library_error(error, self) from None


class ModelSpec(NamedTuple):
    """What a task needs of its model: outputs per input, and one input's shape."""

    num_outputs: int
    input_shape: tuple[int, ...]


class ModelSection(Section):
    """``[model]``: base of the model kinds (:data:`MODELS`)."""

    SECTION: ClassVar[str] = "model"
    # A task's checks of the module it was given name it so.
    ARGUMENTS: ClassVar[dict[str, str]] = {"policy": "", "model": ""}
    kind: str = "mlp"

    def build(self, spec: ModelSpec) -> Any:
        """The flax module for a task's ``spec``."""
        raise NotImplementedError


class MLPModel(ModelSection):
    """``kind = "mlp"``: :class:`lrne.nn.MLP`; an input is the observation's axes, flattened."""

    ARGUMENTS: ClassVar[dict[str, str]] = {**ModelSection.ARGUMENTS, "features": "hidden"}
    kind: Literal["mlp"] = "mlp"
    hidden: Annotated[tuple[Positive, ...], Quick(8)] = (64, 64)
    rank: int = Field(4, ge=0)
    activation: Activation = "tanh"

    def build(self, spec: ModelSpec) -> Any:
        from flax import linen as nn

        from lrne.nn import MLP

        activation = getattr(nn, self.activation)
        return MLP(self.hidden, spec.num_outputs, self.rank, activation, len(spec.input_shape))


class MinAtarCNNModel(ModelSection):
    """``kind = "minatar_cnn"``: :class:`lrne.nn.MinAtarCNN` on (H, W, C) images."""

    kind: Literal["minatar_cnn"] = "minatar_cnn"
    rank: int = Field(4, ge=0)
    channels: Annotated[int, Quick(4)] = Field(16, ge=1)
    hidden: Annotated[int, Quick(8)] = Field(128, ge=1)
    strides: tuple[Positive, Positive] = (1, 1)

    def build(self, spec: ModelSpec) -> Any:
        from lrne.nn import MinAtarCNN

        if len(spec.input_shape) != 3:
            raise ConfigError(
                "model.kind",
                f"minatar_cnn takes (H, W, C) images; the task's inputs have shape "
                f"{spec.input_shape} (use kind = 'mlp')",
            )
        return MinAtarCNN(spec.num_outputs, self.rank, self.channels, self.hidden, self.strides)


class TransformerModel(ModelSection):
    """``kind = "transformer"``: :meth:`lrne.nn.Transformer.preset` and overrides of it."""

    kind: Literal["transformer"] = "transformer"
    preset: Preset = "factorized"
    hidden: Annotated[int | None, Quick(8, fill=True)] = Field(None, ge=1)
    num_heads: Annotated[int | None, Quick(2, fill=True)] = Field(None, ge=1)
    ff: Annotated[int | None, Quick(16, fill=True)] = Field(None, ge=1)
    num_blocks: Annotated[int | None, Quick(1, fill=True)] = Field(None, ge=1)
    qkv_rank: int | None = Field(None, ge=0)
    o_rank: int | None = Field(None, ge=0)
    ff_rank: int | None = Field(None, ge=0)
    embed_rank: int | None = Field(None, ge=0)

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
