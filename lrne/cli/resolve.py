"""The config ``lrne train`` runs: its layers, where each key came from, and what
``--resume`` may change."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from lrne import config as cfg
from lrne import rundir
from lrne.cli.parser import SHORTCUTS, UsageError

# What --resume may change: nothing that changes what the generations compute.
RESUMABLE = ("run.generations", "run.seconds", "run.checkpoint_every", "run.eval_episodes")


class Origins:
    """Where each config key came from (a file, a shortcut flag, ``--set``), to name it
    in an error."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def add(self, layer: dict, label: str | dict[str, str]) -> None:
        """Record that the keys of ``layer`` came from ``label`` (per key, for a dict)."""
        for key in cfg.flatten(layer):
            self.labels[key] = label if isinstance(label, str) else label[key]

    def name(self, key: str) -> str:
        """How an error names ``key``: ``argument --sigma (strategy.sigma)``, ``--set
        strategy.sigma``, or the file it came from."""
        label = self.labels[key]
        if label == "--set":
            return f"--set {key}"
        return f"argument {label} ({key})" if label.startswith("--") else f"{label}: {key}"

    def explain(self, error: Exception) -> Exception:
        """``error`` with the option or file its key came from (a ConfigError naming a key)."""
        if not isinstance(error, cfg.ConfigError) or error.key not in self.labels:
            return error
        return UsageError(f"{self.name(error.key)}: {error.message}")


def _shortcut_layer(args: argparse.Namespace) -> tuple[dict, dict[str, str]]:
    layer: dict[str, dict[str, Any]] = {}
    flags = {}
    for flag, key, _, _ in SHORTCUTS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            section, _, name = key.partition(".")
            layer.setdefault(section, {})[name] = list(value) if isinstance(value, tuple) else value
            flags[key] = flag
    return layer, flags


def resolve_train_config(
    args: argparse.Namespace, origins: Origins | None = None
) -> tuple[cfg.Config, bool]:
    """The config of ``lrne train``'s options and whether it resumes.

    Raises:
        ConfigError: a bad config value (``origins`` records where each key came from).
        UsageError: options that do not go together, or a ``--config`` or ``--resume``
            that cannot be read.
    """
    origins = Origins() if origins is None else origins
    shortcuts, flags = _shortcut_layer(args)
    assignments = cfg.assignments_layer(args.set)
    explicit = cfg.flatten(shortcuts) + cfg.flatten(assignments)

    if args.resume is None:
        base = cfg.DEFAULT
        if args.config is not None:
            try:
                base = cfg.read_toml(args.config)
            except cfg.ConfigError as error:
                raise UsageError(f"argument --config: {error}") from None
            origins.add(base, str(args.config))
        origins.add(shortcuts, flags)
        origins.add(assignments, "--set")
        config = cfg.Config.from_dict(cfg.merge([base, shortcuts, assignments]))
        return (config.shrink(keep=explicit) if args.quick else config), False

    if args.config is not None or args.quick:
        flag = "--config" if args.config is not None else "--quick"
        raise UsageError(f"argument {flag}: not with --resume (a run keeps its config)")
    run_dir = args.resume
    try:
        stored = rundir.read_config(run_dir)
    except (cfg.ConfigError, rundir.RunDirError) as error:
        raise UsageError(f"argument --resume: {error}") from None
    origins.add(shortcuts, flags)
    origins.add(assignments, "--set")
    config = cfg.Config.from_dict(cfg.merge([stored.to_dict(), shortcuts, assignments]))
    # Compared with the defaults written in: an option that repeats a default the
    # run used (in a config.toml written before defaults were) changes nothing.
    resolved, stored_resolved = config.resolve(), stored.resolve()
    for key in explicit:
        if key in RESUMABLE:
            continue
        ours, theirs = resolved.get(key), stored_resolved.get(key)
        if key == "run.output":
            same = Path(ours).resolve() == run_dir.resolve()
        else:
            same = ours == theirs
        if not same:
            raise UsageError(
                f"{origins.name(key)}: would change the run's meaning ({theirs!r} in "
                f"{run_dir / rundir.CONFIG_FILE}); with --resume only "
                f"{', '.join(RESUMABLE)} may change"
            )
    # The run's own sections; of [run], the lengths given here.
    run = config.run.model_copy(update={"output": str(run_dir.resolve())})
    return dataclasses.replace(stored, run=run), True
