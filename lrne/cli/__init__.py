"""``lrne`` command line: argument parsing and dispatch, the shell around the pure library.

``lrne train`` runs any registry strategy on any task from a config
(:mod:`lrne.config`; without one, the factorized GA on CartPole-v1). The loop
is :func:`lrne.run` (checkpoints, resume); the command adds the options, a
progress bar and a metrics file (:mod:`lrne.callbacks`), and writes a run
directory (:mod:`lrne.rundir`): ``config.toml`` (the resolved config),
``metrics.jsonl``, ``run_state/``, ``checkpoint/`` (the best params),
``learning_curve.png`` and ``summary.json`` (with :func:`lrne.evaluate_best` on
fresh episodes or the held-out split).

``lrne eval``, ``lrne render`` and ``lrne sample`` use a run directory
(:func:`lrne.load_run`). Bad input is one line on stderr and exit code 2.

Modules: :mod:`~lrne.cli.parser` (the options), :mod:`~lrne.cli.resolve` (the
config ``lrne train`` runs, ``--resume``'s rules), :mod:`~lrne.cli.commands`
(the four commands), :mod:`~lrne.cli.present` (scores in words, GIFs, text).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lrne.cli import commands
from lrne.cli.parser import UsageError, build_parser, subparser
from lrne.cli.resolve import Origins, resolve_train_config
from lrne.config import ConfigError
from lrne.rundir import RunDirError

__all__ = ["UsageError", "build_parser", "main", "resolve_train_config"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lrne`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    origins = Origins()
    try:
        if args.command == "train":
            config, resume = resolve_train_config(args, origins)
            commands.check_train(config, resume)
            commands.train(config, resume)
        else:
            {"eval": commands.evaluate, "render": commands.render, "sample": commands.sample}[
                args.command
            ](args)
    except (ConfigError, RunDirError, UsageError) as error:
        subparser(parser, args.command).error(str(origins.explain(error)))
    return 0
