"""The README is the front door: short, its example runs, its commands are CI's, its
links lead into the docs, and its one table matches the committed results."""

import re
from pathlib import Path

import harness  # benchmarks/harness.py (pytest's pythonpath)
from markdown_blocks import python_blocks

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_headline_table_matches_committed_results(capsys):
    # `python -m benchmarks tables --check`, in-process.
    assert harness.main(["tables", "--check"]) == 0, capsys.readouterr().out


def test_readme_is_short_and_its_links_resolve():
    assert len(README.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        assert (ROOT / link).exists(), link


def test_quickstart_commands_are_the_ci_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e . && lrne train" in README
    assert "pip install -e '.[test]' && pytest" in README
    assert "pip install -q -e '.[test]'" in ci and "\npytest\n" in ci


def test_example_runs_as_written(monkeypatch, tmp_path):
    blocks = python_blocks(ROOT / "README.md")
    assert blocks and not any(b.not_run or b.snippet for b in blocks)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile("\n" * block.line + block.code, "README.md", "exec"), namespace)
    # The rank-4 GA solved CartPole: the best member's best episodes, and its mean
    # over 32 fresh episodes it was never selected on.
    assert float(namespace["metrics"]["best_fitness"]) >= 475.0
    assert float(namespace["score"]) >= 475.0
