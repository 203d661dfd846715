"""The former name of :mod:`lrne.rundir` (a run directory: :func:`lrne.load_run`), kept so
that imports of it keep working."""

from lrne.rundir import SavedRun, load_run, read_config, run_keys

__all__ = ["SavedRun", "load_run", "read_config", "run_keys"]
