"""Defaults are stated once: a strategy's in the registry, a task's in its class. The config
schema, ``lrne train`` and the evosax adapters read them, so they cannot disagree."""

import doctest
import inspect
import re

import pytest

import lrne.config as cfg
from lrne.cli import build_parser, resolve_train_config
from lrne.strategies import registry
from lrne.tasks import Classification, Gymnax, LanguageModel, Lorenz

# Task kind -> (the library class it builds, config key -> argument where they differ).
TASK_CLASSES = {
    "gymnax": (Gymnax, {}),
    "pixel_pendulum": (Gymnax, {}),
    "language_model": (LanguageModel, {"batch_seed": "seed"}),
    "lorenz": (Lorenz, {}),
    "classification": (Classification, {}),
}


def toml(value):
    return list(value) if isinstance(value, tuple) else value


def test_the_default_run_states_no_default_of_its_own():
    # Only the kinds: everything else is a schema, registry or task-class default.
    for section, table in cfg.DEFAULT.items():
        assert set(table) <= {cfg.DISCRIMINATORS.get(section)}, (section, table)


@pytest.mark.parametrize("name", sorted(registry.REGISTRY))
def test_a_config_resolves_to_the_registry_defaults(name):
    online = name in registry.ONLINE
    extra = ["task.kind=lorenz"] if online else []  # an unrollable task, horizon 2000
    config = cfg.load(None, [f"strategy.name={name}", *extra])
    assert set(config.strategy.to_dict()) == {"name", "population_size"}  # nothing restated
    resolved = config.resolve().strategy
    horizon = config.task.horizon if online else None
    expected = registry.defaults(name, config.strategy.population_size, horizon)
    options = resolved.options()
    assert set(options) <= {*registry.options(name), "decay_steps"}
    for key in options:
        if key == "decay_steps":
            assert resolved.decay_steps is None  # a constant learning rate
        elif key in expected:
            assert toml(getattr(resolved, key)) == toml(expected[key]), key
    # Every registry default that is a config key is written out.
    assert {k for k in expected if k in cfg.StrategySection.keys()} <= set(options)
    assert resolved.resolve(horizon) == resolved  # resolving twice changes nothing


def test_the_cli_shows_the_registry_and_task_defaults():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: " ".join(a.help.split()) for a in train._actions if a.help}
    for name, data in registry.DEFAULTS.items():
        assert re.search(rf"\(default: .*{data['sigma']} for [^;]*\b{name}\b", helps["sigma"])
        if "elite_ratio" in data:
            assert f"{data['elite_ratio']:g}" in helps["num_elites"]
    episodes = inspect.signature(Gymnax).parameters["num_episodes"].default
    assert f"(default: {episodes})" in helps["num_episodes"]
    size = cfg.StrategySection().population_size
    assert f"(default: {size})" in helps["population_size"]
    # `lrne train` with no options runs the default config.
    config, resume = resolve_train_config(build_parser().parse_args(["train"]))
    assert config == cfg.load() and not resume


@pytest.mark.parametrize("kind", sorted(cfg.TASKS))
def test_task_keys_default_to_the_task_class_defaults(kind):
    owner, renamed = TASK_CLASSES[kind]
    params = inspect.signature(owner).parameters
    section = cfg.TASKS[kind]()
    checked = 0
    for key in section.keys():
        param = params.get(renamed.get(key, key))
        if key != "kind" and param is not None and param.default is not param.empty:
            assert getattr(section, key) == param.default, key
            checked += 1
    assert checked >= 2  # the keys really are read from the class


def test_the_evosax_adapters_can_read_the_registry_defaults():
    for name in ("es", "es_lowrank"):
        data = registry.DEFAULTS[name]
        optimizer = registry.optimizer(data["optimizer"], data["learning_rate"])
        assert data["sigma"] > 0 and callable(optimizer.update)
    assert 0 < registry.DEFAULTS["ga"]["elite_ratio"] < 1  # evosax SimpleGA's elite_ratio
    assert registry.defaults("ga", 8)["num_elites"] >= 1


def test_the_registry_examples_run():
    result = doctest.testmod(registry, verbose=False)
    assert result.attempted and not result.failed


def test_make_takes_an_optimizer_by_name_or_as_optax():
    import optax

    registry.make("es", 8, optimizer="sgd", learning_rate=0.1)
    registry.make("es", 8, learning_rate=0.1)  # the default optimizer at another rate
    registry.make("es", 8, optimizer=optax.sgd(0.1))
    with pytest.raises(ValueError, match="learning_rate goes with an optimizer name"):
        registry.make("es", 8, optimizer=optax.sgd(0.1), learning_rate=0.1)
    with pytest.raises(ValueError, match="optimizer: unknown name 'sgdd'"):
        registry.make("es", 8, optimizer="sgdd", learning_rate=0.1)
