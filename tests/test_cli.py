"""lrne train / eval / render / sample: every config in configs/ runs, and its run is used.

The CLI runs in-process (``lrne.cli.main``), so runs of the same config share
compiled programs; each config runs once, in quick mode, and its run directory
then serves eval, render, sample and :func:`lrne.load_run`.
"""

import importlib.util
import json
import tomllib
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from gymnax.visualize.vis_gym import SUPPORTED_GYM_ENVS
from PIL import Image

import lrne
import lrne.config as cfg
import lrne.config.build
from lrne.cli import main
from lrne.cli.present import describe
from lrne.strategies import registry

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))
# One config per way of drawing (classic control, MinAtar, pixels) and the others
# (which must refuse): rendering compiles a rollout, so not every config does.
RENDERED = {
    "cartpole_ga",
    "breakout_factorized",
    "pendulum_pixels_es_lowrank",
    "lm_tinyshakespeare_es_lowrank",
    "lorenz_nres",
}
# The one benchmark-written config run end to end: the factorized MinAtar CNN under the GA.
PAPER_A_BREAKOUT = CONFIG_DIR / "paper_a" / "breakout_factorized.toml"
# Under -m slow: its strategy and task run through `lrne train` in
# test_a_run_started_from_its_config_toml_reproduces_it, its file loads in
# test_config, and its run directory's use is the other configs' (ES included).
SLOW = {"cartpole_es_lowrank"}
RUN = [
    pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else [])
    for p in [*CONFIGS, PAPER_A_BREAKOUT]
]
TEXT = "ROMEO: to be or not to be, that is the question.\nJULIET: whether 'tis nobler.\n" * 12


