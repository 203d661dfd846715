"""Run configs: a typed schema of four TOML sections, read with ``tomllib``.

``lrne train --config FILE.toml`` runs any registry strategy on any task. A
config has four sections; every key has a default, so a file holds only what
it changes::

    [run]        # seed, generations, seconds, checkpoint_every, diagnostics_every, output,
                 # eval_episodes
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

Each section is a frozen pydantic model whose fields are the allowed keys, with
their type, range and choices (:mod:`lrne.config.schema`); the task and model
sections have one model per ``kind`` (:data:`TASKS`, :data:`MODELS`). Strategy
overrides left out keep the registry's defaults
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
allowed, before anything is compiled; an error a library check raises while
building names the key of its :class:`~lrne.errors.ArgumentError`'s argument.

Modules: :mod:`~lrne.config.schema` (the schema engine), :mod:`~lrne.config.sections`
(run, strategy, model), :mod:`~lrne.config.tasks` (task kinds), :mod:`~lrne.config.build`
(:class:`Config`, what it builds), :mod:`~lrne.config.io` (TOML, layers).
"""

from lrne.config.build import Built, Config, load
from lrne.config.io import (
    DEFAULT,
    DISCRIMINATORS,
    SECTIONS,
    as_toml,
    assignments_layer,
    flatten,
    merge,
    parse_assignment,
    read_toml,
)
from lrne.config.schema import TINYSHAKESPEARE, ConfigError, Quick, Section
from lrne.config.sections import (
    MODELS,
    ModelSection,
    ModelSpec,
    RunSection,
    StrategySection,
)
from lrne.config.tasks import TASKS, TaskSection, library_default

__all__ = [
    "DEFAULT",
    "DISCRIMINATORS",
    "MODELS",
    "SECTIONS",
    "TASKS",
    "TINYSHAKESPEARE",
    "Built",
    "Config",
    "ConfigError",
    "ModelSection",
    "ModelSpec",
    "Quick",
    "RunSection",
    "Section",
    "StrategySection",
    "TaskSection",
    "as_toml",
    "assignments_layer",
    "flatten",
    "library_default",
    "load",
    "merge",
    "parse_assignment",
    "read_toml",
]
