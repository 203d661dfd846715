"""mkdocs hooks: the parts of the docs that are generated at build time, so they never go stale.

In a page's Markdown:

- ``<!-- readme: ## Heading -->`` becomes that section of README.md (up to the
  next heading of the same or a higher level; ``<!-- readme: ## Heading | intro -->``:
  up to its first subsection), with its image paths pointing at the copies
  below;
- ``<!-- table: name -->`` becomes a benchmark table rendered from
  ``benchmarks/results/*.json`` by ``benchmarks/tables.py``, the generator of
  the README's tables, or by ``table(result)`` of ``benchmarks/NAME.py``;
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
MARKER = re.compile(r"<!--\s*(readme|table|cli|exports)\s*:?\s*(.*?)\s*-->")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")

# `<!-- table: name -->` -> the benchmarks/tables.py renderer and the results it reads.
TABLES = {
    "online": lambda t: "\n".join(
        t._online_lines(t._load("nres_lorenz"), t._load("estimator_variance"))
    ),
    "subspace": lambda t: "\n".join(t._subspace_lines(t._load("subspace_finetune"))),
    "correspondence": lambda t: "\n".join(t._correspondence_lines(t._load("correspondence"))),
}


def readme_section(readme: str, heading: str, intro: bool = False) -> str:
    """The body of the README section titled ``heading`` (e.g. ``## Quickstart``).

    With ``intro``, only its text before its first subsection.
    """
    level = len(heading) - len(heading.lstrip("#"))
    title = heading.lstrip("#").strip()
    lines, body, inside, fenced = readme.splitlines(), [], False, False
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match and inside and (intro or len(match.group(1)) <= level):
            break
        if inside:
            body.append(line)
        elif match and len(match.group(1)) == level and match.group(2) == title:
            inside = True
    if not inside:
        raise PluginError(f"docs: README.md has no section {heading!r}")
    return "\n".join(body).strip()


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


def _fill(kind: str, argument: str, page_uri: str) -> str:
    if kind == "readme":
        heading, _, mode = argument.partition("|")
        text = readme_section(
            (ROOT / "README.md").read_text(), heading.strip(), mode.strip() == "intro"
        )
        # Images in the README point into the repository; in the site they are under results/.
        up = "../" * page_uri.count("/")
        return text.replace("](benchmarks/results/", f"]({up}results/")
    if kind == "table":
        if argument in TABLES:
            return TABLES[argument](_tables())
        return benchmark_table(argument)
    if kind == "exports":
        return exports(argument)
    return cli_reference()


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        return _fill(match.group(1), match.group(2), page.file.src_uri)

    return MARKER.sub(replace, markdown)


def on_files(files: Files, config) -> Files:
    for png in sorted(RESULTS.rglob("*.png")):
        uri = f"results/{png.relative_to(RESULTS).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files
