"""mkdocs hooks: the parts of the docs that are generated at build time, so they never go stale.

In a page's Markdown:

- ``<!-- table: name -->`` becomes a benchmark table: ``table(result)`` of
  ``benchmarks/NAME.py`` on its committed ``benchmarks/results/`` (``TABLES``:
  the marker names, each to its benchmark; the suite's also writes the
  README's headline table);
- ``<!-- cli -->`` becomes the help of ``lrne`` and of each of its commands,
  from the argument parser of ``lrne.cli``;
- ``<!-- exports: lrne -->`` becomes the list of a package's ``__all__``, each
  name linked to the page of the object it re-exports.

The PNG plots under ``benchmarks/results/`` are copied into the site under
``results/``. A marker that cannot be filled fails the build.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import sys
from pathlib import Path
from types import ModuleType

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"<!--\s*(table|cli|exports)\s*:?\s*(.*?)\s*-->")

# `<!-- table: name -->` -> the benchmark (benchmarks/NAME.py) whose `table` fills it:
# the benchmark of that name, but for three markers.
TABLES = {
    name: name
    for name in (
        # speed and memory (docs/benchmarks.md, how-it-is-fast.md, scaling.md, layers.md)
        "ga_vs_evosax",
        "early_exit",
        "es_throughput",
        "es_memory",
        "lm_throughput",
        "scaling",
        "floor",
        "compile_time",
        "hyperscale",
        "stock_layers",
        "blackbox",
        "diagnostics",
        "lineage",
        # learning results (docs/results.md and the paper pages)
        "suite",
        "lm_train",
        "correspondence",
    )
} | {"paper_a_fair": "paper_a", "online": "nres_lorenz", "subspace": "subspace_finetune"}


def _harness() -> ModuleType:
    """benchmarks/harness.py, imported as the benchmarks import it."""
    folder = str(ROOT / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("harness")


def benchmark_table(name: str) -> str:
    """The table of marker ``name``: its benchmark's ``table`` of its committed results."""
    if name not in TABLES:
        raise PluginError(f"docs: unknown table {name!r}; known: {sorted(TABLES)}")
    return _harness().render(TABLES[name])


def cli_reference() -> str:
    """``lrne --help`` and every command's ``--help``, as the parser prints them."""
    from lrne.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width: fix it
    parser = build_parser()
    parts = [f"## `{parser.prog}`\n\n```text\n{parser.format_help().rstrip()}\n```"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                parts.append(
                    f"## `{command.prog}`\n\n```text\n{command.format_help().rstrip()}\n```"
                )
    return "\n\n".join(parts)


def _target(package: str, name: str, obj: object) -> str:
    """Where ``obj`` is documented: its defining module and name. A partial (``lrne.nres``)
    has no defining module of its own: it is documented in the deepest module binding it."""
    if isinstance(obj, functools.partial):
        homes = [
            module.__name__
            for module in list(sys.modules.values())
            if getattr(module, "__name__", "").startswith(package) and vars(module).get(name) is obj
        ]
        return f"{max(homes, key=len)}.{name}"
    return f"{obj.__module__}.{obj.__qualname__}"


def exports(package: str) -> str:
    """A package's ``__all__`` as a table, each name linked to where it is defined."""
    module = importlib.import_module(package)
    rows = ["| name | defined in |", "| --- | --- |"]
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, ModuleType):
            target, where = obj.__name__, "(a module)"
        else:
            target = _target(package, name, obj)
            where = f"`{target.rpartition('.')[0]}`"
        rows.append(f"| [`{package}.{name}`][{target}] | {where} |")
    return "\n".join(rows)


def _fill(kind: str, argument: str) -> str:
    if kind == "table":
        return benchmark_table(argument)
    if kind == "exports":
        return exports(argument)
    return cli_reference()


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        return _fill(match.group(1), match.group(2))

    return MARKER.sub(replace, markdown)


def on_files(files: Files, config) -> Files:
    for png in sorted(RESULTS.rglob("*.png")):
        uri = f"results/{png.relative_to(RESULTS).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files
