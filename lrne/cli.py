"""``lrne`` command line: the imperative shell around the pure library.

``lrne train`` runs any registry strategy on any task from a config
(:mod:`lrne.config`; without one, the factorized GA on CartPole-v1). The loop
is :func:`lrne.run` (checkpoints, resume); this module adds the options, a
progress bar and a metrics file (:mod:`lrne.callbacks`), and writes to the run
directory: ``config.toml`` (the resolved config), ``metrics.jsonl`` (one line
per generation), ``run_state/`` (the run's checkpoints), ``checkpoint/`` (the
best params, orbax), ``learning_curve.png`` and ``summary.json`` (with
:func:`lrne.evaluate_best` on fresh episodes or the held-out split).

``lrne eval``, ``lrne render`` and ``lrne sample`` use a run directory
(:func:`lrne.load_run`). Bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from lrne import config as cfg

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
# What --resume may change: nothing that changes what the generations compute.
RESUMABLE = ("run.generations", "run.seconds", "run.checkpoint_every", "run.eval_episodes")


class _Parser(argparse.ArgumentParser):
    """Reports bad input as one line and exit code 2, never a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    """``--version``: imports lrne only when asked (``--help`` stays fast)."""

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
    from lrne.strategies import registry

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


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]


class _Origins:
    """Where each config key came from, to name it in an error."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def add(self, layer: dict, label: str | dict[str, str]) -> None:
        for key in cfg.flatten(layer):
            self.labels[key] = label if isinstance(label, str) else label[key]

    def explain(self, error: cfg.ConfigError) -> cfg.ConfigError:
        """``error`` with the option or file its key came from."""
        label = self.labels.get(error.key)
        if not error.key or label is None:
            return error
        if label == "--set":
            return cfg.ConfigError("", f"--set {error.key}: {error.message}")
        if label.startswith("--"):
            return cfg.ConfigError("", f"argument {label} ({error.key}): {error.message}")
        return cfg.ConfigError("", f"{label}: {error}")


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
    args: argparse.Namespace, origins: _Origins | None = None
) -> tuple[cfg.Config, bool]:
    """The config of ``lrne train``'s options and whether it resumes; ConfigError
    otherwise. ``origins`` records where each key came from."""
    origins = _Origins() if origins is None else origins
    shortcuts, flags = _shortcut_layer(args)
    assignments = cfg.assignments_layer(args.set)
    explicit = cfg.flatten(shortcuts) + cfg.flatten(assignments)

    def checked(build: Any) -> Any:
        try:
            return build()
        except cfg.ConfigError as error:
            raise origins.explain(error) from None

    if args.resume is None:
        if args.config is None:
            base = cfg.DEFAULT
        else:
            try:
                base = cfg.read_toml(args.config)
            except cfg.ConfigError as error:
                raise cfg.ConfigError("", f"argument --config: {error}") from None
        if args.config is not None:
            origins.add(base, str(args.config))
        origins.add(shortcuts, flags)
        origins.add(assignments, "--set")
        config = checked(lambda: cfg.Config.from_dict(cfg.merge([base, shortcuts, assignments])))
        return (config.shrink(keep=explicit) if args.quick else config), False

    if args.config is not None or args.quick:
        flag = "--config" if args.config is not None else "--quick"
        raise cfg.ConfigError("", f"argument {flag}: not with --resume (a run keeps its config)")
    run_dir = args.resume
    try:
        stored = _read_run_config(run_dir)
    except cfg.ConfigError as error:
        raise cfg.ConfigError("", f"argument --resume: {error}") from None
    origins.add(shortcuts, flags)
    origins.add(assignments, "--set")
    layers = [stored.to_dict(), shortcuts, assignments]
    config = checked(lambda: cfg.Config.from_dict(cfg.merge(layers)))
    # Compared with the defaults written in: an option that repeats a default the
    # run used (in a config.toml written before defaults were) changes nothing.
    resolved, stored_resolved = checked(config.resolve), checked(stored.resolve)
    for key in explicit:
        if key in RESUMABLE:
            continue
        ours, theirs = resolved.get(key), stored_resolved.get(key)
        if key == "run.output":
            same = Path(ours).resolve() == run_dir.resolve()
        else:
            same = ours == theirs
        if not same:
            label = origins.labels[key]
            named = f"argument {label} ({key})" if label != "--set" else f"--set {key}"
            raise cfg.ConfigError(
                "",
                f"{named}: would change the run's meaning ({theirs!r} in "
                f"{run_dir / 'config.toml'}); with --resume only "
                f"{', '.join(RESUMABLE)} may change",
            )
    # The run's own sections; of [run], the lengths given here.
    run = dataclasses.replace(config.run, output=str(run_dir.resolve()))
    return dataclasses.replace(stored, run=run), True


def _read_run_config(run_dir: Path) -> cfg.Config:
    from lrne.saved import read_config

    return read_config(run_dir)


def _check_output(config: cfg.Config, resume: bool) -> None:
    import jax

    output = Path(config.run.output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".lrne-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        message = f"cannot write to {str(output)!r}: {error.strerror}"
        raise cfg.ConfigError("run.output", message) from None
    devices = jax.local_device_count()
    if config.strategy.population_size % devices:
        raise cfg.ConfigError(
            "strategy.population_size",
            f"must be a multiple of the {devices} local devices the population is split "
            f"over, got {config.strategy.population_size}",
        )
    if resume:
        from lrne.saved import completed_generations

        done = completed_generations(output)
        if done > config.run.generations:
            raise cfg.ConfigError(
                "run.generations",
                f"the run in {str(output)!r} has done {done} generations; ask for at least that",
            )


def _write_config(output: Path, config: cfg.Config) -> None:
    partial = output / "config.toml.partial"
    partial.write_text(config.to_toml())
    os.replace(partial, output / "config.toml")  # atomic: a kill leaves the old or the new


_CURVES = ("best_fitness", "fitness_max", "elite_fitness_mean", "fitness_mean")


def _plot(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generations = [row["generation"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in zip(_CURVES, ("-", ":", "-.", "--"), strict=True):
        if history and name in history[0]:
            ax.plot(generations, [row[name] for row in history], style, label=name)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class _Announce:
    """Says where a resumed run starts (printed above the progress bar)."""

    def on_start(self, generation: int, state: Any) -> None:
        if generation:
            print(f"resuming from generation {generation}")
        else:
            print("no readable checkpoint: starting from generation 0")

    def on_generation(self, generation: int, row: dict, state: Any) -> None:
        pass

    def on_end(self, result: Any) -> None:
        pass


def _param_sets(state: Any) -> list[tuple[str, Any]]:
    """("best", best_params) and, where the strategy has a distinct one, ("mean", mean)."""
    best = state.best_params
    mean = getattr(state, "mean", None)
    return [("best", best)] + ([("mean", mean)] if mean is not None and mean is not best else [])


def train(config: cfg.Config, built: cfg.Built, resume: bool = False) -> dict[str, Any]:
    """Run ``lrne train`` with a resolved config; returns the summary it writes."""
    import jax

    import lrne
    from lrne.callbacks import MetricsLog, ProgressBar, TimeLimit
    from lrne.checkpoint import save_params
    from lrne.saved import run_keys

    start = time.perf_counter()
    strategy, task, _ = built
    output = Path(config.run.output).resolve()
    key_run, key_test = run_keys(config.run.seed)
    if not resume:
        # A new run: the run state of an earlier one in the same directory goes.
        shutil.rmtree(output / "run_state", ignore_errors=True)
    _write_config(output, config.resolve())  # every value the run uses, defaults included
    log = MetricsLog(output / "metrics.jsonl")
    callbacks: list[Any] = [_Announce(), log] if resume else [log]
    if config.run.seconds:  # None or 0: no limit
        callbacks.append(TimeLimit(config.run.seconds))
    # The population is split over all local devices; any device count gives
    # the same bits (tests/test_distributed.py, tests/test_resume.py).
    devices = jax.local_devices()
    print(
        f"lrne train: {config.strategy.name} on {config.task.kind}, "
        f"{config.strategy.population_size} members over {len(devices)} device(s), "
        f"{config.run.generations} generations; writing {output}"
    )
    try:
        with ProgressBar(config.run.generations) as bar:
            result = lrne.run(
                strategy,
                task,
                key_run,
                config.run.generations,
                callbacks=[*callbacks, bar],
                checkpoint_dir=output / "run_state",
                checkpoint_every=config.run.checkpoint_every,
                mesh=lrne.distributed.population_mesh(devices),
            )
    except ValueError as error:
        if not str(error).startswith("checkpoint_dir"):
            raise
        raise cfg.ConfigError("", f"argument --resume: {error}") from None
    state = result.state
    save_params(output / "checkpoint", state.best_params)
    title = f"lrne {config.strategy.name}, {config.task.kind}"
    _plot(log.rows, output / "learning_curve.png", title)

    # Score again on fresh evaluations: the training fitness is a max over noisy draws.
    episodes = config.run.eval_episodes
    fresh = {
        name: lrne.evaluate_best(task, params, key_test, num_episodes=episodes)
        for name, params in _param_sets(state)
    }
    summary = {
        "strategy": config.strategy.name,
        "task": config.task.kind,
        "generations": result.generation,
        "best_fitness": log.rows[-1]["best_fitness"],
        "fresh_fitness": fresh,
        "fresh_episodes": episodes,
        "num_params": lrne.count_params(state.best_params),
        "genome_bytes": lrne.genome_bytes(state.best_params),
        "wall_seconds": time.perf_counter() - start,
        "devices": len(devices),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    scores = "; ".join(f"{n} params: {config.task.describe(v, episodes)}" for n, v in fresh.items())
    print(
        f"{scores}; {summary['num_params']} params; {summary['wall_seconds']:.1f}s; wrote {output}"
    )
    return summary


def _load(run_dir: Path) -> Any:
    from lrne.saved import load_run

    return load_run(run_dir)


def _choose(run: Any, which: str | None) -> Any:
    if which == "mean" and run.mean is None:
        raise cfg.ConfigError(
            "", f"argument --params: strategy {run.config.strategy.name!r} keeps no mean"
        )
    return {"best": run.params, "mean": run.mean, None: run.answer}[which]


def evaluate(args: argparse.Namespace) -> dict[str, float]:
    """``lrne eval``: the fresh fitness of the run's best (and mean) params."""
    import jax

    import lrne
    from lrne.saved import run_keys

    if args.episodes is not None and args.episodes < 1:
        raise cfg.ConfigError("", f"argument --episodes: must be an int >= 1, got {args.episodes}")
    run = _load(args.run_dir)
    episodes = args.episodes or run.config.run.eval_episodes
    key = run_keys(run.config.run.seed)[1] if args.seed is None else jax.random.key(args.seed)
    print(
        f"{args.run_dir}: {run.config.strategy.name} on {run.config.task.kind}, "
        f"generation {run.generation}"
    )
    scores = {}
    for name, params in _param_sets(run.state):
        scores[name] = lrne.evaluate_best(run.task, params, key, num_episodes=episodes)
        print(f"{name} params: {run.config.task.describe(scores[name], episodes)}")
    return scores


