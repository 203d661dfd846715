"""The four commands: ``lrne train`` runs a config into a run directory; ``eval``,
``render`` and ``sample`` use one (:mod:`lrne.rundir`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from lrne import config as cfg
from lrne import rundir
from lrne.cli import present
from lrne.cli.parser import UsageError
from lrne.errors import ArgumentError


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


def check_train(config: cfg.Config, resume: bool) -> None:
    """What ``lrne train`` checks before it builds anything: the output can be written,
    the population splits over the local devices, a resumed run is not shortened.

    Raises:
        ConfigError: naming the key that cannot be run.
    """
    import jax

    output = config.run.output
    try:
        rundir.check_writable(output)
    except OSError as error:
        message = f"cannot write to {output!r}: {error.strerror}"
        raise cfg.ConfigError("run.output", message) from None
    devices = jax.local_device_count()
    if config.strategy.population_size % devices:
        raise cfg.ConfigError(
            "strategy.population_size",
            f"must be a multiple of the {devices} local devices the population is split "
            f"over, got {config.strategy.population_size}",
        )
    done = rundir.completed_generations(output) if resume else 0
    if done > config.run.generations:
        raise cfg.ConfigError(
            "run.generations",
            f"the run in {output!r} has done {done} generations; ask for at least that",
        )


def _diagnostics(strategy: Any, task: Any, config: cfg.Config) -> Any:
    """The gradient-diagnostics callback of ``run.diagnostics_every``, or a ConfigError."""
    from lrne.diagnostics import GradientDiagnostics

    try:
        return GradientDiagnostics(strategy, task, config.run.diagnostics_every)
    except (ArgumentError, NotImplementedError) as error:
        raise cfg.ConfigError("run.diagnostics_every", str(error)) from None


def train(config: cfg.Config, resume: bool = False) -> dict[str, Any]:
    """Run ``lrne train`` with a checked config (:func:`check_train`); returns the
    summary it writes."""
    import jax

    import lrne
    from lrne.callbacks import ProgressBar, TimeLimit
    from lrne.generation import split_key
    from lrne.lineage import unreplayed

    start = time.perf_counter()
    strategy, task, _ = config.build()
    # Checked before the run directory is written; None or 0: off.
    diagnostics = _diagnostics(strategy, task, config) if config.run.diagnostics_every else None
    output = Path(config.run.output).resolve()
    key_run, key_test = rundir.run_keys(config.run.seed)
    log = rundir.start(output, config.resolve(), resume)
    callbacks: list[Any] = [_Announce(), log] if resume else [log]
    if config.run.seconds:  # None or 0: no limit
        callbacks.append(TimeLimit(config.run.seconds))
    if diagnostics is not None:  # before the log, whose rows it fills
        callbacks.insert(callbacks.index(log), diagnostics)
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
                checkpoint_dir=output / rundir.RUN_STATE,
                checkpoint_every=config.run.checkpoint_every,
                mesh=lrne.distributed.population_mesh(devices),
            )
    except ArgumentError as error:
        if error.argument != "checkpoint_dir":
            raise
        raise UsageError(f"argument --resume: {error}") from None
    state = result.state

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
    title = f"lrne {config.strategy.name}, {config.task.kind}"
    lineage = None
    if result.lineage is not None:
        initial = task.init_params(split_key(key_run).params)
        kept = unreplayed(state.best_params, initial)
        lineage = result.lineage.record(key_run, kept=kept)
    if lineage is not None:
        summary["lineage_bytes"] = len(lineage.to_bytes())
    rundir.finish(output, state.best_params, log.rows, summary, title, lineage)
    scores = "; ".join(
        f"{name} params: {present.describe(config.task, value, episodes)}"
        for name, value in fresh.items()
    )
    print(
        f"{scores}; {summary['num_params']} params; {summary['wall_seconds']:.1f}s; wrote {output}"
    )
    return summary


def _at_least(flag: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise UsageError(f"argument {flag}: must be an int >= {low}, got {value}")


def _choose(run: rundir.SavedRun, which: str | None) -> Any:
    if which == "mean" and run.mean is None:
        raise UsageError(f"argument --params: strategy {run.config.strategy.name!r} keeps no mean")
    return {"best": run.params, "mean": run.mean, None: run.answer}[which]


def evaluate(args: argparse.Namespace) -> dict[str, float]:
    """``lrne eval``: the fresh fitness of the run's best (and mean) params; with
    ``--replay``, of the answer rebuilt from ``lineage.bin`` alone."""
    import jax

    import lrne

    _at_least("--episodes", args.episodes, 1)
    if args.replay:
        run = rundir.replay_run(args.run_dir)
        param_sets = [("best", run.params)]
    else:
        run = rundir.load_run(args.run_dir)
        param_sets = _param_sets(run.state)
    episodes = args.episodes or run.config.run.eval_episodes
    test_key = rundir.run_keys(run.config.run.seed)[1]
    key = test_key if args.seed is None else jax.random.key(args.seed)
    print(
        f"{args.run_dir}: {run.config.strategy.name} on {run.config.task.kind}, "
        f"generation {run.generation}"
    )
    scores = {}
    for name, params in param_sets:
        scores[name] = lrne.evaluate_best(run.task, params, key, num_episodes=episodes)
        print(f"{name} params: {present.describe(run.config.task, scores[name], episodes)}")
    return scores


def render(args: argparse.Namespace) -> Path:
    """``lrne render``: a GIF of the run's policy playing one episode."""
    import jax

    _at_least("--max-steps", args.max_steps, 1)
    run = rundir.load_run(args.run_dir)
    params = _choose(run, args.params)
    output = args.output or args.run_dir / "play.gif"
    if output.suffix.lower() != ".gif":
        raise UsageError(f"argument --output: must end in .gif, got {str(output)!r}")
    frames = present.render(
        run.config.task, run.task, params, jax.random.key(args.seed), output, args.max_steps
    )
    print(f"wrote {output} ({frames} frames)")
    return output


def sample(args: argparse.Namespace) -> str:
    """``lrne sample``: text from a language-model run, after ``--prompt``."""
    import jax

    _at_least("--length", args.length, 0)
    if not args.temperature > 0:
        raise UsageError(f"argument --temperature: must be a number > 0, got {args.temperature}")
    run = rundir.load_run(args.run_dir)
    params = _choose(run, args.params)
    prompt = "\n" if args.prompt is None else args.prompt
    key = jax.random.key(args.seed)
    text = present.sample(
        run.config.task, run.task, params, prompt, args.length, key, args.temperature
    )
    print(prompt + text)
    return text
