"""The benchmark harness: ``python -m benchmarks NAME [--quick] [--check] [--table]``.

Every ``benchmarks/NAME.py`` that defines ``run`` and ``table`` is a benchmark.
It states

- its docstring, whose first line ``python -m benchmarks --help`` lists;
- ``FULL`` and ``QUICK`` (``--quick``: toy sizes, seconds long, for the tests):
  its sizes. Each number among them is also an option ``--NAME VALUE``; the
  sizes used become attributes of ``args`` and the result's ``setup``;
- ``run(args) -> dict``: the measurements. ``args`` holds the options, the
  sizes, ``quick`` and ``output`` (the JSON's path). A ``"setup"`` entry adds
  to the recorded setup; ``None`` writes nothing;
- ``table(result) -> str``: Markdown of a result, for the docs'
  ``<!-- table: NAME -->`` markers (docs/hooks.py) and ``--table``;
- ``TARGETS``: ``{"key/sub/*": (">=", 10.0)}``, what ``--check`` holds the
  committed result to (``*``: every entry at that level);
- where needed: ``arguments(parser)`` (its own options), ``output(args)`` (the
  result's name below ``results/``, default NAME), ``load(suffix)`` (the
  committed results its table takes, default ``results/NAME<suffix>.json``)
  and ``summary(result)`` (derived values that ``TARGETS`` name).

The harness adds the envelope (``machine``, ``quick``, ``setup`` and
``wall_seconds``, the seconds the run took), writes ``results/<name>.json``
(``results/<name>_quick.json`` with ``--quick``) and prints its table.
``python -m benchmarks tables [--check]`` rewrites (checks) the README's
headline table. Scripts still run as ``python benchmarks/NAME.py [options]``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import operator
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README_BLOCKS = {"suite": "suite"}
"""README.md's blocks ``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``: the benchmark
whose table fills each."""
ENVELOPE = ("machine", "quick", "setup", "wall_seconds")
"""The entries the harness adds to every result."""
running: str | None = None
"""The benchmark this process runs (set before it is imported)."""
OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


def benchmarks() -> dict[str, str]:
    """Every benchmark's name and the first line of its docstring (read, not imported)."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        tree = ast.parse(path.read_text())
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        if {"run", "table"} <= defined:
            found[path.stem] = (ast.get_docstring(tree) or "").splitlines()[0]
    return found


def module(name: str) -> ModuleType:
    """The benchmark module ``name``, imported as its script imports its neighbours."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(name)


def read(name: str | Path) -> dict | None:
    """``results/NAME.json`` (or the file ``name``), None if it was never written."""
    path = name if isinstance(name, Path) else RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def read_each(template: str, keys) -> dict[str, dict]:
    """``read(template.format(key))`` for each key whose file exists, by key."""
    results = {key: read(template.format(key)) for key in keys}
    return {key: result for key, result in results.items() if result is not None}


def load(name: str, suffix: str = "") -> Any:
    """The committed result(s) that benchmark ``name``'s ``table`` takes."""
    bench = module(name)
    return bench.load(suffix) if hasattr(bench, "load") else read(name + suffix)


def render(name: str) -> str:
    """Benchmark ``name``'s table of its committed result."""
    result = load(name)
    if not result:
        return f"Not measured yet: run `python -m benchmarks {name}`."
    return module(name).table(result)


def _number(bound: Any) -> str:
    return str(bound) if isinstance(bound, bool) else f"{bound:g}"


def pm(cell: dict, digits: int = 3) -> str:
    """A ``mean_ci95`` cell as ``mean ± half-width``."""
    return f"{cell['mean']:.{digits}f} ± {cell['ci95']:.{digits}f}"


def goal(targets: dict, key: str) -> str:
    """A target as a table cell: ``>= 10``."""
    op, bound = targets[key]
    return f"{op} {_number(bound)}"


def entries(tree: Any, path: str) -> list[tuple[str, Any]]:
    """(path, value) of every entry ``path`` names in ``tree``; None where one is missing."""
    found = [("", tree)]
    for part in path.split("/"):
        deeper = []
        for at, node in found:
            node = node if isinstance(node, dict) else {}
            for key in node if part == "*" else [part]:
                deeper.append((f"{at}/{key}".lstrip("/"), node.get(key)))
        found = deeper
    return found


def check(targets: dict, result: Any) -> list[tuple[str, str, Any, bool]]:
    """(path, target, value, met) for every entry each target names."""
    rows = []
    for path, (op, bound) in targets.items():
        for at, value in entries(result, path):
            met = value is not None and bool(OPS[op](value, bound))
            rows.append((at, f"{op} {_number(bound)}", value, met))
    return rows


