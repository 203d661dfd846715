"""Fine-tuning a pretrained classifier with subspace (sparse) mutations, and ensembling.

Whitaker & Whitley 2023, *Sparse Mutation Decompositions* (arXiv 2302.05832),
at the scale of scikit-learn's 8×8 digits: an MLP 64→64→10 (tanh) is
pretrained with optax (Adam, full batch) on a fixed train split (60%), then
evolved with ``lrne.ga`` from the pretrained weights, selecting on the
validation split (20%, mean log-likelihood), and scored on the test split (20%):

(a) one generation, as in the paper: ``--children`` children of the pretrained
    model, dense (density 1) vs subspace mutations at densities 0.1 and 0.01,
    over a range of sigmas (relative to each tensor's init std): the test
    accuracy of the best child and of the top-k ensemble (softmax average).
(b) ``--generations`` generations of the GA (10 elites) at the same settings,
    dynamic masks, plus static masks at density 0.1.
Mean and 95% CI over ``--seeds`` seeds (the pretrained model is the same; the
seed changes the mutations). Writes benchmarks/results/subspace_finetune.json
and subspace_finetune.png (test accuracy vs sigma per density: the "critical
mutation window").

    python benchmarks/subspace_finetune.py [--quick]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import RESULTS, machine, mean_ci95, write
from sklearn.datasets import load_digits

import lrne
from lrne.ensemble import member_outputs

DENSITIES = (1.0, 0.1, 0.01)


def splits(seed: int = 0):
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_train, n_val = int(0.6 * len(x)), int(0.2 * len(x))
    parts = np.split(order, [n_train, n_train + n_val])
    return [(jnp.asarray(x[i]), jnp.asarray(y[i])) for i in parts]


def pretrain(model, train, steps: int):
    x, y = train
    params = model.init(jax.random.key(0), x[0])
    optimizer = optax.adam(3e-3)
    apply = jax.vmap(model.apply, (None, 0))

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()

    @jax.jit
    def step(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = optimizer.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params


def accuracy(logits, labels):
    return jnp.mean(jnp.argmax(logits, -1) == labels, axis=-1)


def make_run(task, test, params, density, mask, children, generations, k):
    """A compiled ``run(sigmas, seeds) -> (best, ensemble)`` test accuracies, vmapped.

    The GA is built with sigma = 1 and each run scales its mutation stds by its
    own sigma (the std is sigma × init std), so one compilation serves every
    (sigma, seed). In a single generation the unmutated parent is excluded from
    selection: the best child and the ensemble are children only, as in the paper.
    """
    single = generations == 1
    strategy = lrne.ga(
        children + 1,
        num_elites=1 if single else 10,
        sigma=1.0,
        density=density,
        mask=mask,
    )
    x_test, y_test = test

    def generation(state, key):
        key_ask, key_tell = jax.random.split(key)
        population, state = strategy.ask(key_ask, state)
        fitness, _ = task.evaluate(key, population)
        ranked = fitness.at[0].set(-jnp.inf) if single else fitness
        top = lrne.ensemble.top_k(ranked, k)
        logits = member_outputs(task.apply, population, x_test)
        probs = jnp.mean(jax.nn.softmax(logits[top], -1), 0)
        scores = (accuracy(logits[top[0]], y_test), accuracy(probs, y_test))
        state, _ = strategy.tell(key_tell, state, population, fitness)
        return state, scores

    def one(sigma, seed):
        state = strategy.init(jax.random.key(seed), params)
        state = state._replace(mutation_std=jax.tree.map(lambda s: s * sigma, state.mutation_std))
        keys = jax.random.split(jax.random.fold_in(jax.random.key(1000), seed), generations)
        _, (best, ensemble) = jax.lax.scan(generation, state, keys)
        return best[-1], ensemble[-1]

    return jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))


def plot(one_generation: dict, pretrained: float, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, which in zip(axes, ("best_child", "ensemble"), strict=True):
        for density, rows in one_generation.items():
            sigmas = [r["sigma"] for r in rows]
            mean = [r[which]["mean"] for r in rows]
            ci = [r[which]["ci95"] for r in rows]
            ax.errorbar(sigmas, mean, yerr=ci, marker="o", capsize=3, label=f"density {density}")
        ax.axhline(pretrained, color="k", ls=":", label="pretrained")
        ax.set_xscale("log")
        ax.set_xlabel("sigma (× init std)")
        ax.set_title(f"one generation: {which.replace('_', ' ')}")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy (mean, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--children", type=int, default=200)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--ensemble", type=int, default=10)
    args = parser.parse_args()
    sigmas = (0.03, 0.3, 3.0) if args.quick else (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    if args.quick:
        args.seeds, args.children, args.generations, pretrain_steps = 2, 16, 3, 50
    else:
        pretrain_steps = 300
    train, val, test = splits()
    model = lrne.nn.MLP((64,), 10)
    params = pretrain(model, train, pretrain_steps)
    task = lrne.tasks.Classification(model, *val, objective="log_likelihood")
    pretrained = float(accuracy(task.apply(params, test[0]), test[1]))
    print(f"pretrained test accuracy {pretrained:.4f}")

    def sweep(generations, configs):
        table = {}
        for name, density, mask in configs:
            run = make_run(
                task, test, params, density, mask, args.children, generations, args.ensemble
            )
            best, ens = run(jnp.asarray(sigmas, jnp.float32), jnp.arange(args.seeds))
            rows = [
                {
                    "sigma": sigma,
                    "best_child": mean_ci95(np.asarray(best[i]).tolist()),
                    "ensemble": mean_ci95(np.asarray(ens[i]).tolist()),
                }
                for i, sigma in enumerate(sigmas)
            ]
            for row in rows:
                print(generations, name, row)
            table[name] = rows
        return table

    densities = DENSITIES[:2] if args.quick else DENSITIES
    dynamic = [(str(d), d, "dynamic") for d in densities]
    one = sweep(1, dynamic)
    static = ("0.1 static", 0.1, "static")
    # Quick: one multi-generation sweep (each is a compile); dynamic masks ran above.
    many = sweep(args.generations, [static] if args.quick else [*dynamic, static])

    def peak(table, which):
        return {name: max(rows, key=lambda r: r[which]["mean"]) for name, rows in table.items()}

    result = {
        "pretrained_test_accuracy": pretrained,
        "one_generation": one,
        "generations": many,
        "best_sigma_one_generation": {
            name: {
                "sigma": r["sigma"],
                "ensemble": r["ensemble"]["mean"],
                "best_child": r["best_child"]["mean"],
            }
            for name, r in peak(one, "ensemble").items()
        },
        "best_sigma_generations": {
            name: {
                "sigma": r["sigma"],
                "ensemble": r["ensemble"]["mean"],
                "best_child": r["best_child"]["mean"],
            }
            for name, r in peak(many, "best_child").items()
        },
        "machine": machine(),
        "setup": {
            "mlp": [64, 64, 10],
            "split": "digits, 60/20/20 train/val/test, permutation seed 0",
            "pretrain": f"adam 3e-3, {pretrain_steps} full-batch steps",
            "selection": "validation mean log-likelihood",
            "children": args.children,
            "generations": args.generations,
            "elites_multi_generation": 10,
            "ensemble_k": args.ensemble,
            "seeds": args.seeds,
            "sigmas": list(sigmas),
            "quick": args.quick,
        },
    }
    write("subspace_finetune_quick" if args.quick else "subspace_finetune", result)
    if not args.quick:
        plot(one, pretrained, RESULTS / "subspace_finetune.png")


if __name__ == "__main__":
    main()
