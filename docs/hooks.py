"""mkdocs hooks: the parts of the docs that are generated at build time, so they never go stale.

In a page's Markdown:

- ``<!-- table: name -->`` becomes a benchmark table rendered from
  ``benchmarks/results/*.json`` by ``benchmarks/tables.py`` (the names in
  ``TABLES``; the same renderers write the README's headline table), or by
  ``table(result)`` of ``benchmarks/NAME.py``;
- ``<!-- cli -->`` becomes the help of ``lrne`` and of each of its commands,
  from the argument parser of ``lrne.cli``;
- ``<!-- exports: lrne -->`` becomes the list of a package's ``__all__``, each
  name linked to the page of the object it re-exports.

The PNG plots under ``benchmarks/results/`` are copied into the site under
``results/``. A marker that cannot be filled fails the build.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
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

# `<!-- table: name -->` -> the benchmarks/tables.py renderer and the results it reads.
TABLES = {
    # speed and memory (docs/benchmarks.md, docs/how-it-is-fast.md)
    "ga_vs_evosax": lambda t: "\n".join(t._ga_lines(t._load("ga_vs_evosax"))),
    "early_exit": lambda t: "\n".join(t._early_exit_lines(t._load("early_exit"))),
    "es_throughput": lambda t: "\n".join(t._es_lines(t._load("es_throughput"))),
    "es_memory": lambda t: "\n".join(t._es_memory_lines(t._load("es_memory"))),
    "lm_throughput": lambda t: "\n".join(t._lm_lines(t._load("lm_throughput"))),
    "scaling": lambda t: "\n".join(t._scaling_lines(t._load("scaling"))),
    "floor": lambda t: "\n".join(t._floor_lines()),
    "compile_time": lambda t: "\n".join(t._compile_lines()),
    "hyperscale": lambda t: "\n".join(t._hyperscale_lines()),
    # learning results (docs/results.md and the paper pages)
    "suite": lambda t: t.render_suite(),
    "lm_train": lambda t: t.render_lm(),
    "paper_a_fair": lambda t: t.render_paper_a_fair(),
    "online": lambda t: "\n".join(
        t._online_lines(t._load("nres_lorenz"), t._load("estimator_variance"))
    ),
    "subspace": lambda t: "\n".join(t._subspace_lines(t._load("subspace_finetune"))),
    "correspondence": lambda t: "\n".join(t._correspondence_lines(t._load("correspondence"))),
}


def _tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lrne_bench_tables", ROOT / "benchmarks" / "tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_table(name: str) -> str:
    """``benchmarks/NAME.py``'s ``table(result)`` of ``benchmarks/results/NAME.json``."""
    script, result = ROOT / "benchmarks" / f"{name}.py", RESULTS / f"{name}.json"
    if not (script.exists() and result.exists()):
        raise PluginError(f"docs: unknown table {name!r}; known: {sorted(TABLES)} or a script")
    sys.path.insert(0, str(script.parent))  # the scripts import their `common` module
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(script.parent))
    return module.table(json.loads(result.read_text()))


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


def exports(package: str) -> str:
    """A package's ``__all__`` as a table, each name linked to where it is defined."""
    module = importlib.import_module(package)
    rows = ["| name | defined in |", "| --- | --- |"]
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, ModuleType):
            target, where = obj.__name__, "(a module)"
        else:
            target, where = f"{obj.__module__}.{obj.__qualname__}", f"`{obj.__module__}`"
        rows.append(f"| [`{package}.{name}`][{target}] | {where} |")
    return "\n".join(rows)


def _fill(kind: str, argument: str) -> str:
    if kind == "table":
        if argument in TABLES:
            return TABLES[argument](_tables())
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