def run_lrne(capsys, *argv: str) -> tuple[int, str, str]:
    """``lrne ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_version(capsys):
    for command in ("eval", "render", "sample"):
        code, out, _ = run_lrne(capsys, command, "--help")
        assert code == 0 and "RUN_DIR" in out
    code, out, _ = run_lrne(capsys, "train", "--help")
    for option in ["--config", "--set", "--quick", "--resume", "--strategy", "--env", "--sigma"]:
        assert option in out
    code, out, _ = run_lrne(capsys, "--version")
    assert code == 0 and out == f"lrne {lrne.__version__}\n"


# Written by the benchmark scripts (configs/suite, configs/paper_a): each repeats a
# strategy, task kind and model kind of a config run below, so they are only loaded.
BENCHMARK_CONFIGS = sorted(CONFIG_DIR.glob("*/*.toml"))


@pytest.mark.parametrize("path", BENCHMARK_CONFIGS, ids=[p.stem for p in BENCHMARK_CONFIGS])
def test_benchmark_configs_load_and_round_trip(path):
    # Runnable from any clone: paths as written, not resolved on the machine that wrote them.
    assert not Path(cfg.read_toml(path)["run"]["output"]).is_absolute()
    config = cfg.load(path)
    assert cfg.Config.from_dict(tomllib.loads(config.to_toml())) == config


@pytest.mark.parametrize("path", RUN)
def test_every_config_runs_and_its_run_is_used(path, tmp_path, capsys):
    config = cfg.load(path)
    run = tmp_path / "run"
    extra = []
    if config.task.kind == "language_model":  # a text written here, not a download
        (tmp_path / "text.txt").write_text(TEXT)
        extra = ["--set", f"task.text={tmp_path / 'text.txt'}"]
    code, out, err = run_lrne(
        capsys, "train", "--config", str(path), "--quick", *extra, "--output", str(run)
    )
    assert code == 0, err

    # The run directory: its config reads back as the quick config it ran.
    written = cfg.Config.from_dict(tomllib.loads((run / "config.toml").read_text()), strict=True)
    assert written.strategy == config.shrink().resolve().strategy
    assert written.task.kind == config.task.kind
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["generation"] for row in rows] == [0, 1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_fitness"] == rows[-1]["best_fitness"] and summary["generations"] == 2
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ocp.StandardCheckpointer().restore(run / "checkpoint")  # the best params, exported

    # lrne.load_run: the final state, its best params (and an ES's mean).
    saved = lrne.load_run(run)
    assert saved.generation == 2 and saved.config == written
    template = saved.task.init_params(jax.random.key(0))
    # The params' collections, and a normalized run's observation statistics beside them.
    normalized = getattr(written.task, "normalize_observations", False)
    assert ("normalizer" in saved.params) == bool(normalized)
    params = {k: v for k, v in saved.params.items() if k != "normalizer"}
    assert jax.tree.structure(params) == jax.tree.structure(template)
    assert (saved.mean is None) == (config.strategy.name in ("ga", "ga_subspace", "metropolis"))

    # lrne eval re-scores them: with no --seed on summary.json's episodes, so the same numbers.
    code, out, err = run_lrne(capsys, "eval", str(run))
    assert code == 0, err
    for name, value in summary["fresh_fitness"].items():
        assert f"{name} params: {describe(written.task, value, 2)}\n" in out
    # --replay: the answer rebuilt from lineage.bin (a few hundred bytes) scores the same.
    assert summary["lineage_bytes"] == (run / "lineage.bin").stat().st_size < 2000
    code, replayed, err = run_lrne(capsys, "eval", str(run), "--replay")
    assert code == 0, err
    assert replayed == out

    # lrne render draws what plays; lrne sample writes what models text; the rest say so.
    if path.stem in RENDERED:
        check_render(capsys, config, run, tmp_path / "play.gif")
    code, out, err = run_lrne(capsys, "sample", str(run), "--prompt", "ROMEO:", "--length", "40")
    if config.task.kind == "language_model":
        assert code == 0, err
        assert out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 40 + 1
        assert set(out[:-1]) <= set(TEXT)
        again = run_lrne(capsys, "sample", str(run), "--prompt", "ROMEO:", "--length", "40")
        assert again[1] == out  # the same seed writes the same text
        code, _, err = run_lrne(capsys, "sample", str(run), "--prompt", "Zebra")
        assert code == 2 and "not in the task's vocabulary" in err
    else:
        assert code == 2 and err.count("\n") == 1 and "not a language model" in err


def check_render(capsys, config: cfg.Config, run: Path, gif: Path) -> None:
    # A few steps: classic control draws every frame with pygame, at ~50 ms each.
    code, _, err = run_lrne(capsys, "render", str(run), "--output", str(gif), "--max-steps", "6")
    if config.task.kind not in ("gymnax", "pixel_pendulum"):
        assert code == 2 and err.count("\n") == 1 and "nothing to render" in err
        return
    classic = getattr(config.task, "env", "") in SUPPORTED_GYM_ENVS
    if classic and importlib.util.find_spec("pygame") is None:  # gymnasium's renderer
        assert code == 2 and err.count("\n") == 1 and "pip install pygame" in err
        return
    assert code == 0, err
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames >= 2


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["eval", "{missing}"], "is not a directory"),
        (["eval", "{empty}"], "no config.toml"),
        (["render", "{empty}", "--output", "x.png"], "no config.toml"),
        (["eval", "{empty}", "--episodes", "0"], "--episodes"),
        (["sample", "{empty}", "--length", "-1"], "--length"),
        (["sample", "{empty}", "--temperature", "0"], "--temperature"),
    ],
)
def test_a_run_directory_command_fails_in_one_line(tmp_path, capsys, argv, expected):
    (tmp_path / "empty").mkdir()
    argv = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in argv]
    code, _, err = run_lrne(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and expected in err, err


def test_a_run_without_a_checkpoint_fails_in_one_line(tmp_path, capsys):
    (tmp_path / "config.toml").write_text(cfg.load(None, ["task.kind=lorenz"]).to_toml())
    code, _, err = run_lrne(capsys, "eval", str(tmp_path))
    assert code == 2 and "no readable checkpoint" in err and err.count("\n") == 1


def test_the_policy_takes_one_observation_of_the_env():
    for env, input_ndim in [("CartPole-v1", 1), ("Breakout-MinAtar", 3)]:
        _, task, model = cfg.load(None, [f"task.env={env}"], quick=True).build()
        assert model.input_ndim == input_ndim
        params = jax.eval_shape(task.init_params, jax.random.key(0))
        obs = jax.eval_shape(task.env.reset, jax.random.key(1), task.env_params)[0]
        assert jax.eval_shape(model.apply, params, obs).shape == (task.num_outputs,)
        stacked = jax.ShapeDtypeStruct((3, *obs.shape), obs.dtype)
        assert jax.eval_shape(model.apply, params, stacked).shape == (3, task.num_outputs)


def test_a_run_started_from_its_config_toml_reproduces_it(tmp_path, capsys, monkeypatch):
    """``config.toml`` holds every value the run used, the registry's defaults included:
    run from it, with the registry's defaults changed meanwhile, the run is the same bits."""
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["train", "--strategy", "es_lowrank", "--quick"]
    code, _, err = run_lrne(capsys, *argv, "--output", str(first))
    assert code == 0, err
    written = tomllib.loads((first / "config.toml").read_text())["strategy"]
    used = registry.defaults("es_lowrank", written["population_size"])
    for key in ("sigma", "optimizer", "learning_rate", "noise_rank", "antithetic", "density"):
        assert written[key] == used[key], key

    changed = {"sigma": 0.3, "optimizer": "sgd", "learning_rate": 0.5, "noise_rank": 2}
    monkeypatch.setitem(registry.DEFAULTS, "es_lowrank", changed)
    lrne.config.build.build_all.cache_clear()  # build the strategy anew, from the file
    fresh = cfg.load(None, ["strategy.name=es_lowrank"], quick=True).resolve()
    assert fresh.strategy.sigma == 0.3  # what the same options would run now
    code, _, err = run_lrne(
        capsys, "train", "--config", str(first / "config.toml"), "--output", str(second)
    )
    assert code == 0, err

    def rows(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    assert rows(second) == rows(first)
    a, b = lrne.load_run(first), lrne.load_run(second)
    assert a.config.strategy == b.config.strategy and a.generation == b.generation == 2
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state), strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.array_equal(np.asarray(x), np.asarray(y))
    summaries = [json.loads((run / "summary.json").read_text()) for run in (first, second)]
    assert summaries[0]["fresh_fitness"] == summaries[1]["fresh_fitness"]
