"""Configs of `lrne train`: the schema, --set, --quick, and one-line errors for bad input."""

import math
import tomllib
from pathlib import Path

import jax
import pytest

import lrne.config as cfg
from lrne.cli import main
from lrne.strategies import REGISTRY, registry
from lrne.strategies.registry import ONLINE

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    """A small corpus written here: tests never read files outside the repository."""
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("ROMEO: to be or not to be, that is the question.\n" * 20)
    return path


def test_the_default_run_is_configs_cartpole_ga():
    assert cfg.load() == cfg.load(Path("configs/cartpole_ga.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
@pytest.mark.parametrize("quick", [False, True])
def test_configs_round_trip_through_the_toml_a_run_writes(path, quick):
    config = cfg.load(path, quick=quick)
    written = tomllib.loads(config.to_toml())
    assert cfg.Config.from_dict(written, strict=True) == config
    # Relative paths are resolved against the current directory when read.
    assert Path(config.run.output).is_absolute()


def test_quick_shrinks_but_keeps_what_the_command_line_gives():
    config = cfg.load(
        Path("configs/paper_a/breakout_factorized.toml"), ["run.generations=3"], quick=True
    )
    assert (config.run.generations, config.run.eval_episodes) == (3, 2)
    assert (config.strategy.population_size, config.strategy.num_elites) == (8, 2)
    assert (config.task.max_steps, config.task.num_episodes) == (20, 1)
    assert (config.model.channels, config.model.hidden, config.model.rank) == (4, 8, 4)
    assert config.strategy.sigma == 0.03  # not a size: untouched


def test_set_values_are_read_as_toml_else_as_strings():
    assert cfg.parse_assignment("strategy.sigma=0.05") == ("strategy", "sigma", 0.05)
    assert cfg.parse_assignment("task.env=CartPole-v1") == ("task", "env", "CartPole-v1")
    assert cfg.parse_assignment("model.hidden=[32, 32]") == ("model", "hidden", [32, 32])
    assert cfg.parse_assignment("task.early_exit=false") == ("task", "early_exit", False)
    assert cfg.parse_assignment("strategy.beta = inf")[2] == math.inf
    assert cfg.parse_assignment('run.output="a b"') == ("run", "output", "a b")


def test_a_new_kind_starts_its_section_from_its_defaults():
    # The default run sets GA options (num_elites); ES starts afresh but for the new name.
    es = cfg.load(None, ["strategy.name=es", "strategy.sigma=0.02"])
    assert (es.strategy.name, es.strategy.num_elites, es.strategy.sigma) == ("es", None, 0.02)
    assert es.strategy.population_size == 256  # the schema default
    lorenz = cfg.load(None, ["task.kind=lorenz"])
    assert lorenz.model is None and lorenz.task.horizon == 2000
    pixels = cfg.load(None, ["task.kind=pixel_pendulum"])
    assert (pixels.model.kind, pixels.model.strides) == ("minatar_cnn", (2, 2))


def test_decay_steps_make_the_learning_rate_a_cosine_decay_to_a_tenth():
    config = cfg.load(None, ["strategy.name=es", "strategy.learning_rate=0.1"])
    decayed = cfg.load(
        None, ["strategy.name=es", "strategy.learning_rate=0.1", "strategy.decay_steps=4"]
    )
    grads = jax.numpy.ones(3)

    def steps(optimizer, n):  # Adam on a constant gradient moves each step by its rate
        state, moves = optimizer.init(grads), []
        for _ in range(n):
            update, state = optimizer.update(grads, state)
            moves.append(float(-update[0]))
        return moves

    def optimizer(config):  # as registry.make builds it from the section
        kw = config.strategy.resolve().overrides()
        return registry.optimizer(kw["optimizer"], kw["learning_rate"])

    constant = steps(optimizer(config), 6)
    cosine = steps(optimizer(decayed), 6)
    assert constant == pytest.approx([0.1] * 6, rel=1e-4)
    # 0.1 · (0.1 + 0.9 · (1 + cos(π t / 4)) / 2), then 0.01 from t = 4 on.
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * min(t, 4) / 4)) / 2 for t in range(6)]
    assert cosine == pytest.approx(expected, rel=1e-4)


def test_strings_survive_the_toml_writer(tmp_path):
    odd = 'a "quoted" \\ path\twith ünïcode\x7f'
    config = cfg.load(None, [f"run.output={tmp_path}"])
    table = {"run": {"output": odd}}
    assert tomllib.loads(cfg.as_toml(table)) == table
    assert tomllib.loads(config.to_toml())["run"]["output"] == str(tmp_path)


def test_every_strategy_builds_on_every_task_kind(text_file):
    """Any registry strategy × any task: built (not run; `pytest -m slow` runs them)."""
    key = jax.random.key(0)
    for kind, task_cls in cfg.TASKS.items():
        extra = [f"task.text={text_file}"] if kind == "language_model" else []
        for name in sorted(REGISTRY):
            config = cfg.load(None, [f"task.kind={kind}", f"strategy.name={name}", *extra], True)
            if name in ONLINE and not task_cls.UNROLLABLE:
                with pytest.raises(cfg.ConfigError, match="online ES") as error:
                    config.build()
                assert error.value.key == "strategy.name"
                continue
            strategy, task, model = config.build()
            assert (model is None) == (kind == "lorenz")
            if name in ONLINE:  # init checks horizon == task.horizon (traced, not run)
                jax.eval_shape(lambda k, s=strategy, t=task: s.init(k, t.init_params(k), t), key)


