"""Language-model throughput: a low-rank-noise ES population vs plain batched inference.

The paper's transformer (3 blocks, width 32, 4 heads, feed-forward 128, dense),
character-level on tiny Shakespeare. The ES population is evaluated the way
``lrne.es(noise_rank=1)`` does it: every member applies the shared weights plus
its own rank-1 perturbation inside the forward pass (never a per-member dense
weight). Plain inference runs the unperturbed model on the same tokens: all
members' batches stacked into one batch under one set of weights. Tokens per
second of each, warm, medians of interleaved repetitions, in one process.
Writes benchmarks/results/lm_throughput.json.

    python benchmarks/lm_throughput.py [--quick] [--text PATH]

Full runs use tiny Shakespeare (``--text`` or ../shared/data/tinyshakespeare.txt);
quick runs use 20,000 characters of ``--text`` or of a generated text.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from common import corpus, median, time_interleaved
from harness import goal, script

import lrne
from lrne.nn.transformer import Transformer

FULL = {"population": 64, "sequences_per_member": 16, "context": 64, "repetitions": 15}
QUICK = {"population": 8, "sequences_per_member": 4, "context": 16, "repetitions": 3}
TARGETS = {"lm_lowrank_over_plain": (">=", 0.9)}


def arguments(parser) -> None:
    parser.add_argument("--text", help="the corpus (full runs: a tiny Shakespeare copy)")


def run(args) -> dict:
    population, batch, context = args.population, args.sequences_per_member, args.context
    text = corpus(args.quick, args.text)
    model = Transformer.preset("full", len(lrne.tasks.LanguageModel.vocabulary(text)))
    task = lrne.tasks.LanguageModel(model, text, context=context, batch_size=batch)
    strategy = lrne.es(population, 0.05, optax.sgd(0.01), noise_rank=1)
    state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)))
    members, _ = jax.jit(strategy.ask)(jax.random.key(2), state)
    keys = lrne.tasks.member_keys(jax.random.key(4), population)

    def lowrank_loss(_, key):
        # Task.evaluate without its best-member metric: the evaluation form (dense
        # δ of biases and norms folded in once), then every member's forward pass.
        del key
        fitness, _ = task.evaluate_members(keys, lrne.nn.prepare(members))
        return fitness

    # The same tokens as one batch of population × batch sequences, shared weights.
    stacked_inputs = jnp.tile(task.inputs, (population, 1))
    stacked_targets = jnp.tile(task.targets, (population, 1))

    def plain_loss(_, key):
        del key
        return task.loss(state.mean, stacked_inputs, stacked_targets)

    runs = {"lowrank": (jax.jit(lowrank_loss), None), "plain": (jax.jit(plain_loss), None)}
    times, first = time_interleaved(runs, args.repetitions, jax.random.key(3))
    tokens = population * batch * context
    lowrank_s, plain_s = median(times["lowrank"]), median(times["plain"])
    return {
        "lm_lowrank_over_plain": plain_s / lowrank_s,
        "tokens_per_s": {"lowrank_es_r1": tokens / lowrank_s, "plain": tokens / plain_s},
        "seconds_per_evaluation": {"lowrank_es_r1": lowrank_s, "plain": plain_s},
        "first_call_s": first,
        "setup": {
            "model": "Transformer preset 'full': 3 blocks, hidden 32, 4 heads, ff 128",
            "vocab_size": task.vocab_size,
            "num_params": lrne.count_params(state.mean),
            "tokens_per_evaluation": tokens,
            "noise_rank": 1,
            "text": "tiny Shakespeare" if not args.quick else "quick: 20,000 characters",
        },
    }


def table(lm: dict) -> str:
    """Markdown: tokens per second of the rank-1 ES population against plain inference."""
    setup = lm["setup"]
    return "\n".join(
        [
            f"**Language-model throughput** (`benchmarks/lm_throughput.py`): {setup['model']}, "
            f"{setup['num_params']:,} params, population {setup['population']} × "
            f"{setup['sequences_per_member']} sequences of {setup['context']} characters.",
            "",
            "| evaluation | tokens / s | ratio | target |",
            "| --- | ---: | ---: | ---: |",
            f"| plain batched forward, shared weights | {lm['tokens_per_s']['plain']:,.0f} | "
            "1.00 | |",
            f"| ES population, rank-1 noise in the forward pass | "
            f"{lm['tokens_per_s']['lowrank_es_r1']:,.0f} | **{lm['lm_lowrank_over_plain']:.3f}** "
            f"| {goal(TARGETS, 'lm_lowrank_over_plain')} |",
            "",
            f"Machine: {lm['machine']}.",
        ]
    )


if __name__ == "__main__":
    script(__file__)
