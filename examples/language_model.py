"""Train a character-level transformer with low-rank ES, then sample from it.

``lrne.tasks.LanguageModel`` scores each member by minus its next-character
cross-entropy (nats per character) on a batch of windows of the text (a fresh
batch every generation, the same for every member), and holds out the last
10% of the text. ``lrne.es(noise_rank=1)`` perturbs every weight matrix of
``lrne.nn.Transformer`` with rank-1 noise applied inside the forward pass.

The default text is two Shakespeare sonnets written below (public domain), so
the example runs anywhere; ``--text PATH`` trains on a file instead, e.g. tiny
Shakespeare (``lrne.tasks.load_tinyshakespeare()`` fetches it).

    python examples/language_model.py                 # about a minute on 2 cores
    python examples/language_model.py --text input.txt --generations 2000
    python examples/language_model.py --quick         # toy sizes, seconds
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import optax

import lrne

SONNETS = """\
Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.

Let me not to the marriage of true minds
Admit impediments. Love is not love
Which alters when it alteration finds,
Or bends with the remover to remove.
O no! it is an ever-fixed mark
That looks on tempests and is never shaken;
It is the star to every wand'ring bark,
Whose worth's unknown, although his height be taken.
Love's not Time's fool, though rosy lips and cheeks
Within his bending sickle's compass come;
Love alters not with his brief hours and weeks,
But bears it out even to the edge of doom.
If this be error and upon me prov'd,
I never writ, nor no man ever lov'd.
"""


def main(
    quick: bool = False,
    text: str | None = None,
    generations: int | None = None,
    prompt: str = "Love ",
    length: int = 200,
    seed: int = 0,
) -> dict:
    """Train, report held-out loss, and sample ``length`` characters after ``prompt``.

    Args:
        quick: toy sizes.
        text: the corpus (default: the sonnets above).
        generations: ES updates (default 4 quick, 150 otherwise).
        prompt: the sample's start; its characters must occur in the text.
        length: characters to sample.
        seed: the run's seed.

    Returns:
        The held-out loss before and after (nats per character) and the sample.
    """
    text = SONNETS if text is None else text
    if quick:
        generations = 4 if generations is None else generations
        vocab = len(lrne.tasks.LanguageModel.vocabulary(text))
        model = lrne.nn.Transformer(vocab, hidden=8, num_heads=2, ff=16, num_blocks=1)
        population, context, batch_size = 8, 16, 2
    else:
        generations = 150 if generations is None else generations
        vocab = len(lrne.tasks.LanguageModel.vocabulary(text))
        model = lrne.nn.Transformer.preset("full", vocab)  # width 32, 4 heads, 3 blocks
        population, context, batch_size = 128, 32, 8
    task = lrne.tasks.LanguageModel(model, text, context=context, batch_size=batch_size)
    strategy = lrne.es(population, sigma=0.01, optimizer=optax.adam(0.01), noise_rank=1)

    key_params, key_run, key_sample = jax.random.split(jax.random.key(seed), 3)
    params = jax.jit(task.init_params)(key_params)  # jit: a transformer's eager init is slow
    # evaluate_best scores one member on the held-out text: minus its loss.
    before = -lrne.evaluate_best(task, params, key_sample)
    result = lrne.run(strategy, task, key_run, generations, params=params)
    after = -lrne.evaluate_best(task, result.state.mean, key_sample)  # the ES mean is the answer
    print(f"held-out loss: {before:.3f} -> {after:.3f} nats/char after {generations} generations")

    sample = task.sample(result.state.mean, prompt, length, key_sample, temperature=0.8)
    print(prompt + sample)
    return {"before": before, "after": after, "sample": sample}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes")
    parser.add_argument("--text", type=Path, help="train on this text file")
    parser.add_argument("--generations", type=int)
    parser.add_argument("--prompt", default="Love ")
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corpus = args.text.read_text() if args.text else None
    main(args.quick, corpus, args.generations, args.prompt, args.length, args.seed)