BAD = [
    # (config file text or None, extra argv, what the one line must say)
    ("[runn]\nseed = 1\n", [], ["runn", "unknown section", "run, strategy, task, model"]),
    ("seed = 1\n", [], ["seed", "unknown section"]),
    ("[strategy]\nsigmaa = 0.1\n", [], ["strategy.sigmaa", "unknown key", "sigma"]),
    ('[run]\ngenerations = "ten"\n', [], ["run.generations", "must be an int"]),
    ("[run]\ngenerations = 0\n", [], ["run.generations", ">= 1"]),
    ("[run]\ngenerations = 2.5\n", [], ["run.generations", "must be an int"]),
    ('[strategy]\nname = "cma"\n', [], ["strategy.name", "'cma'", "'ga'", "'nres'"]),
    ('[task]\nenv = "NoSuchEnv-v9"\n', [], ["task.env", "'CartPole-v1'"]),
    ('[task]\nkind = "atari"\n', [], ["task.kind", "'gymnax'", "'lorenz'"]),
    ('[model]\nkind = "resnet"\n', [], ["model.kind", "'mlp'", "'transformer'"]),
    ('[model]\nhidden = "64"\n', [], ["model.hidden", "list of ints", "[64, 64]"]),
    ("[model]\nhidden = [64, 0]\n", [], ["model.hidden", ">= 1"]),
    ('[strategy]\nmask = "sometimes"\n', [], ["strategy.mask", "'dynamic'", "'static'"]),
    ("[strategy]\ndensity = 1.5\n", [], ["strategy.density", "<= 1"]),
    ('[strategy]\noptimizer = "adam"\n', [], ["strategy.learning_rate", "required"]),
    ('[strategy]\noptimizer = "adamm"\n', [], ["strategy.optimizer", "'sgd'"]),
    ('[strategy]\nname = "es"\ndecay_steps = 9\n', [], ["strategy.learning_rate", "decay_steps"]),
    (
        '[strategy]\nname = "es"\nnum_elites = 4\n',
        [],
        ["strategy.num_elites", "not an option of strategy 'es'", "noise_rank", "learning_rate"],
    ),
    ('[strategy]\nname = "ga"\nlearning_rate = 0.1\n', [], ["strategy.learning_rate", "'ga'"]),
    ("[strategy]\npopulation_size = 8\nnum_elites = 8\n", [], ["strategy.num_elites"]),
    (
        '[strategy]\nname = "nres"\n[task]\nkind = "classification"\n',
        [],
        ["strategy.name", "online ES", "lorenz"],
    ),
    ('[task]\nkind = "lorenz"\n[model]\nkind = "mlp"\n', [], ["model", "takes no model"]),
    ('[task]\nkind = "language_model"\ntext = "no/such/file.txt"\n', [], ["task.text", "no such"]),
    ('[model]\nkind = "minatar_cnn"\n', [], ["model.kind", "(H, W, C)", "(4,)"]),
    ('[task]\nkind = "lorenz"\nhorizon = -5\n', [], ["task.horizon", ">= 1"]),
    ("[run\nseed = 1\n", [], ["not valid TOML"]),
    (None, ["--config", "no/such/config.toml"], ["--config", "cannot read"]),
    (None, ["--set", "strategy.sigma"], ["--set", "SECTION.KEY=VALUE"]),
    (None, ["--set", "sigma=0.1"], ["--set", "SECTION.KEY=VALUE"]),
    (None, ["--set", "strategy.sigma="], ["--set", "empty value"]),
    (None, ["--set", "strategy.foo=1"], ["--set strategy.foo", "unknown key"]),
    (None, ["--set", "strategy.sigma=-1"], ["--set strategy.sigma", "> 0"]),
    # the shortcut flags name themselves
    (None, ["--env", "NoSuchEnv-v9"], ["--env", "task.env"]),
    (None, ["--population-size", "8", "--num-elites", "8"], ["--num-elites"]),
    (None, ["--rank", "-1"], ["--rank", ">= 0"]),
    (None, ["--sigma", "0"], ["--sigma", "> 0"]),
    (None, ["--sigma", "lots"], ["--sigma", "invalid float"]),
    (None, ["--population-size", "many"], ["--population-size"]),
    (None, ["--generations", "0"], ["--generations", ">= 1"]),
    (None, ["--hidden", "64,x"], ["--hidden", "comma-separated"]),
    (None, ["--strategy", "es", "--num-elites", "4"], ["--num-elites", "not an option"]),
    (None, ["--output", "/proc/forbidden/run"], ["--output", "cannot write"]),
]


@pytest.mark.parametrize(("text", "argv", "expected"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, text, argv, expected):
    config = []
    if text is not None:
        (tmp_path / "bad.toml").write_text(text)
        config = ["--config", str(tmp_path / "bad.toml")]
    # Never the default runs/train: some cases fail after the output directory is made.
    output = [] if "--output" in argv else ["--output", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as stop:
        main(["train", *config, *argv, *output])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for part in expected:
        assert part in err, (part, err)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(cfg.TASKS))
def test_every_strategy_runs_on_every_task_kind(kind, strategy_name, text_file, tmp_path, capsys):
    """Any registry strategy × any task kind: a quick run of `lrne train`."""
    extra = ["--set", f"task.text={text_file}"] if kind == "language_model" else []
    argv = ["train", "--quick", "--set", f"task.kind={kind}", "--strategy", strategy_name]
    argv += [*extra, "--generations", "1", "--output", str(tmp_path)]
    if strategy_name in ONLINE and not cfg.TASKS[kind].UNROLLABLE:
        with pytest.raises(SystemExit):
            main(argv)
        assert "online ES" in capsys.readouterr().err
        return
    assert main(argv) == 0
    assert "params:" in capsys.readouterr().out
