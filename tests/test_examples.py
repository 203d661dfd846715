"""Every script in examples/ runs at toy size and produces a real outcome.

The examples run in this process (imported from their files, ``main(quick=True)``),
except ``multi_device.py``, which must set ``XLA_FLAGS`` before jax is imported
and so runs as one subprocess. The evosax-loop and multi-device examples are
``slow`` (about 6 s and 11 s, mostly compiling): the default suite covers what
they show in ``test_evosax_plugin.py`` and ``test_distributed.py``.
"""

import csv
import functools
import importlib.util
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrne.genome import Population

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@functools.cache
def load(name: str) -> types.ModuleType:
    """The example module ``examples/<name>.py``, imported from its file (once)."""
    spec = importlib.util.spec_from_file_location(f"lrne_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # flax dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested():
    tested = {
        "custom_unrollable_nres",
        "evosax_plugin",
        "language_model",
        "logger_callback",
        "minatar_ga",
        "multi_device",
        "own_flax_model",
    }
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


def test_own_flax_model(capsys):
    out = load("own_flax_model").main(quick=True)
    assert out["generations"] == 2
    assert 1 <= out["before"] <= 50 and 1 <= out["after"] <= 50  # CartPole capped at 50 steps
    assert "fresh episodes" in capsys.readouterr().out


def test_minatar_ga():
    out = load("minatar_ga").main(quick=True)
    assert math.isfinite(out["score"]) and out["score"] >= 0
    assert out["genome"] < out["dense"] / 10  # rank-4 factors, not dense weights


def test_custom_unrollable_nres():
    module = load("custom_unrollable_nres")
    out = module.main(quick=True)
    assert all(math.isfinite(value) for value in out.values()), out
    assert out["lr"] != pytest.approx(0.01)  # NRES moved the learning rate

    # The task keeps the Unrollable contract: two windows of 5 steps are one unroll of 10.
    task = module.NoisyQuadratic(horizon=10)
    unroll = jax.jit(task.unroll, static_argnums=4)  # num_steps is static
    keys = jax.random.split(jax.random.key(0), 3)
    population = Population({}, {"params": {"log_lr": jnp.log(jnp.array([0.1, 1.0, 2.5]))}})
    start, t = task.reset(keys), jnp.zeros(3, jnp.int32)
    inner, first = unroll(keys, population, start, t, 5)
    inner, second = unroll(keys, population, inner, t + 5, 5)
    whole_inner, whole = unroll(keys, population, start, t, 10)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-5)
    np.testing.assert_allclose(inner, whole_inner, rtol=1e-5)


@pytest.mark.slow
def test_evosax_plugin():
    out = load("evosax_plugin").main(quick=True)
    (score,) = out.values()
    assert 1 <= score <= 50


def test_language_model():
    out = load("language_model").main(quick=True, prompt="Love", length=23)
    assert math.isfinite(out["before"]) and math.isfinite(out["after"])
    assert isinstance(out["sample"], str) and len(out["sample"]) == 23


def test_logger_callback_writes_a_csv_row_per_generation(tmp_path):
    out = load("logger_callback").main(quick=True, logger="csv", directory=tmp_path)
    with (tmp_path / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == out["generations"] == len(out["rows"]) >= 1
    assert [int(row["generation"]) for row in rows] == list(range(len(rows)))
    for row, expected in zip(rows, out["rows"], strict=True):
        assert float(row["best_fitness"]) == expected["best_fitness"]


class FakeWriter:
    """Stands in for tensorboardX's SummaryWriter: records the calls."""

    def __init__(self, logdir: str) -> None:
        self.logdir, self.calls = logdir, []

    def add_text(self, tag, text):
        self.calls.append(("text", tag, text))

    def add_scalar(self, tag, value, step):
        self.calls.append(("scalar", tag, value, step))

    def close(self):
        self.calls.append(("close",))


def test_tensorboard_and_wandb_loggers_without_the_packages(monkeypatch, tmp_path):
    """The loggers' calls, against stand-in modules (neither package is a dependency)."""
    module = load("logger_callback")
    result = types.SimpleNamespace(generation=2, history=[])
    rows = [{"best_fitness": 1.0, "generation": 0}, {"best_fitness": 3.0, "generation": 1}]

    monkeypatch.setitem(
        sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=FakeWriter)
    )
    logger = module.make_logger("auto", tmp_path, {})
    assert isinstance(logger, module.TensorBoardLogger)
    logger.on_start(0, None)
    for generation, row in enumerate(rows):
        logger.on_generation(generation, row, None)
    logger.on_end(result)
    scalars = [call[1:] for call in logger.writer.calls if call[0] == "scalar"]
    assert ("best_fitness", 3.0, 1) in scalars and len(scalars) == 4
    assert logger.writer.calls[-1] == ("close",)

    logged = []
    run = types.SimpleNamespace(
        summary={}, log=lambda row, step: logged.append((step, row)), finish=lambda: None
    )
    wandb = types.SimpleNamespace(init=lambda **kwargs: run)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    logger = module.make_logger("wandb", tmp_path, {"population": 8})
    logger.on_start(0, None)
    for generation, row in enumerate(rows):
        logger.on_generation(generation, row, None)
    logger.on_end(result)
    assert logged == list(enumerate(rows)) and run.summary["generations"] == 2

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # not installed: import fails
    monkeypatch.setitem(sys.modules, "torch", None)
    assert isinstance(module.make_logger("auto", tmp_path, {}), module.CSVLogger)
    with pytest.raises(ImportError):
        module.make_logger("tensorboard", tmp_path, {})


@pytest.mark.slow
def test_multi_device_matches_one_device():
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "multi_device.py"), "--quick"],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 devices reproduce the 1-device run bit for bit: True" in done.stdout
