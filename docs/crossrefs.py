"""A griffe extension: lrne's Sphinx-style roles become checked cross-references.

lrne's docstrings are Google style and name other objects with Sphinx roles,
``:class:`Factors```, ``:func:`~lrne.nn.perturbed.apply```, which Markdown
would show verbatim. Once the package is loaded, each role is resolved the way
Python resolves a name (the object itself, then its enclosing class and
module, then absolute) to the object's canonical path and rewritten as a
mkdocstrings cross-reference, ``[`Factors`][lrne.genome.Factors]``. A role
that names nothing, or an object the API reference does not render, makes
``mkdocs build --strict`` fail, so a stale name in a docstring fails CI.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|obj|exc):`(~?)\.?([\w.]+)`")
logger = griffe.get_logger("lrne_crossrefs")


def _lookup(collection: Any, path: str) -> str | None:
    try:
        found = collection[path]
        return found.final_target.path if found.is_alias else found.canonical_path
    except Exception:  # not a member, or an alias to something outside the package
        return None


def _resolve(obj: griffe.Object, name: str) -> str | None:
    collection = obj.modules_collection
    scope: griffe.Object | None = obj
    while scope is not None:
        found = _lookup(collection, f"{scope.path}.{name}")
        if found:
            return found
        scope = scope.parent
    return _lookup(collection, name)


def _rewrite(obj: griffe.Object) -> None:
    docstring = obj.docstring
    if docstring is None:
        return

    def replace(match: re.Match) -> str:
        short, name = match.groups()
        target = _resolve(obj, name)
        if target is None:
            location = f"{obj.relative_filepath}:{docstring.lineno}"
            logger.warning(f"{location}: cannot resolve {match.group(0)} in {obj.path}")
            return f"`{name}`"
        return f"[`{name.rsplit('.', 1)[-1] if short else name}`][{target}]"

    docstring.value = ROLE.sub(replace, docstring.value)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles in every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        pending = [pkg]
        while pending:
            obj = pending.pop()
            _rewrite(obj)
            pending.extend(member for member in obj.members.values() if not member.is_alias)
