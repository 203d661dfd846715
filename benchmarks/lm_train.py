"""An evolved character-level language model against backprop at equal wall-clock.

One dense decoder-only transformer (``MODEL``: width 16, 2 heads, feed-forward
64, 2 blocks, rotary positions, context 64: 7,600 params) on tiny Shakespeare,
trained for the same wall-clock (default 30 minutes on this machine, compiling
included) by

- ``es``: lrne low-rank ES (registry ``es_lowrank``: rank-1 noise, antithetic
  pairs, centered ranks, Adam on the mean), a fresh batch of windows every
  generation shared by all members (``lrne.tasks.LanguageModel``), run by
  ``lrne.run``;
- ``adam``: backprop with optax Adam on fresh batches of the same task.

Every ``--eval-seconds`` the held-out loss (``task.eval_loss``: the first
32,768 characters of the last 10% of the corpus) of the ES mean / the Adam
params is measured off the clock. References on the same split: the unigram
entropy and the bigram conditional entropy of the held-out text under counts
from the training text (add-one smoothing). The issue's targets quote the
whole corpus: unigram 3.31, bigram 2.45 nats/char.

Writes ``benchmarks/results/lm_train_<method>.json``; ``--plot`` draws the
curves of both methods into ``lm_train.png``, with those of the earlier
40,192-param runs (``lm_train_<method>_40k.json``: width 32, 4 heads,
feed-forward 128, 3 blocks) where present.

    python benchmarks/lm_train.py --method es [--minutes 30] [--quick]
    python benchmarks/lm_train.py --method adam
    python benchmarks/lm_train.py --plot
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import numpy as np
import optax
from common import RESULTS, PeriodicScore, corpus, machine, write

import lrne
from lrne.callbacks import TimeLimit
from lrne.config import StrategySection
from lrne.nn.transformer import Transformer
from lrne.saved import run_keys

MODEL = {"hidden": 16, "num_heads": 2, "ff": 64, "num_blocks": 2}
CONTEXT = 64
PROMPT = "ROMEO:"
SETTINGS = {
    # From nine 4-minute probes (benchmarks/results/lm_probes/): σ ∈ {0.01, 0.02, 0.05},
    # Adam lr ∈ {0.01, 0.02, 0.03}, population 256-1024 × 1-4 windows, widths 16-64 ×
    # 1-3 blocks. decay_steps > 0: cosine decay of the learning rate to a tenth over that
    # many updates (about the updates a 30-minute run makes).
    "es": {
        "population": 1024,
        "sigma": 0.01,
        "learning_rate": 0.01,
        "batch_size": 1,
        "decay_steps": 11000,
    },
    "adam": {"learning_rate": 3e-3, "batch_size": 32},
}


def entropies(text: str, split: float = 0.9) -> dict[str, float]:
    """Unigram and bigram cross-entropy (nats/char) of the held-out part under training counts."""
    cut = int(len(text) * split)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    train = np.asarray([index[c] for c in text[:cut]])
    held = np.asarray([index[c] for c in text[cut:]])
    v = len(chars)
    unigram = np.bincount(train, minlength=v) + 1.0
    unigram /= unigram.sum()
    pairs = np.zeros((v, v)) + 1.0
    np.add.at(pairs, (train[:-1], train[1:]), 1.0)
    bigram = pairs / pairs.sum(1, keepdims=True)
    return {
        "unigram": float(-np.log(unigram[held]).mean()),
        "bigram": float(-np.log(bigram[held[:-1], held[1:]]).mean()),
    }


def train_es(task, setting: dict, seconds: float, every: float, seed: int):
    # Built as `lrne train` builds a [strategy] section (its decay_steps included).
    strategy = StrategySection(
        name="es_lowrank",
        population_size=setting["population"],
        sigma=setting["sigma"],
        learning_rate=setting["learning_rate"],
        decay_steps=setting["decay_steps"] or None,
    ).build(task)
    clock = TimeLimit(seconds)
    held_out = PeriodicScore(task.eval_loss, lambda state: state.mean, clock, every)
    key = run_keys(seed)[0]  # as `lrne train` derives it from run.seed
    result = lrne.run(strategy, task, key, 10**9, callbacks=[clock, held_out])
    first = result.history[0]["seconds"] if result.history else math.nan
    return result.state.mean, held_out.rows, first


def train_adam(task, setting: dict, seconds: float, every: float, seed: int):
    """Backprop on fresh batches of ``task``, the same held-out schedule."""
    optimizer = optax.adam(setting["learning_rate"])

    @jax.jit
    def step(carry, key):
        params, opt_state = carry
        batch_loss = lambda p: task.loss(p, *task.batch(key))
        loss, grads = jax.value_and_grad(batch_loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    key_params, key_run = jax.random.split(jax.random.key(seed))
    params = task.init_params(key_params)
    clock = TimeLimit(seconds)
    held_out = PeriodicScore(task.eval_loss, lambda carry: carry[0], clock, every)
    carry = (params, optimizer.init(params))
    clock.on_start(0, carry)
    generation, first = 0, math.nan
    while True:
        tick = time.perf_counter()
        carry, loss = step(carry, jax.random.fold_in(key_run, generation))
        loss.block_until_ready()
        if generation == 0:
            first = time.perf_counter() - tick
        row = {"tokens": setting["batch_size"] * CONTEXT}
        stop = clock.on_generation(generation, row, carry)
        held_out.on_generation(generation, row, carry)
        generation += 1
        if stop:
            return carry[0], held_out.rows, first


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, style in (("es", "C0-"), ("adam", "C1-"), ("es_40k", "C0-."), ("adam_40k", "C1-.")):
        path = RESULTS / f"lm_train_{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        curve = result["curve"]
        label = {"es": "lrne low-rank ES", "adam": "backprop (Adam)"}[result["method"]]
        label += f", {result['model']['params']:,} params"
        minutes = [r["seconds"] / 60 for r in curve]
        ax.plot(minutes, [r["score"] for r in curve], style, label=label)
        reference = result["reference"]
    ax.axhline(reference["bigram"], color="gray", ls="--", lw=1, label="bigram (held-out)")
    ax.axhline(reference["unigram"], color="gray", ls=":", lw=1, label="unigram (held-out)")
    ax.set_xlabel("wall-clock minutes (compiling included, evaluation excluded)")
    ax.set_ylabel("held-out loss (nats/char)")
    ax.set_title("Character transformer on tiny Shakespeare, equal wall-clock")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "lm_train.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=sorted(SETTINGS))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--eval-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set", nargs="*", default=[], help="setting or MODEL overrides, key=value"
    )
    parser.add_argument("--name", help="output name (default lm_train_<method>)")
    parser.add_argument("--text", help="the corpus (full runs: a tiny Shakespeare copy)")
    parser.add_argument("--quick", action="store_true", help="seconds-long run on toy text")
    parser.add_argument("--plot", action="store_true", help="draw lm_train.png from the JSONs")
    args = parser.parse_args()
    if args.plot:
        return plot()
    if args.method is None:
        parser.error("--method is required unless --plot")
    setting = dict(SETTINGS[args.method])
    model_kwargs = dict(MODEL)
    for item in args.set:
        name, value = item.split("=", 1)
        target = model_kwargs if name in MODEL else setting
        target[name] = type(target[name])(value)
    text = corpus(args.quick, args.text)
    seconds, every = (args.minutes * 60, args.eval_seconds)
    if args.quick:
        seconds, every = 6.0, 2.0
        model_kwargs["num_blocks"] = 1
        setting = {**setting, "population": 16} if args.method == "es" else setting
    vocab = len(lrne.tasks.LanguageModel.vocabulary(text))
    model = Transformer(vocab_size=vocab, **model_kwargs)
    batch = setting["batch_size"]
    task = lrne.tasks.LanguageModel(model, text, context=CONTEXT, batch_size=batch)
    train = train_es if args.method == "es" else train_adam
    params, curve, first = train(task, setting, seconds, every, args.seed)
    sample = task.sample(params, PROMPT, 200, jax.random.key(123))
    print(PROMPT + sample)
    num_params = sum(x.size for x in jax.tree.leaves(task.init_params(jax.random.key(0))))
    result = {
        "machine": machine(),
        "quick": args.quick,
        "method": args.method,
        "setting": setting,
        "model": {**model_kwargs, "context": CONTEXT, "vocab": vocab, "params": num_params},
        "seconds": seconds,
        "first_step_seconds": first,
        "reference": entropies(text),
        "final_eval_loss": curve[-1]["score"],
        "best_eval_loss": min(r["score"] for r in curve),
        "curve": curve,
        "sample": PROMPT + sample,
    }
    write(args.name or f"lm_train_{args.method}" + ("_quick" if args.quick else ""), result)


if __name__ == "__main__":
    main()
