"""Stock flax attention on the low-rank path: member bytes and compiled temporaries.

Issue 24's figures, measured on this machine:

- a 2-block, d=128 stock-flax transformer (``nn.Embed``, causal
  ``nn.SelfAttention``, ``nn.LayerNorm``, ``nn.Dense`` MLP) under low-rank ES
  (rank 1) at P=256: the bytes of the population's member noise, how much of
  it is attention, and the compiled generation's temporary bytes; beside the
  same model with dense noise (``noise_rank=0``), which is what stock
  attention got before.

The first-generation time of the stock transformer against lrne's own is in
``compile_time.py`` (it imports ``StockTransformer`` and ``task_for`` from here).

    python benchmarks/stock_layers.py [--quick]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from harness import script

import lrne

FULL = {"width": 128, "blocks": 2, "population": 256, "context": 64}
QUICK = {**FULL, "width": 32, "population": 16}


class StockBlock(nn.Module):
    width: int
    heads: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        attention = nn.SelfAttention(num_heads=self.heads, qkv_features=self.width)
        x = nn.LayerNorm()(x + attention(x, mask=mask))
        hidden = nn.relu(nn.Dense(4 * self.width)(x))
        return nn.LayerNorm()(x + nn.Dense(self.width)(hidden))


class StockTransformer(nn.Module):
    vocab: int
    width: int
    heads: int = 4
    blocks: int = 2

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        embed = nn.Embed(self.vocab, self.width)
        x = embed(ids)
        mask = nn.make_causal_mask(ids)
        for _ in range(self.blocks):
            x = StockBlock(self.width, self.heads)(x, mask)
        return embed.attend(x)


def task_for(model: nn.Module, vocab: int, length: int) -> lrne.tasks.Task:
    """Next-token log-likelihood of one fixed window, as a model-aware task."""
    ids = jax.random.randint(jax.random.key(0), (1, length + 1), 0, vocab)

    class NextToken(lrne.tasks.Task):
        def init_params(self, key):
            return model.init(key, ids[:, :-1])

        def evaluate_members(self, keys, population):
            logits = lrne.nn.population_apply(model, population, ids[:, :-1])
            logp = jax.nn.log_softmax(logits)
            picked = jnp.take_along_axis(logp, ids[None, :, 1:, None], axis=-1)
            return jnp.mean(picked, axis=(1, 2, 3)), {}

    return NextToken()


def memory(args, noise_rank: int) -> dict:
    model = StockTransformer(vocab=65, width=args.width, blocks=args.blocks)
    task = task_for(model, 65, args.context)
    strategy = lrne.es(args.population, 0.01, optax.adam(1e-3), noise_rank=noise_rank)
    state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(0)))
    members = strategy.ask(jax.random.key(1), state)[0].members["perturb"]
    total = sum(x.nbytes for x in jax.tree.leaves(members))
    attention = sum(
        x.nbytes
        for path, x in jax.tree_util.tree_leaves_with_path(members)
        if "SelfAttention" in lrne.genome.path_str(path)
    )
    step = jax.jit(lrne.generation_step(strategy, task))
    compiled = step.lower(state, jax.random.key(2)).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    return {"member_noise_mb": total / 1e6, "attention_mb": attention / 1e6, "temp_mb": temp / 1e6}


def table(result: dict) -> str:
    """Markdown: member noise, attention's share and compiled temporaries, rank 1 vs dense."""
    setup = result["setup"]
    rows = [
        f"{setup['blocks']} blocks, d={setup['width']}, P={setup['population']}, "
        f"context {setup['context']}; {result['machine']}.",
        "",
        "| noise | member noise (MB) | of it attention (MB) | compiled temporaries (MB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for arm, label in (("lowrank", "rank 1"), ("dense_noise", "dense (`noise_rank=0`)")):
        r = result[arm]
        rows.append(
            f"| {label} | {r['member_noise_mb']:.1f} | {r['attention_mb']:.1f} | "
            f"{r['temp_mb']:.0f} |"
        )
    return "\n".join(rows)


def run(args) -> dict:
    return {
        "lowrank": memory(args, noise_rank=1),
        "dense_noise": memory(args, noise_rank=0),
    }


if __name__ == "__main__":
    script(__file__)
