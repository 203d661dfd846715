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

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import band_plot, mean_ci95
from harness import RESULTS, pm, script
from sklearn.datasets import load_digits

import lrne
from lrne.ensemble import member_outputs

FULL = {
    "seeds": 5,
    "children": 200,
    "generations": 20,
    "ensemble": 10,
    "pretrain_steps": 300,
    "sigmas": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
    "densities": [1.0, 0.1, 0.01],
}
QUICK = {
    **FULL,
    "seeds": 2,
    "children": 16,
    "generations": 3,
    "pretrain_steps": 50,
    "sigmas": [0.03, 0.3, 3.0],
    "densities": [1.0, 0.1],
}


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
    panels = [
        {
            "lines": [
                {
                    "x": [r["sigma"] for r in rows],
                    "y": [r[which]["mean"] for r in rows],
                    "band": [r[which]["ci95"] for r in rows],
                    "style": "o-",
                    "label": f"density {density}",
                }
                for density, rows in one_generation.items()
            ],
            "hlines": [(pretrained, "pretrained", ":")],
            "xscale": "log",
            "xlabel": "sigma (× init std)",
            "ylabel": "test accuracy (mean, 95% CI)",
            "title": f"one generation: {which.replace('_', ' ')}",
        }
        for which in ("best_child", "ensemble")
    ]
    band_plot(path, panels, size=(11, 4))


def run(args) -> dict:
    sigmas = args.sigmas
    train, val, test = splits()
    model = lrne.nn.MLP((64,), 10)
    params = pretrain(model, train, args.pretrain_steps)
    task = lrne.tasks.Classification(model, *val, objective="log_likelihood")
    pretrained = float(accuracy(task.apply(params, test[0]), test[1]))
    print(f"pretrained test accuracy {pretrained:.4f}")

    def sweep(generations, configs):
        rows_by_name = {}
        for name, density, mask in configs:
            run_all = make_run(
                task, test, params, density, mask, args.children, generations, args.ensemble
            )
            best, ens = run_all(jnp.asarray(sigmas, jnp.float32), jnp.arange(args.seeds))
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
            rows_by_name[name] = rows
        return rows_by_name

    dynamic = [(str(d), d, "dynamic") for d in args.densities]
    one = sweep(1, dynamic)
    static = ("0.1 static", 0.1, "static")
    # Quick: one multi-generation sweep (each is a compile); dynamic masks ran above.
    many = sweep(args.generations, [static] if args.quick else [*dynamic, static])

    def peak(rows_by_name, which):
        best = {n: max(rows, key=lambda r: r[which]["mean"]) for n, rows in rows_by_name.items()}
        return {
            name: {
                "sigma": r["sigma"],
                "ensemble": r["ensemble"]["mean"],
                "best_child": r["best_child"]["mean"],
            }
            for name, r in best.items()
        }

    if not args.quick:
        plot(one, pretrained, RESULTS / "subspace_finetune.png")
    return {
        "pretrained_test_accuracy": pretrained,
        "one_generation": one,
        "generations": many,
        "best_sigma_one_generation": peak(one, "ensemble"),
        "best_sigma_generations": peak(many, "best_child"),
        "setup": {
            "mlp": [64, 64, 10],
            "split": "digits, 60/20/20 train/val/test, permutation seed 0",
            "pretrain": f"adam 3e-3, {args.pretrain_steps} full-batch steps",
            "selection": "validation mean log-likelihood",
            "elites_multi_generation": 10,
            "ensemble_k": args.ensemble,
        },
    }


def table(sub: dict) -> str:
    """Markdown: test accuracy of the best child and the ensemble per density and σ."""
    setup = sub["setup"]
    sigmas = setup["sigmas"]
    lines = [
        "**Subspace fine-tuning** (`benchmarks/subspace_finetune.py`, plot "
        "`benchmarks/results/subspace_finetune.png`): digits 8×8, MLP "
        f"{'→'.join(map(str, setup['mlp']))} pretrained with Adam to test accuracy "
        f"**{sub['pretrained_test_accuracy']:.3f}**; {setup['children']} children, selection "
        f"on validation log-likelihood, top-{setup['ensemble_k']} ensemble, "
        f"{setup['seeds']} seeds (mean ± 95% CI of test accuracy). One generation:",
    ]
    header = " | ".join(f"σ = {s:g}" for s in sigmas) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in sigmas) + " |"
    for part, label in (("one_generation", "density"), ("generations", "density, mask")):
        if part == "generations":
            lines += [
                "",
                "(each cell: best child / ensemble). After "
                f"{setup['generations']} generations (GA, {setup['elites_multi_generation']} "
                "elites):",
            ]
        lines += ["", f"| {label} | {header}", rule]
        for name, rows in sub[part].items():
            if part == "generations" and "static" not in name:
                name = f"{name} dynamic"
            cells = [f"{pm(r['best_child'])} / {pm(r['ensemble'])}" for r in rows]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", f"Machine: {sub['machine']}."])


if __name__ == "__main__":
    script(__file__)
