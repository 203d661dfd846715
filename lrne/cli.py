"""``lrne`` command line: the imperative shell around the pure library.

``lrne train`` evolves a factorized MLP policy on a gymnax environment with the
truncation GA. The loop is :func:`lrne.run` (checkpoints and resume included);
this module adds the options, a progress bar and a metrics file
(:mod:`lrne.callbacks`), and writes to the run directory: ``config.json``,
``metrics.jsonl`` (one line per generation), ``run_state/`` (the run's
checkpoints), ``checkpoint/`` (the best params, orbax), ``learning_curve.png``
and ``summary.json`` (with :func:`lrne.evaluate_best` on 32 fresh episodes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_ENV = "CartPole-v1"


class _Parser(argparse.ArgumentParser):
    """Reports bad input as one line and exit code 2, never a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated ints >= 1, e.g. 64,64; got {text!r}"
        ) from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints >= 1, got {text!r}")
    return widths


# argparse names the type in its message ("invalid _positive_int value"): say what it means.
_positive_int.__name__ = "int >= 1"  # type: ignore[attr-defined]
_nonnegative_int.__name__ = "int >= 0"  # type: ignore[attr-defined]
_positive_float.__name__ = "number > 0"  # type: ignore[attr-defined]
_widths.__name__ = "widths"  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrne", description="Low-rank factorized neuroevolution in JAX.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser(
        "train",
        help="evolve a policy on a gymnax environment",
        description=(
            "Evolve a factorized MLP policy (W = A·B per layer) on a gymnax environment "
            "with a truncation GA with elitism. With no options: CartPole-v1."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--env", default=DEFAULT_ENV, help="gymnax environment id")
    train.add_argument(
        "--population-size", type=_positive_int, default=256, help="members per generation"
    )
    train.add_argument(
        "--num-elites",
        type=_positive_int,
        default=16,
        help="members kept unmutated each generation; must be < population size",
    )
    train.add_argument(
        "--sigma",
        type=_positive_float,
        default=0.5,
        help="mutation std as a fraction of each tensor's init std (sqrt of it per factor)",
    )
    train.add_argument(
        "--rank",
        type=_nonnegative_int,
        default=4,
        help="factor rank of each layer where below min(in, out); 0 = dense",
    )
    train.add_argument(
        "--hidden", type=_widths, default=(64, 64), help="hidden widths, comma-separated"
    )
    train.add_argument("--generations", type=_positive_int, default=20, help="generations")
    train.add_argument("--num-episodes", type=_positive_int, default=1, help="episodes per member")
    train.add_argument("--seed", type=int, default=0, help="random seed")
    train.add_argument(
        "--output", type=Path, default=Path("runs/train"), help="run directory to write"
    )
    train.add_argument(
        "--checkpoint-every",
        type=_nonnegative_int,
        default=10,
        help="save the full run state every N generations (orbax, atomic); 0 = only at the end",
    )
    train.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="DIR",
        help="continue the run in DIR from its latest good checkpoint (other options are "
        "taken from DIR/config.json)",
    )
    return parser


CONFIG_KEYS = (
    "env",
    "population_size",
    "num_elites",
    "sigma",
    "rank",
    "hidden",
    "generations",
    "num_episodes",
    "seed",
    "checkpoint_every",
)


def _load_resume_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Replace the run options by those stored in ``--resume DIR``."""
    path = args.resume / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        parser.error(f"argument --resume: cannot read {str(path)!r}: {error}")
    for name in CONFIG_KEYS:
        value = config[name]
        setattr(args, name, tuple(value) if name == "hidden" else value)
    args.output = args.resume


def _check_train_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    import gymnax
    import jax

    if args.resume is not None:
        _load_resume_config(parser, args)
    if args.env not in gymnax.registered_envs:
        parser.error(
            f"argument --env: unknown gymnax environment {args.env!r} "
            f"(known: {', '.join(gymnax.registered_envs)})"
        )
    devices = jax.local_device_count()
    if args.population_size % devices:
        parser.error(
            f"argument --population-size: must be a multiple of the {devices} local devices "
            f"the population is split over, got {args.population_size}"
        )
    if args.num_elites >= args.population_size:
        parser.error(
            f"argument --num-elites: must be < --population-size ({args.population_size}), "
            f"got {args.num_elites}"
        )
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        probe = args.output / ".lrne-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        parser.error(f"argument --output: cannot write to {str(args.output)!r}: {error.strerror}")


def _plot(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generations = [row["generation"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = (
        ("best_fitness", "-"),
        ("fitness_max", ":"),
        ("elite_fitness_mean", "-."),
        ("fitness_mean", "--"),
    )
    for name, style in curves:
        ax.plot(generations, [row[name] for row in history], style, label=name)
    ax.set_xlabel("generation")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    """The GA and the gymnax task of ``lrne train``; ValueError names a bad option."""
    import lrne

    env, env_params = lrne.tasks.make_env(args.env)
    # One observation is the policy's input: 3 axes for MinAtar's (10, 10, C).
    obs_ndim = len(env.observation_space(env_params).shape)
    policy = lrne.nn.MLP(
        args.hidden,
        lrne.tasks.action_size(env, env_params),
        rank=args.rank,
        input_ndim=obs_ndim,
    )
    # Halving buffers compiles 4 compaction stages instead of 9 at 256 episodes:
    # measured 5 s less compile (of ~15 s) for ~0.3 s more stepping over 20 generations.
    task = lrne.tasks.Gymnax(
        env, policy, num_episodes=args.num_episodes, compaction=0.5, env_params=env_params
    )
    return lrne.ga(args.population_size, args.num_elites, args.sigma), task


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


def train(args: argparse.Namespace, strategy: Any = None, task: Any = None) -> dict[str, Any]:
    """Run ``lrne train``; returns the summary it writes."""
    import jax

    import lrne
    from lrne.callbacks import MetricsLog, ProgressBar
    from lrne.checkpoint import save_params

    start = time.perf_counter()
    if strategy is None or task is None:
        strategy, task = build(args)
    output = args.output.resolve()
    key_run, key_test = jax.random.split(jax.random.key(args.seed))
    if args.resume is None:
        # A new run: the run state of an earlier one in the same directory goes.
        shutil.rmtree(output / "run_state", ignore_errors=True)
        config = {name: getattr(args, name) for name in CONFIG_KEYS}
        (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    log = MetricsLog(output / "metrics.jsonl")
    callbacks: list[Any] = [log] if args.resume is None else [_Announce(), log]
    # The population is split over all local devices; any device count gives
    # the same bits (tests/test_distributed.py, tests/test_cli.py).
    devices = jax.local_devices()
    with ProgressBar(args.generations) as bar:
        result = lrne.run(
            strategy,
            task,
            key_run,
            args.generations,
            callbacks=[*callbacks, bar],
            checkpoint_dir=output / "run_state",
            checkpoint_every=args.checkpoint_every,
            mesh=lrne.distributed.population_mesh(devices),
        )
    best_params = result.state.best_params
    save_params(output / "checkpoint", best_params)
    _plot(log.rows, output / "learning_curve.png", f"lrne GA, rank {args.rank}, {args.env}")

    # Score the best member on fresh episodes: its training fitness is a max over noisy draws.
    test_return = lrne.evaluate_best(task, best_params, key_test, num_episodes=32)
    summary = {
        "env": args.env,
        "generations": args.generations,
        "best_fitness": log.rows[-1]["best_fitness"],
        "best_params_test_return_32_episodes": test_return,
        "num_params": lrne.count_params(best_params),
        "genome_bytes": lrne.genome_bytes(best_params),
        "wall_seconds": time.perf_counter() - start,
        "devices": len(devices),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"best member: {test_return:.1f} mean return over 32 fresh episodes; "
        f"{summary['num_params']} params; {summary['wall_seconds']:.1f}s; wrote {output}"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        train_parser = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
        _check_train_args(train_parser, args)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            strategy, task = build(args)
        except ValueError as error:  # an environment the policy cannot take, e.g. scalar obs
            train_parser.error(f"argument --env: {error}")
        train(args, strategy, task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
