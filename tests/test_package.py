"""Package hygiene: one version, the declared license, type information, a light import."""

import json
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import lrne

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Records every import of rich or matplotlib made by a module of lrne itself.
# Dependencies import them on their own (flax.linen imports rich, gymnax imports
# matplotlib.pyplot), so "in sys.modules" would test them, not lrne.
IMPORT_SPY = """
import builtins, json, sys
seen = []
real_import = builtins.__import__
def spy(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    if importer.split(".")[0] == "lrne" and name.split(".")[0] in ("rich", "matplotlib"):
        seen.append(f"{importer} imports {name}")
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = spy
import lrne
lrne_modules = sorted(m for m in sys.modules if m.split(".")[0] == "lrne")
builtins.__import__ = real_import
"""

# Then, in the same process: the shell (``lrne.callbacks``, which the README
# uses, ``lrne.load_run``, ``lrne.config``) loads on first use, and importing
# lrne's evosax integration registers nothing with evosax (``register()`` does).
SHELL = """
assert lrne.callbacks.ProgressBar and lrne.callbacks.MetricsLog
assert lrne.load_run is lrne.rundir.load_run
assert lrne.config.DEFAULT and lrne.checkpoint.save_params
from lrne import load_run
assert {"callbacks", "load_run"} <= set(dir(lrne))
try:
    lrne.no_such_name
except AttributeError as error:
    assert "no_such_name" in str(error)
else:
    raise AssertionError("no AttributeError")
import lrne.integrations.evosax
from evosax import algorithms
assert not any(n.startswith("lrne_") for n in algorithms.algorithms)
print(json.dumps({"seen": seen, "lrne": lrne_modules}))
"""


def test_version_is_defined_once_in_pyproject():
    assert lrne.__version__ == PYPROJECT["project"]["version"]
    source = (ROOT / "lrne" / "__init__.py").read_text()
    assert PYPROJECT["project"]["version"] not in source


def test_license_file_is_the_declared_apache_license():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_py_typed_ships_with_the_package():
    assert resources.files("lrne").joinpath("py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["lrne"]


def test_import_lrne_is_light_and_reaches_the_shell_on_first_use():
    """In one fresh process: ``import lrne`` loads neither the shell nor rich or
    matplotlib (the spy), then the shell loads on first use (``SHELL``)."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_SPY + SHELL], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["seen"] == []
    shell = ("lrne.cli", "lrne.callbacks", "lrne.config", "lrne.rundir")
    shell += ("lrne.checkpoint",)
    assert not set(shell) & set(found["lrne"]), found["lrne"]
    assert "lrne.genome" in found["lrne"]  # the spy saw lrne's imports
    for name in lrne.__all__:
        assert getattr(lrne, name) is not None
