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

import jax
import numpy as np
import optax
from common import Snapshots, band_plot, corpus, train_loop
from harness import RESULTS, overridden, read_each, script

import lrne
from lrne.callbacks import TimeLimit
from lrne.config import StrategySection
from lrne.nn.transformer import Transformer
from lrne.rundir import run_keys

MODEL = {"hidden": 16, "num_heads": 2, "ff": 64, "num_blocks": 2}
CONTEXT = 64
PROMPT = "ROMEO:"
FULL = {"minutes": 30.0, "eval_seconds": 60.0, "seed": 0}
QUICK = {**FULL, "minutes": 0.1, "eval_seconds": 2.0}
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
    held_out = Snapshots(clock, lambda state: state.mean, every, score=task.eval_loss)
    key = run_keys(seed)[0]  # as `lrne train` derives it from run.seed
    result = lrne.run(strategy, task, key, 10**9, callbacks=[clock, held_out])
    return result.state.mean, held_out


def train_adam(task, setting: dict, seconds: float, every: float, seed: int):
    """Backprop on fresh batches of ``task``, the same held-out schedule."""
    optimizer = optax.adam(setting["learning_rate"])
    tokens = setting["batch_size"] * CONTEXT

    @jax.jit
    def step(carry, key):
        params, opt_state = carry
        batch_loss = lambda p: task.loss(p, *task.batch(key))
        grads = jax.grad(batch_loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"tokens": tokens}

    key_params, key_run = jax.random.split(jax.random.key(seed))
    params = task.init_params(key_params)
    clock = TimeLimit(seconds)
    held_out = Snapshots(clock, lambda carry: carry[0], every, score=task.eval_loss)
    carry = (params, optimizer.init(params))
    clock.on_start(0, carry)
    carry = train_loop(step, carry, key_run, held_out)
    return carry[0], held_out


STYLES = {"es": "C0-", "adam": "C1-", "es_40k": "C0-.", "adam_40k": "C1-."}


def plot() -> None:
    runs = load()
    lines = [
        {
            "x": [r["seconds"] / 60 for r in run["curve"]],
            "y": [r["score"] for r in run["curve"]],
            "style": STYLES[name],
            "label": f"{LABELS[run['method']]}, {run['model']['params']:,} params",
        }
        for name, run in runs.items()
    ]
    reference = next(iter(runs.values()))["reference"]
    panel = {
        "lines": lines,
        "hlines": [
            (reference["bigram"], "bigram (held-out)", "--"),
            (reference["unigram"], "unigram (held-out)", ":"),
        ],
        "xlabel": "wall-clock minutes (compiling included, evaluation excluded)",
        "ylabel": "held-out loss (nats/char)",
        "title": "Character transformer on tiny Shakespeare, equal wall-clock",
    }
    band_plot(RESULTS / "lm_train.png", [panel], size=(6.5, 4))


def arguments(parser) -> None:
    parser.add_argument("--method", choices=sorted(SETTINGS))
    parser.add_argument(
        "--set", nargs="*", default=[], help="setting or MODEL overrides, key=value"
    )
    parser.add_argument("--name", help="output name (default lm_train_<method>)")
    parser.add_argument("--text", help="the corpus (full runs: a tiny Shakespeare copy)")
    parser.add_argument("--plot", action="store_true", help="draw lm_train.png from the JSONs")


def output(args) -> str:
    return args.name or f"lm_train_{args.method}"


def run(args) -> dict | None:
    if args.plot:
        return plot()
    if args.method is None:
        raise SystemExit("lm_train: --method is required unless --plot")
    model_kwargs = overridden(MODEL, [i for i in args.set if i.split("=")[0] in MODEL])
    setting = overridden(
        SETTINGS[args.method], [i for i in args.set if i.split("=")[0] not in MODEL]
    )
    text = corpus(args.quick, args.text)
    if args.quick:
        model_kwargs["num_blocks"] = 1
        setting = {**setting, "population": 16} if args.method == "es" else setting
    vocab = len(lrne.tasks.LanguageModel.vocabulary(text))
    model = Transformer(vocab_size=vocab, **model_kwargs)
    batch = setting["batch_size"]
    task = lrne.tasks.LanguageModel(model, text, context=CONTEXT, batch_size=batch)
    train = train_es if args.method == "es" else train_adam
    seconds = args.minutes * 60
    params, held_out = train(task, setting, seconds, args.eval_seconds, args.seed)
    curve = held_out.rows
    sample = task.sample(params, PROMPT, 200, jax.random.key(123))
    print(PROMPT + sample)
    num_params = sum(x.size for x in jax.tree.leaves(task.init_params(jax.random.key(0))))
    return {
        "method": args.method,
        "setting": setting,
        "model": {**model_kwargs, "context": CONTEXT, "vocab": vocab, "params": num_params},
        "seconds": seconds,
        "first_step_seconds": held_out.compile_seconds,
        "reference": entropies(text),
        "final_eval_loss": curve[-1]["score"],
        "best_eval_loss": min(r["score"] for r in curve),
        "curve": curve,
        "sample": PROMPT + sample,
    }


RUNS = ("es", "adam", "es_40k", "adam_40k")
"""benchmarks/results/lm_train_<name>.json: the default model, then the 40k-param one."""
LABELS = {"es": "lrne low-rank ES", "adam": "backprop, optax Adam"}


def load(suffix: str = "") -> dict:
    """Every committed run: ``lm_train_<name>.json`` for each of :data:`RUNS` present."""
    return read_each("lm_train_{}" + suffix, RUNS)


def table(runs: dict) -> str:
    """Markdown: held-out loss of each run, and a sample from each default-size model."""
    first = next(iter(runs.values()))
    ref = first["reference"]
    lines = [
        f"Context {first['model']['context']}; {first['seconds'] / 60:.0f} minutes of "
        "wall-clock each (compiling included, held-out scoring excluded). Held-out loss: the "
        "first 32,768 characters of the last 10% of the text. References on the last 10% with "
        f"counts from the first 90%: unigram {ref['unigram']:.2f}, bigram {ref['bigram']:.2f} "
        "nats/char.",
        "",
        "| transformer | method | setting | held-out loss at the end | best seen | updates "
        "| tokens scored |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for run in runs.values():
        m = run["model"]
        model = (
            f"width {m['hidden']}, {m['num_heads']} heads, ff {m['ff']}, {m['num_blocks']} "
            f"blocks: {m['params']:,} params"
        )
        setting = ", ".join(f"{k} {v}" for k, v in run["setting"].items())
        last = run["curve"][-1]
        lines.append(
            f"| {model} | {LABELS[run['method']]} | {setting} | {run['final_eval_loss']:.3f} | "
            f"{run['best_eval_loss']:.3f} | {last['generation']:,} | {last['steps'] / 1e6:.0f} M |"
        )
    for name, run in runs.items():
        if name.endswith("_40k"):
            continue
        params = run["model"]["params"]
        about = f"{LABELS[run['method']]} model ({params:,} params, temperature 1)"
        lines += ["", f"200 characters from the {about}:", "", "```text", run["sample"], "```"]
    machines = sorted({r["machine"] for r in runs.values()})
    lines += ["", f"Machine: {'; '.join(machines)}."]
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