def render(args: argparse.Namespace) -> Path:
    """``lrne render``: a GIF of the run's policy playing one episode."""
    import jax

    if args.max_steps is not None and args.max_steps < 1:
        raise cfg.ConfigError(
            "", f"argument --max-steps: must be an int >= 1, got {args.max_steps}"
        )
    run = _load(args.run_dir)
    params = _choose(run, args.params)
    output = args.output or args.run_dir / "play.gif"
    if output.suffix.lower() != ".gif":
        raise cfg.ConfigError("", f"argument --output: must end in .gif, got {str(output)!r}")
    frames = run.config.task.render(
        run.task, params, jax.random.key(args.seed), output, args.max_steps or 1 << 30
    )
    print(f"wrote {output} ({frames} frames)")
    return output


def sample(args: argparse.Namespace) -> str:
    """``lrne sample``: text from a language-model run, after ``--prompt``."""
    import jax

    if args.length < 0:
        raise cfg.ConfigError("", f"argument --length: must be an int >= 0, got {args.length}")
    if not args.temperature > 0:
        raise cfg.ConfigError(
            "", f"argument --temperature: must be a number > 0, got {args.temperature}"
        )
    run = _load(args.run_dir)
    params = _choose(run, args.params)
    prompt = "\n" if args.prompt is None else args.prompt
    text = run.config.task.sample(
        run.task, params, prompt, args.length, jax.random.key(args.seed), args.temperature
    )
    print(prompt + text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lrne`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = _subparser(parser, args.command)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    origins = _Origins()
    try:
        if args.command == "train":
            config, resume = resolve_train_config(args, origins)
            _check_output(config, resume)
            train(config, config.build(), resume)
        else:
            {"eval": evaluate, "render": render, "sample": sample}[args.command](args)
    except cfg.ConfigError as error:
        command.error(str(origins.explain(error)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