def report(bench: ModuleType, result: Any) -> int:
    """Print each target against the committed result; 1 if one is missed or missing."""
    if not result:
        print("no committed result: nothing to check")
        return 1
    targets = getattr(bench, "TARGETS", {})
    if not targets:
        print("no targets stated")
        return 0
    values = bench.summary(result) if hasattr(bench, "summary") else result
    rows = check(targets, values)
    for path, target, value, met in rows:
        shown = "missing" if value is None else value
        print(f"{'ok  ' if met else 'MISS'} {path}: {shown} (target {target})")
    return 0 if all(met for *_, met in rows) else 1


def replace_block(readme: str, name: str, text: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in readme or end not in readme:
        raise SystemExit(f"README.md has no {start} ... {end} block")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{text}\n{end}{tail}"


def readme(check_only: bool) -> int:
    """Rewrite README.md's generated blocks, or (``check_only``) exit 1 if they are stale."""
    path = ROOT / "README.md"
    text = path.read_text()
    new = text
    for block, name in README_BLOCKS.items():
        new = replace_block(new, block, render(name))
    if check_only:
        if new != text:
            print("README.md's headline table is out of date: run `python -m benchmarks tables`")
            return 1
        return 0
    path.write_text(new)
    return 0


def overridden(defaults: dict, items: list[str]) -> dict:
    """A copy of ``defaults`` with ``--set key=value`` items applied (each cast to its
    default's type)."""
    out = dict(defaults)
    for item in items:
        key, value = item.split("=", 1)
        out[key] = type(out[key])(value)
    return out


def write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def usage(listing: dict[str, str]) -> str:
    width = max(map(len, listing))
    lines = [
        "usage: python -m benchmarks NAME [--quick] [--check] [--table] [options]",
        "       python -m benchmarks tables [--check]",
        "",
        "Runs a benchmark and writes benchmarks/results/NAME.json (NAME_quick.json with",
        "--quick); --check holds the committed result to the benchmark's targets, --table",
        "prints its Markdown table; `tables` rewrites README.md's headline table.",
        "`python -m benchmarks NAME --help` lists a benchmark's options.",
        "",
        "benchmarks:",
        *(f"  {name:<{width}}  {line}" for name, line in listing.items()),
    ]
    return "\n".join(lines)


def _common_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--quick", action="store_true", help="toy sizes (QUICK), for the tests")
    parser.add_argument(
        "--check", action="store_true", help="hold the committed result to TARGETS (exit 1: missed)"
    )
    parser.add_argument("--table", action="store_true", help="print the committed result's table")
    return parser


def parser_for(name: str, bench: ModuleType) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks {name}",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options()],
    )
    quick = getattr(bench, "QUICK", bench.FULL)
    for key, value in bench.FULL.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            parser.add_argument(
                f"--{key.replace('_', '-')}",
                dest=key,
                type=type(value),
                help=f"default {value} (quick: {quick.get(key, value)})",
            )
    if hasattr(bench, "arguments"):
        bench.arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    listing = benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(listing))
        return 0
    name, rest = argv[0], argv[1:]
    if name == "tables":
        return readme(check_only="--check" in rest)
    if name not in listing:
        print(f"unknown benchmark {name!r}\n\n{usage(listing)}", file=sys.stderr)
        return 2
    global running
    running = name
    bench = module(name)
    # --check and --table read the committed results: the options of a run do not apply.
    shown, _ = _common_options().parse_known_args(rest)
    suffix = "_quick" if shown.quick else ""
    if (shown.check or shown.table) and not {"-h", "--help"} & set(rest):
        result = load(name, suffix)
        if shown.check:
            return report(bench, result)
        print(bench.table(result) if result else "no committed result")
        return 0
    args = parser_for(name, bench).parse_args(rest)
    sizes = dict(getattr(bench, "QUICK", bench.FULL) if args.quick else bench.FULL)
    for key in sizes:
        if getattr(args, key, None) is not None:
            sizes[key] = getattr(args, key)
        setattr(args, key, sizes[key])
    args.sizes = sizes
    args.output = (
        RESULTS / f"{bench.output(args) if hasattr(bench, 'output') else name}{suffix}.json"
    )
    start = time.perf_counter()
    body = bench.run(args)
    if body is None:
        return 0
    from common import machine  # imports jax: not for --help, --check or --table

    result = {
        "machine": machine(),
        "quick": args.quick,
        "setup": {**sizes, **body.pop("setup", {})},
        **body,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    write(args.output, result)
    print(bench.table(load(name, suffix)))
    return 0


def script(path: str) -> None:
    """``python benchmarks/NAME.py [options]``: the harness runs benchmark NAME."""
    sys.exit(main([Path(path).stem, *sys.argv[1:]]))
