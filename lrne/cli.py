"""``lrne`` command line: the imperative shell around the pure library.

``lrne train`` evolves a factorized MLP policy on a gymnax environment with the
truncation GA, showing progress, and writes to the run directory:
``metrics.jsonl`` (one line per generation), ``checkpoint/`` (the best params,
orbax), ``learning_curve.png`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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


def _restore(directory: Path, template: Any) -> tuple[int, Any]:
    """The latest checkpoint that restores cleanly: (next generation, state).

    A truncated or corrupted checkpoint is reported and moved aside to
    ``directory/unreadable-<step>`` (kept, never deleted) so the run can write
    that step again.
    """
    import jax
    import orbax.checkpoint as ocp

    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    with ocp.CheckpointManager(directory) as manager:
        steps = sorted(manager.all_steps(), reverse=True)
        for step in steps:
            try:
                state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as error:  # orbax raises several types for damaged files
                print(
                    f"checkpoint {step} is unreadable ({type(error).__name__}); "
                    f"moved to unreadable-{step}, trying an older one"
                )
                (directory / str(step)).rename(directory / f"unreadable-{step}")
                continue
            print(f"resuming from generation {step}")
            return step, state
    print("no readable checkpoint: starting from generation 0")
    return 0, template


def _read_history(path: Path, until: int) -> list[dict[str, Any]]:
    """Metrics rows of generations before ``until`` (a killed run may have written more)."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by the kill
                continue
            if row.get("generation", until) < until:
                rows.append(row)
    return rows


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``lrne train``; returns the summary it writes."""
    import jax
    import orbax.checkpoint as ocp
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import lrne

    output = args.output.resolve()
    policy = lrne.nn.MLP(args.hidden, lrne.tasks.action_size(args.env), rank=args.rank)
    task = lrne.tasks.Gymnax(args.env, policy, num_episodes=args.num_episodes)
    strategy = lrne.ga(args.population_size, args.num_elites, args.sigma)
    key_params, key_init, key_run, key_test = jax.random.split(jax.random.key(args.seed), 4)
    params = task.init_params(key_params)
    state = strategy.init(key_init, params)
    # The population is split over all local devices; any device count gives
    # the same bits (tests/test_distributed.py, tests/test_cli.py).
    devices = jax.local_devices()
    mesh = lrne.distributed.population_mesh(devices)
    step = jax.jit(lrne.sharded_generation_step(strategy, task, args.population_size, mesh))
    state = lrne.distributed.replicate(state, mesh)
    keys = jax.random.split(key_run, args.generations)  # generation g always uses keys[g]

    # The run state is the strategy state plus the next generation's index: keys
    # and the task are functions of the seed, so a resumed run repeats exactly.
    history: list[dict[str, Any]] = []
    first = 0
    if args.resume is not None:
        first, state = _restore(output / "run_state", state)
        history = _read_history(output / "metrics.jsonl", first)
    else:
        config = {name: getattr(args, name) for name in CONFIG_KEYS}
        (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    start = time.perf_counter()
    columns = (
        TextColumn("[bold]gen"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    manager = ocp.CheckpointManager(
        output / "run_state", options=ocp.CheckpointManagerOptions(max_to_keep=3)
    )
    # Rewrite the log up to the restored generation: rows past it are recomputed.
    (output / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    with (
        Progress(*columns, transient=False) as progress,
        (output / "metrics.jsonl").open("a") as log,
    ):
        bar = progress.add_task("train", total=args.generations, completed=first, info="compiling…")
        for generation in range(first, args.generations):
            key = keys[generation]
            tick = time.perf_counter()
            state, metrics = step(state, key)
            row = {k: v.item() for k, v in jax.device_get(metrics).items()}
            elapsed = time.perf_counter() - tick
            row |= {"generation": generation, "seconds": elapsed}
            history.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            info = (
                f"best {row['best_fitness']:.1f}  mean {row['fitness_mean']:.1f}  "
                f"{row['env_steps'] / elapsed:,.0f} env steps/s"
            )
            progress.update(bar, advance=1, info=info)
            done = generation + 1
            if done == args.generations or (
                args.checkpoint_every and done % args.checkpoint_every == 0
            ):
                manager.save(done, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    manager.close()

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(output / "checkpoint", state.best_params, force=True)
    checkpointer.wait_until_finished()
    _plot(history, output / "learning_curve.png", f"lrne GA, rank {args.rank}, {args.env}")

    # Score the best member on fresh episodes: its training fitness is a max over noisy draws.
    test_task = lrne.tasks.Gymnax(args.env, policy, num_episodes=32)
    best = jax.tree.map(lambda x: x[None], state.best_params)
    test_return = float(jax.jit(test_task.evaluate)(key_test, best)[0][0])
    summary = {
        "env": args.env,
        "generations": args.generations,
        "best_fitness": history[-1]["best_fitness"],
        "best_params_test_return_32_episodes": test_return,
        "num_params": lrne.count_params(params),
        "genome_bytes": lrne.genome_bytes(params),
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
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
