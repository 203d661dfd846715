"""The Python blocks of every docs page run as written, and its markers fill.

Each page under ``docs/`` with Python blocks is one test: its blocks run in
order in one namespace (a block may use what an earlier block of the page
defined), in a scratch directory. ``CHECKS`` adds assertions on what some
blocks compute. A block marked ``<!-- not run: why -->`` on the line before
its fence is skipped (see ``markdown_blocks.py``); there are few of them.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest
from markdown_blocks import not_run_markers, python_blocks

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MAX_NOT_RUN = 3


def _name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def _ga_solves_cartpole(ns: dict) -> None:
    assert float(ns["metrics"]["best_fitness"]) >= 475.0
    assert ns["history"]["best_fitness"].shape == (5,)
    assert jax.tree.leaves(ns["factors"])  # factorize gave factors of the dense params


def _sharded_equals_plain(ns: dict) -> None:
    # The sharded step equals the plain one on the same key, and the mean moved.
    lrne, strategy, task = ns["lrne"], ns["strategy"], ns["task"]
    plain = jax.jit(lrne.generation_step(strategy, task))
    state, metrics = plain(strategy.init(jax.random.key(0), ns["params"]), jax.random.key(2))
    for k in ("fitness_mean", "fitness_max"):
        np.testing.assert_allclose(ns["metrics"][k], metrics[k], rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        ns["state"].mean,
        state.mean,
    )
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), state.mean, ns["params"])
    assert max(jax.tree.leaves(moved)) > 0


def _evosax_loop_improves(ns: dict) -> None:
    start, _, _ = ns["problem"].eval(jax.random.key(0), ns["solution"][None], ns["problem_state"])
    assert float(ns["metrics"]["best_fitness"]) < float(start[0])


def _es_learns(ns: dict) -> None:
    assert float(ns["metrics"]["fitness_mean"]) >= 400.0


def _stock_flax_policy_solves_cartpole(ns: dict) -> None:
    assert len(ns["result"].history) == 30
    assert float(ns["score"]) >= 475.0


def _nres_fits_lorenz(ns: dict) -> None:
    assert float(ns["task"].loss(ns["state"].mean)) < 150.0  # from 353.6
    assert ns["history"]["update_norm"].shape == (200,)


def _callback_saw_every_generation(ns: dict) -> None:
    assert len(ns["result"].history) == 5


CHECKS: dict[tuple[str, int], Callable[[dict], None]] = {
    # (page, index among the page's blocks that run): checked right after that block
    ("getting-started.md", 0): _ga_solves_cartpole,
    ("getting-started.md", 1): _es_learns,
    ("layers.md", 0): _stock_flax_policy_solves_cartpole,
    ("papers/li-et-al-2023.md", 0): _nres_fits_lorenz,
    ("scaling.md", 0): _sharded_equals_plain,
    ("evosax.md", 0): _evosax_loop_improves,
    ("concepts.md", 0): _callback_saw_every_generation,
}


def _runnable(page: Path) -> bool:
    return any(b.not_run is None and b.snippet is None for b in python_blocks(page))


@pytest.mark.parametrize("page", [_name(p) for p in PAGES if _runnable(p)])
def test_python_blocks_of_a_docs_page_run(page, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    namespace: dict = {"__name__": "docs_page"}
    index = 0
    for block in python_blocks(DOCS / page):
        if block.not_run is not None or block.snippet is not None:
            continue
        # Pad with blank lines so that a traceback names the line in the page.
        exec(compile("\n" * block.line + block.code, f"docs/{page}", "exec"), namespace)
        if (page, index) in CHECKS:
            CHECKS[page, index](namespace)
        index += 1


def test_every_check_names_a_block_that_runs():
    for page, index in CHECKS:
        runs = [b for b in python_blocks(DOCS / page) if b.not_run is None and b.snippet is None]
        assert index < len(runs), f"CHECKS names block {index} of docs/{page}: it has {len(runs)}"


def test_not_run_blocks_are_marked_with_a_reason_and_few():
    marked = []
    for page in PAGES:
        text = page.read_text()
        starts = {b.line: b for b in python_blocks(page)}
        for line in not_run_markers(text):
            block = starts.get(line + 1)
            assert block is not None, f"docs/{_name(page)}:{line}: marker not before a python fence"
            assert block.not_run, f"docs/{_name(page)}:{line}: say why the block is not run"
            marked.append(f"docs/{_name(page)}:{block.line}")
    assert len(marked) <= MAX_NOT_RUN, f"too many blocks not run: {marked}"


def test_included_snippets_are_example_scripts_that_their_tests_run():
    """``--8<--`` blocks include files; the examples' own tests run them
    (tests/test_examples.py checks that every script is tested)."""
    snippets = [b.snippet for p in PAGES for b in python_blocks(p) if b.snippet is not None]
    assert snippets
    for path in snippets:
        assert path.startswith("examples/") and (ROOT / path).is_file(), path


def _hooks():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("lrne_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_table_marker_fills_and_every_table_is_shown():
    hooks = _hooks()
    used = set()
    for page in PAGES:
        for name in re.findall(r"<!--\s*table\s*:\s*(.*?)\s*-->", page.read_text()):
            text = hooks._fill("table", name)
            assert text.strip(), (page, name)
            used.add(name)
    assert set(hooks.TABLES) <= used, f"tables no page shows: {set(hooks.TABLES) - used}"


def test_no_page_is_assembled_from_the_readme():
    for page in PAGES:
        assert not re.search(r"<!--\s*readme\b", page.read_text()), _name(page)
