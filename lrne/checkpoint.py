"""Checkpoints of a run (orbax): atomic saves, restore of the latest good one, params.

:class:`RunCheckpoints` keeps the states of one run under a directory, one
orbax step per save, the step being the index of the next generation to run.
Orbax writes each step to a temporary directory and renames it when complete,
so a process killed mid-save leaves no partial step behind. A step that is
there but does not restore (truncated or corrupted files) is moved aside to
``unreadable-<step>`` (kept, never deleted; or only skipped, when reading
read-only) and the previous one is used.

:func:`save_params` / :func:`load_params` store one params pytree (e.g. a
strategy's ``best_params``) for export.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from lrne.errors import ArgumentError
from lrne.genome import PyTree

log = logging.getLogger(__name__)


def _signature(tree: Any) -> list[tuple[tuple[int, ...], str]]:
    """The sorted (shape, dtype) of every array: comparable between a template and metadata
    (a typed key counts as its key data, as orbax stores it)."""
    out = []
    for x in jax.tree.leaves(tree):
        dtype = getattr(x, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            x = jax.eval_shape(jax.random.key_data, x)
        out.append((tuple(getattr(x, "shape", ())), str(getattr(x, "dtype", ""))))
    return sorted(out)


class RunCheckpoints:
    """Saves and restores the states of one run under ``directory``.

    Args:
        directory: the run's checkpoint directory (created on the first save).
        max_to_keep: the newest steps kept; older ones are deleted by orbax.

    Use it as a context manager, or call :meth:`close`, so that the last
    (asynchronous) save is complete before the process moves on.

    Example:
        >>> with RunCheckpoints(path) as checkpoints:
        ...     step, tree = checkpoints.restore_latest(template) or (0, template)
        ...     checkpoints.save(step + 1, tree)
    """

    def __init__(self, directory: str | Path, max_to_keep: int = 3) -> None:
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ArgumentError(
                "max_to_keep", f"max_to_keep must be an int >= 1, got {max_to_keep!r}"
            )
        self.directory = Path(directory).resolve()
        self.max_to_keep = max_to_keep
        self._manager: ocp.CheckpointManager | None = None

    def restore_latest(
        self, template: PyTree, *, read_only: bool = False
    ) -> tuple[int, PyTree] | None:
        """``(step, tree)`` of the newest step that restores, or None if there is none.

        ``template`` is a tree of the saved structure (e.g. the run's initial
        state, or its ``jax.ShapeDtypeStruct`` s): its shapes, dtypes and
        shardings are those restored. A step whose files are damaged is logged
        and moved to ``unreadable-<step>``; with ``read_only`` it is skipped,
        and nothing in the directory changes.

        Raises:
            lrne.errors.ArgumentError: (``argument`` ``"checkpoint_dir"``) a
                readable step holds arrays of other shapes or dtypes than
                ``template``: a different run, never moved aside.
        """
        if not self.directory.is_dir():
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        # A manager of its own: moving steps aside would leave a saving one stale.
        handler = ocp.StandardCheckpointHandler()  # so that metadata can be read
        with ocp.CheckpointManager(self.directory, item_handlers=handler) as manager:
            for step in sorted(manager.all_steps(), reverse=True):
                try:
                    stored = manager.item_metadata(step).tree
                except Exception:  # unreadable metadata: a damaged step, handled below
                    stored = None
                if stored is not None and _signature(stored) != _signature(abstract):
                    raise ArgumentError(
                        "checkpoint_dir",
                        f"checkpoint_dir: step {step} in {str(self.directory)!r} holds another "
                        "run's state (different shapes or dtypes); use a new directory",
                    )
                try:
                    return step, manager.restore(step, args=ocp.args.StandardRestore(abstract))
                except Exception as error:  # orbax raises several types for damaged files
                    if read_only:
                        continue
                    aside = self.directory / f"unreadable-{step}"
                    log.warning(
                        "checkpoint %d is unreadable (%s); moved to %s, trying an older one",
                        step,
                        type(error).__name__,
                        aside.name,
                    )
                    (self.directory / str(step)).rename(aside)
        return None

    def save(self, step: int, tree: PyTree) -> None:
        """Save ``tree`` as ``step``, asynchronously and atomically."""
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep)
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
            )
        self._manager.save(step, args=ocp.args.StandardSave(tree))

    def close(self) -> None:
        """Wait for the last save to complete and release orbax's resources."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None

    def __enter__(self) -> RunCheckpoints:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def save_params(path: str | Path, params: PyTree) -> None:
    """Write one params pytree to ``path`` (an orbax directory), replacing what is there."""
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(Path(path).resolve(), params, force=True)
    checkpointer.wait_until_finished()
    checkpointer.close()


def load_params(path: str | Path, template: PyTree | None = None) -> PyTree:
    """Read a params pytree written by :func:`save_params`.

    Without ``template`` the result is nested dicts of arrays; with one (e.g.
    ``task.init_params(key)``) it has the template's structure and node types
    (:class:`~lrne.genome.Factors` included).
    """
    checkpointer = ocp.StandardCheckpointer()
    abstract = None
    if template is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    params = checkpointer.restore(Path(path).resolve(), abstract)
    checkpointer.close()
    return params
