"""The package's shape: no import circle among lrne's modules, no module over 450 lines."""

import ast
from pathlib import Path

LRNE = Path(__file__).resolve().parent.parent / "lrne"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(LRNE.rglob("*.py")):
        parts = path.relative_to(LRNE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The lrne modules ``name`` imports, at module level or inside functions alike."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                # `from lrne import perturb` imports the module lrne.perturb.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_lrne():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["lrne.strategies.es"] >= {"lrne.perturb", "lrne.fitness"}  # the parser works
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # the search works
    assert _cycle(graph) is None


def test_no_module_over_450_lines():
    long = {
        str(p.relative_to(LRNE.parent)): n
        for p in LRNE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
