"""The options of ``lrne train``, ``eval``, ``render`` and ``sample``, and their one-line errors."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from lrne import config as cfg
from lrne.strategies import registry

# (flag, config key, argparse type, help): the shortcuts of `lrne train`.
SHORTCUTS: list[tuple[str, str, Any, str]] = [
    ("--strategy", "strategy.name", str, "strategy, a name in lrne.strategies.REGISTRY"),
    ("--env", "task.env", str, "gymnax environment id"),
    ("--population-size", "strategy.population_size", int, "members per generation"),
    (
        "--num-elites",
        "strategy.num_elites",
        int,
        "GA: members kept unmutated each generation; must be < population size",
    ),
    (
        "--sigma",
        "strategy.sigma",
        float,
        "mutation std (GA: a fraction of each tensor's init std, sqrt of it per factor)",
    ),
    ("--rank", "model.rank", int, "factor rank of each layer where below min(in, out); 0 = dense"),
    ("--hidden", "model.hidden", None, "MLP hidden widths, comma-separated"),
    ("--generations", "run.generations", int, "generations (with --resume: the new total)"),
    (
        "--seconds",
        "run.seconds",
        float,
        "stop after this much wall-clock time, compiling included; 0 = no limit",
    ),
    ("--num-episodes", "task.num_episodes", int, "episodes per member"),
    ("--seed", "run.seed", int, "random seed"),
    ("--output", "run.output", str, "run directory to write"),
    (
        "--checkpoint-every",
        "run.checkpoint_every",
        int,
        "save the full run state every N generations (orbax, atomic); 0 = only at the end",
    ),
]


class UsageError(ValueError):
    """A bad command line that is not a config value (``argument --episodes: ...``)."""


class _Parser(argparse.ArgumentParser):
    """Reports bad input as one line and exit code 2, never a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    """``--version``: the installed lrne's."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print lrne's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        import lrne

        print(f"lrne {lrne.__version__}")
        parser.exit()


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated ints >= 1, e.g. 64,64; got {text!r}"
        ) from None
    if not widths:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints >= 1, got {text!r}")
    return widths


_widths.__name__ = "widths"  # type: ignore[attr-defined]  # argparse names it in messages


def _default_of(key: str, default: cfg.Config) -> str | None:
    """The default of a shortcut's key as help text: its value in the ``default`` run,
    or for a strategy option, each strategy's (read from the registry, where they are
    stated)."""
    value = default.get(key)
    section, _, name = key.partition(".")
    if value is None and section == "strategy":
        by_value: dict[Any, list[str]] = {}
        for strategy, data in registry.DEFAULTS.items():
            if name == "num_elites" and "elite_ratio" in data:
                rule = f"max(1, population size × {data['elite_ratio']:g})"
                by_value.setdefault(rule, []).append(strategy)
            elif name in data:
                by_value.setdefault(data[name], []).append(strategy)
        return "; ".join(f"{v} for {', '.join(names)}" for v, names in by_value.items()) or None
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return None if value is None else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The ``lrne`` argument parser (subcommands train, eval, render, sample)."""
    parser = _Parser(prog="lrne", description="Low-rank factorized neuroevolution in JAX.")
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser(
        "train",
        help="evolve a model on a task from a config",
        description=(
            "Run a strategy on a task. With no options: the factorized GA (W = A·B per "
            "layer, rank 4) on CartPole-v1, ~10 s. A config file (TOML: [run], [strategy], "
            "[task], [model]) runs any strategy of lrne.strategies.REGISTRY on a gymnax env, "
            "pixel Pendulum, a language model, Lorenz or digits; see configs/. Order: the "
            "config (or the built-in default), then --quick, then the options below, then "
            "--set."
        ),
    )
    train.add_argument("--config", type=Path, metavar="FILE", help="a TOML config file")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key, e.g. strategy.sigma=0.05 or model.hidden=[32,32] "
        "(the value is read as TOML; other text is a string); repeatable",
    )
    train.add_argument(
        "--quick",
        action="store_true",
        help="shrink the config to a seconds-long smoke run (2 generations, population 8, "
        "short episodes, small models); explicit options and --set keep their values",
    )
    default_run = cfg.load()
    for flag, key, kind, text in SHORTCUTS:
        default = _default_of(key, default_run)
        shown = f" (default: {default})" if default is not None else ""
        metavar = {int: "N", float: "X", None: "W,W"}.get(kind, flag[2:].upper())
        train.add_argument(
            flag,
            type=_widths if kind is None else kind,
            default=None,
            metavar="DIR" if flag == "--output" else metavar,
            help=f"{text}; config key {key}{shown}",
        )
    train.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="DIR",
        help="continue the run in DIR from its latest good checkpoint, with its config; "
        "only --generations, --seconds, --checkpoint-every (and --set of those run keys) "
        "may change, so a run can be extended: its generations are those of a straight run",
    )

    def run_dir_command(name: str, text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
        return command

    evaluate = run_dir_command(
        "eval",
        "re-score a run's best (and mean) params on fresh episodes or the held-out split",
    )
    evaluate.add_argument(
        "--episodes", type=int, default=None, help="episodes (default: run.eval_episodes)"
    )
    evaluate.add_argument(
        "--seed", type=int, default=None, help="draw other episodes (default: summary.json's)"
    )
    evaluate.add_argument(
        "--replay",
        action="store_true",
        help="score the answer rebuilt from RUN_DIR/lineage.bin (its seed lineage) alone",
    )
    render = run_dir_command("render", "write a GIF of a run's policy playing one episode")
    render.add_argument("--output", type=Path, default=None, help="GIF (default RUN_DIR/play.gif)")
    render.add_argument("--max-steps", type=int, default=None, help="cap the episode's length")
    sample = run_dir_command("sample", "print text written by a language-model run")
    sample.add_argument("--prompt", default=None, help="text to continue (default: a newline)")
    sample.add_argument("--length", type=int, default=200, help="characters to write")
    sample.add_argument("--temperature", type=float, default=1.0, help="divides the logits")
    for command in (render, sample):
        command.add_argument("--seed", type=int, default=0, help="random seed")
        command.add_argument(
            "--params",
            choices=("best", "mean"),
            default=None,
            help="which params (default: the mean where the strategy has one, else the best)",
        )
    return parser


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of command ``name`` (what reports its errors)."""
    return parser._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]
