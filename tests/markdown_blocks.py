"""The fenced code blocks of a Markdown file, for the tests that run them.

A block that must not run in the tests says why in an HTML comment on the line
just before its fence (readers of the docs site do not see it)::

    <!-- not run: needs the runs/train directory that `lrne train` writes -->
    ```python
    run = lrne.load_run("runs/train")
    ```

A Python block whose only content is a pymdownx snippet (``--8<-- "path"``)
includes that file when the docs are built; it is the file's tests that run it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run\s*:?\s*(?P<reason>.*?)\s*-->\s*$")
SNIPPET = re.compile(r'^-{1,3}8<-{1,3}\s+"(?P<path>[^"]+)"$')


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its code (dedented to its fence), where it
    starts (1-based line of the fence) and, if marked so, why it is not run."""

    lang: str
    code: str
    line: int
    not_run: str | None

    @property
    def snippet(self) -> str | None:
        """The included file's path, for a block that is only a snippet marker."""
        match = SNIPPET.match(self.code.strip())
        return match["path"] if match else None


def blocks(text: str) -> list[Block]:
    """The top-level fenced blocks of ``text`` (a fence inside a longer fence is
    content, as in CommonMark), in order."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        close = re.compile(rf"^ {{0,{len(indent) + 3}}}{fence[0]}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        info = match["info"].strip()
        marker = NOT_RUN.match(lines[i - 1]) if i > 0 else None
        found.append(
            Block(
                lang=info.split()[0].lstrip("{.").rstrip("}") if info else "",
                code="\n".join(body) + "\n",
                line=i + 1,
                not_run=marker["reason"] if marker else None,
            )
        )
        i = end + 1
    return found


def not_run_markers(text: str) -> list[int]:
    """The 1-based lines of every ``<!-- not run: ... -->`` outside fenced blocks."""
    inside = set()
    lines = text.splitlines()
    for block in blocks(text):
        end = block.line + block.code.count("\n")  # the closing fence's line
        inside.update(range(block.line, end + 1))
    return [n for n, line in enumerate(lines, 1) if NOT_RUN.match(line) and n not in inside]


def python_blocks(path: Path) -> list[Block]:
    """The Python blocks of the Markdown file at ``path``."""
    return [b for b in blocks(path.read_text()) if b.lang in ("python", "py")]
