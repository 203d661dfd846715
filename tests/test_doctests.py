"""Every ``>>>`` example in lrne's docstrings runs, and prints what it shows.

One test per module with examples (``doctest``, run from pytest so that the
suite's settings hold: two workers, warnings are errors). An example runs in
its module's globals; most import what they use. The examples of a few
objects name things a reader is assumed to have (a task, a run directory);
``SETUP`` provides them, the way pytest's ``doctest_namespace`` would, built
small. It is keyed by the documented object's name, which survives a move to
another module.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import lrne

ROOT = Path(__file__).resolve().parent.parent
FINDER = doctest.DocTestFinder(exclude_empty=True)


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [test for test in FINDER.find(module, name) if test.examples]


MODULES = [
    name
    for name in ["lrne", *(m.name for m in pkgutil.walk_packages(lrne.__path__, "lrne."))]
    if not name.endswith(".__main__") and _examples(name)  # importing __main__ runs it
]


def _sphere() -> lrne.tasks.Function:
    return lrne.tasks.Function(lambda x: -jnp.sum(x**2), jnp.ones(3))


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(ROOT)  # its example reads configs/*.toml
    return {"lrne": lrne}


def _saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    from lrne.cli import main

    monkeypatch.chdir(tmp_path)  # its example loads runs/train: train one, tiny
    assert main(["train", "--quick", "--generations", "1"]) == 0
    return {"lrne": lrne, "jax": jax, "obs": jnp.zeros(4)}  # a CartPole observation


def _checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    return {"path": tmp_path / "run_state", "template": {"x": jnp.zeros(3)}}


def _distributed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    return {"lrne": lrne, "jax": jax, "strategy": lrne.ga(512, 32, 0.5), "task": _sphere()}


SETUP: dict[str, Callable[[Path, pytest.MonkeyPatch], dict]] = {
    "load": _config,  # lrne.config.load
    "load_run": _saved,
    "RunCheckpoints": _checkpoint,
    "sharded_generation_step": _distributed,
}
"""Documented object -> the names its examples assume, and the directory they run in."""

SHOWS_NO_OUTPUT = {"load_run"}
"""Objects whose examples call functions without showing the values they return:
there an example must run, and its output is not compared."""


class _RunOnly(doctest.OutputChecker):
    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return want == "" or super().check_output(want, got, optionflags)


def _object(test: doctest.DocTest) -> str:
    return test.name.rsplit(".", 1)[-1]


def test_modules_with_examples_are_found():
    assert {"lrne.generation", "lrne.runner", "lrne.strategies.online.nres"} <= set(MODULES)
    documented = {_object(test) for name in MODULES for test in _examples(name)}
    assert set(SETUP) | SHOWS_NO_OUTPUT <= documented, "stale entries"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    report: list[str] = []
    failures = tries = 0
    for test in _examples(name):
        if _object(test) in SETUP:
            test.globs.update(SETUP[_object(test)](tmp_path, monkeypatch))
        checker = _RunOnly() if _object(test) in SHOWS_NO_OUTPUT else None
        result = doctest.DocTestRunner(checker=checker).run(test, out=report.append)
        failures, tries = failures + result.failed, tries + result.attempted
    assert failures == 0, "".join(report)
    assert tries > 0
