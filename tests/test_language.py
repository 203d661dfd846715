"""The factorized transformer, the language-model task and the corpus loader."""

import hashlib
import math
import urllib.error
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import lrne
from lrne.nn.transformer import Transformer, causal_attention, rotary

TEXT = (
    "the cat sat on the mat. the dog sat on the log. a cat and a dog sat on a mat. "
    "the mat was flat and the log was long. "
) * 12


def small(arm: str, vocab: int) -> Transformer:
    """A preset arm with one block instead of three: faster to compile."""
    return Transformer.preset(arm, vocab, num_blocks=1)


def factorized_task() -> lrne.tasks.LanguageModel:
    vocab = len(lrne.tasks.LanguageModel.vocabulary(TEXT))
    return lrne.tasks.LanguageModel(small("factorized", vocab), TEXT, context=8, batch_size=2)


def ga_population(task: lrne.tasks.LanguageModel, size: int):
    params = jax.jit(task.init_params)(jax.random.key(0))
    strategy = lrne.ga(size, 1, 0.5)
    state = jax.jit(strategy.init)(jax.random.key(2), params)
    population, _ = jax.jit(strategy.ask)(jax.random.key(1), state)
    return params, population


@pytest.fixture(scope="module")
def factorized():
    """The factorized task, its initial params and a GA population of 4: built once."""
    task = factorized_task()
    params, population = ga_population(task, 4)
    return task, params, population


def test_factorized_output_equals_dense_output_on_materialized_params():
    ids = jax.random.randint(jax.random.key(0), (3, 12), 0, 40)
    factorized = Transformer.preset("factorized", 40, num_blocks=2)
    variables = jax.jit(factorized.init)(jax.random.key(1), ids)
    dense = Transformer.preset("full", 40, num_blocks=2)
    materialized = lrne.materialize(variables)
    assert jax.tree.structure(materialized) == jax.tree.structure(
        jax.eval_shape(dense.init, jax.random.key(1), ids)
    )
    np.testing.assert_allclose(
        jax.jit(factorized.apply)(variables, ids),
        jax.jit(dense.apply)(materialized, ids),
        rtol=2e-4,
        atol=2e-5,
    )


def test_every_component_has_its_own_rank():
    model = Transformer(vocab_size=30, num_blocks=1, qkv_rank=2, o_rank=3, ff_rank=4, embed_rank=5)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    block = params["block_0"]
    assert block["q"]["kernel"].A.shape == (32, 2)
    assert block["v"]["kernel"].B.shape == (2, 32)
    assert block["o"]["kernel"].A.shape == (32, 3)
    assert block["ff_in"]["kernel"].A.shape == (32, 4)
    assert block["ff_out"]["kernel"].B.shape == (4, 32)
    assert params["embed"]["embedding"].A.shape == (30, 5)
    assert set(block["LayerNorm_ff"]) == {"scale", "bias"}


def test_causal_mask_future_tokens_do_not_change_past_logits():
    model = small("factorized", 20)
    ids = jax.random.randint(jax.random.key(0), (1, 10), 0, 20)
    variables = jax.jit(model.init)(jax.random.key(1), ids)
    changed = ids.at[0, 6:].set((ids[0, 6:] + 7) % 20)
    apply = jax.jit(model.apply)
    before, after = apply(variables, ids), apply(variables, changed)
    np.testing.assert_array_equal(before[0, :6], after[0, :6])
    assert not np.allclose(before[0, 6:], after[0, 6:])


def test_causal_attention_matches_a_numpy_reference():
    q, k, v = (jax.random.normal(key, (5, 2, 4)) for key in jax.random.split(jax.random.key(0), 3))
    got = np.asarray(causal_attention(q, k, v))
    qn, kn, vn = (np.asarray(x, np.float64) for x in (q, k, v))
    for h in range(2):
        for i in range(5):
            scores = np.array([qn[i, h] @ kn[j, h] / 2.0 for j in range(i + 1)])
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            np.testing.assert_allclose(got[i, h], weights @ vn[: i + 1, h], rtol=1e-5, atol=1e-6)


def test_rotary_preserves_norms_and_depends_on_relative_position():
    x = jax.random.normal(jax.random.key(0), (16, 8))
    positions = jnp.arange(16)
    rotated = rotary(x, positions)
    np.testing.assert_allclose(
        jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5
    )
    q, k = jax.random.normal(jax.random.key(1), (2, 8))

    def score(m: int, n: int) -> float:
        return float(rotary(q[None], jnp.array([m]))[0] @ rotary(k[None], jnp.array([n]))[0])

    for m, n in ((3, 1), (10, 4), (7, 7)):
        assert score(m, n) == pytest.approx(score(m + 5, n + 5), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(1, 3), abs=1e-3)
    with pytest.raises(ValueError, match="even"):
        rotary(jnp.ones((2, 3)), jnp.arange(2))


def test_uniform_predictor_loss_is_ln_vocab():
    class Uniform(nn.Module):
        vocab: int

        @nn.compact
        def __call__(self, ids):
            bias = self.param("bias", nn.initializers.zeros_init(), (self.vocab,))
            return jnp.zeros((*ids.shape, self.vocab)) + bias

    vocab = len(lrne.tasks.LanguageModel.vocabulary(TEXT))
    task = lrne.tasks.LanguageModel(Uniform(vocab), TEXT, context=16, batch_size=4)
    params = task.init_params(jax.random.key(0))
    population = lrne.Population({}, jax.tree.map(lambda x: x[None], params))
    fitness, metrics = task.evaluate(jax.random.key(0), population)
    assert float(-fitness[0]) == pytest.approx(math.log(vocab), rel=1e-6)
    assert float(metrics["best_eval_loss"]) == pytest.approx(math.log(vocab), rel=1e-6)
    assert int(metrics["tokens"]) == 4 * 16


def test_loss_equals_an_explicit_cross_entropy():
    vocab = len(lrne.tasks.LanguageModel.vocabulary(TEXT))
    model = small("factorized", vocab)
    task = lrne.tasks.LanguageModel(model, TEXT, context=8, batch_size=3)
    variables = jax.jit(task.init_params)(jax.random.key(0))
    logits = np.asarray(jax.jit(model.apply)(variables, task.inputs), np.float64)
    targets = np.asarray(task.targets)
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    picked = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    expected = np.mean(log_z - picked)
    got = jax.jit(task.loss)(variables, task.inputs, task.targets)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    text_ids = [task.chars.index(c) for c in TEXT]
    row = np.asarray(task.inputs[0])
    starts = [s for s in range(len(text_ids)) if text_ids[s : s + 8] == list(row)]
    assert starts, "a training window is a slice of the text"


def test_population_fitness_matches_member_losses_ga_and_es(factorized):
    task, params, population = factorized
    inputs, targets = task.batch(jax.random.key(3))  # the generation's batch
    loss = jax.jit(lambda variables: task.loss(variables, inputs, targets))
    evaluate = jax.jit(task.evaluate)
    fitness, _ = evaluate(jax.random.key(3), population)
    for i in range(4):
        member = jax.tree.map(lambda x, i=i: x[i], population.members)
        assert float(fitness[i]) == pytest.approx(-float(loss(member)), rel=1e-5)
    # ES members: the loss of the mean with each member's δ formed densely.
    es = lrne.es(4, 0.05, optax.sgd(0.1), noise_rank=1)
    perturbed, _ = jax.jit(es.ask)(jax.random.key(1), es.init(jax.random.key(2), params))
    fitness, _ = evaluate(jax.random.key(3), perturbed)
    for i in range(4):
        delta = jax.tree.map(lambda x, i=i: x[i], perturbed.members["perturb"])
        explicit = {"params": lrne.perturb.apply(params["params"], delta)}
        assert float(fitness[i]) == pytest.approx(-float(loss(explicit)), rel=1e-4)
    assert float(fitness[0]) != float(fitness[1])


def test_short_ga_run_lowers_the_loss():
    vocab = len(lrne.tasks.LanguageModel.vocabulary(TEXT))
    model = Transformer(
        vocab_size=vocab,
        hidden=16,
        num_heads=2,
        ff=32,
        num_blocks=1,
        qkv_rank=4,
        o_rank=4,
        ff_rank=4,
        embed_rank=4,
    )
    task = lrne.tasks.LanguageModel(model, TEXT, context=16, batch_size=8)
    strategy = lrne.ga(32, 4, 0.5)
    state = strategy.init(jax.random.key(0), jax.jit(task.init_params)(jax.random.key(1)))
    step = lrne.generation_step(strategy, task)
    state, history = jax.jit(lambda s, k: jax.lax.scan(step, s, k))(
        state, jax.random.split(jax.random.key(2), 30)
    )
    first, last = -float(history["fitness_max"][0]), -float(history["best_fitness"][-1])
    assert last < first - 0.3, (first, last)
    assert float(history["best_eval_loss"][-1]) < float(history["best_eval_loss"][0])


def test_fresh_batches_are_shared_by_the_members_and_new_each_generation(factorized):
    task, params, _ = factorized
    same = lrne.Population({}, jax.tree.map(lambda x: jnp.stack([x] * 3), params))
    evaluate = jax.jit(task.evaluate)
    loss = jax.jit(task.loss)
    split = int(len(TEXT) * 0.9)
    fitness = {}
    for seed in (1, 2):
        key = jax.random.key(seed)
        fitness[seed] = np.asarray(evaluate(key, same)[0])
        assert np.all(fitness[seed] == fitness[seed][0]), "one batch for every member"
        inputs, targets = task.batch(key)
        assert float(fitness[seed][0]) == pytest.approx(-float(loss(params, inputs, targets)))
        for row, target in zip(np.asarray(inputs), np.asarray(targets), strict=True):
            window = "".join(task.chars[i] for i in [*row, target[-1]])
            assert window in TEXT[:split], "training windows come from the training split"
    assert fitness[1][0] != fitness[2][0], "a new batch each generation"
    fixed = lrne.tasks.LanguageModel(task.model, TEXT, context=8, batch_size=2, fresh_batches=False)
    expected = -float(loss(params, fixed.inputs, fixed.targets))
    for seed in (1, 2):
        got = jax.jit(fixed.evaluate)(jax.random.key(seed), same)[0]
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_eval_loss_scores_consecutive_held_out_windows_in_chunks(factorized):
    task, params, _ = factorized  # batch_size 2: 17 windows = 8 chunks and a tail of 1
    split = int(len(TEXT) * 0.9)
    num = (len(TEXT) - split - 1) // 8
    assert task.eval_inputs.shape == (num, 8) and num % 2 == 1
    held_out = "".join(task.chars[i] for i in np.asarray(task.eval_inputs).ravel())
    assert held_out == TEXT[split : split + num * 8]
    explicit = task.loss(params, task.eval_inputs, task.eval_targets)
    got = jax.jit(task.eval_loss)(params)
    assert float(got) == pytest.approx(float(explicit), rel=1e-5)
    fresh = jax.jit(task.fresh_fitness)(jax.random.key(0), params)
    assert float(fresh) == pytest.approx(-float(got))
    long_text = (TEXT * 300)[: 45 * 8192]
    big = lrne.tasks.LanguageModel(task.model, long_text, context=64, batch_size=2)
    assert big.eval_inputs.size == 32_768, "the default held-out set is 32k characters"


class Successor(nn.Module):
    """Predicts token (id + 1) mod vocab with certainty; causal (position-wise)."""

    vocab: int

    @nn.compact
    def __call__(self, ids):
        self.param("unused", nn.initializers.zeros_init(), (1,))
        return 1e4 * jax.nn.one_hot((ids + 1) % self.vocab, self.vocab)


def test_sample_continues_from_the_last_character_past_the_context():
    chars = lrne.tasks.LanguageModel.vocabulary(TEXT)
    task = lrne.tasks.LanguageModel(Successor(len(chars)), TEXT, context=4, batch_size=2)
    params = task.init_params(jax.random.key(0))
    prompt = chars[3:5]
    text = task.sample(params, prompt, 12, jax.random.key(1))
    assert text == "".join(chars[(5 + i) % len(chars)] for i in range(12))
    long_prompt = chars[:7]  # longer than the context: its last 4 characters are read
    assert task.sample(params, long_prompt, 3, jax.random.key(1)) == chars[7:10]
    with pytest.raises(ValueError, match="not in the task's vocabulary"):
        task.sample(params, "Z~", 3, jax.random.key(1))
    with pytest.raises(ValueError, match="length"):
        task.sample(params, prompt, -1, jax.random.key(1))


def test_sample_draws_from_the_model_distribution():
    class Fixed(nn.Module):
        vocab: int

        @nn.compact
        def __call__(self, ids):
            logits = jnp.full((self.vocab,), -1e4).at[0].set(jnp.log(0.75)).at[1].set(jnp.log(0.25))
            self.param("unused", nn.initializers.zeros_init(), (1,))
            return jnp.broadcast_to(logits, (*ids.shape, self.vocab))

    chars = lrne.tasks.LanguageModel.vocabulary(TEXT)
    task = lrne.tasks.LanguageModel(Fixed(len(chars)), TEXT, context=4, batch_size=2)
    params = task.init_params(jax.random.key(0))
    text = task.sample(params, "a", 400, jax.random.key(2))
    assert set(text) <= set(chars[:2])
    share = text.count(chars[0]) / 400
    assert abs(share - 0.75) < 4.5 * math.sqrt(0.75 * 0.25 / 400)  # binomial, 4.5 sigma
    assert text == task.sample(params, "a", 400, jax.random.key(2)), "keyed"


def test_layer_norms_are_frozen_by_the_ga_by_default(factorized):
    _, _, population = factorized
    block = population.members["params"]["block_0"]
    norm = block["LayerNorm_ff"]["scale"]
    np.testing.assert_array_equal(norm, jnp.ones_like(norm))
    q = block["q"]["kernel"].A
    assert not np.allclose(q[1], q[2])


def test_bad_configurations_are_rejected():
    with pytest.raises(ValueError, match="qkv_rank"):
        Transformer(vocab_size=10, qkv_rank=-1)
    with pytest.raises(ValueError, match="even head size"):
        Transformer(vocab_size=10, hidden=12, num_heads=4)
    with pytest.raises(ValueError, match="arm must be one of"):
        Transformer.preset("huge", 10)
    with pytest.raises(ValueError, match="too short"):
        lrne.tasks.LanguageModel(small("small", 5), "abcde" * 3, context=8)
    with pytest.raises(ValueError, match="outputs shape"):
        lrne.tasks.LanguageModel(small("small", 3), TEXT, context=8)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A stand-in corpus written by the test, made canonical by patching the expected md5."""
    data = TEXT.encode()
    monkeypatch.setattr(lrne.tasks.language, "TINYSHAKESPEARE_MD5", hashlib.md5(data).hexdigest())
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    return path


def test_loader_reads_and_verifies_a_local_copy(corpus, tmp_path):
    assert lrne.tasks.load_tinyshakespeare(corpus) == TEXT
    bad = tmp_path / "bad.txt"
    bad.write_text(TEXT[:-1])  # one character short: another md5
    with pytest.raises(ValueError, match="is not tiny Shakespeare: md5"):
        lrne.tasks.load_tinyshakespeare(bad)


def test_loader_rejects_a_file_that_is_not_the_canonical_corpus(tmp_path):
    # Unpatched: the real md5, which the test's own text does not have.
    path = tmp_path / "other.txt"
    path.write_text(TEXT)
    assert hashlib.md5(TEXT.encode()).hexdigest() != "6fb458f1232090904fb40fe944165e91"
    with pytest.raises(ValueError, match="expected 6fb458f1232090904fb40fe944165e91"):
        lrne.tasks.load_tinyshakespeare(path)


def fake_download(monkeypatch, data: bytes) -> list:
    """Patch ``urlopen`` to serve ``data``; returns the list of URLs requested."""
    calls = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return data

    def fake_urlopen(url, timeout):
        calls.append(url)
        return Response()

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return calls


def test_loader_downloads_once_verifies_and_caches(corpus, tmp_path, monkeypatch):
    calls = fake_download(monkeypatch, corpus.read_bytes())
    cache = tmp_path / "cache"
    text = lrne.tasks.load_tinyshakespeare(cache_dir=str(cache))
    assert text == TEXT and calls == [lrne.tasks.language.TINYSHAKESPEARE_URL]
    assert (cache / "tinyshakespeare.txt").read_text() == TEXT
    assert lrne.tasks.load_tinyshakespeare(cache_dir=str(cache)) == text
    assert len(calls) == 1 and not list(cache.glob("*.part"))


def test_loader_rejects_a_corrupt_download_and_caches_nothing(corpus, tmp_path, monkeypatch):
    fake_download(monkeypatch, corpus.read_bytes()[:-1])
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"the download from .* has md5"):
        lrne.tasks.load_tinyshakespeare(cache_dir=str(cache))
    assert not cache.exists() or not list(cache.iterdir())


def test_loader_without_network_says_what_to_do(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="pass path= to a local copy"):
        lrne.tasks.load_tinyshakespeare(cache_dir=str(tmp_path))


# Under -m slow: a factorized transformer's ES members score the loss of their
# explicit weights in test_population_fitness_matches_member_losses_ga_and_es, and
# each perturbed layer's forward equals W + δ in test_es and test_any_flax_model.
@pytest.mark.slow
def test_lowrank_es_member_equals_its_explicit_dense_weights():
    """A member's forward with its rank-1 perturbation (never formed) equals the
    unperturbed model run on the explicit dense weights W + δ, embedding and
    LayerNorms included."""
    model = Transformer.preset("full", 30, num_blocks=1)
    ids = jax.random.randint(jax.random.key(0), (2, 8), 0, 30)
    variables = model.init(jax.random.key(1), ids)
    es = lrne.es(4, 0.1, optax.sgd(0.1), noise_rank=1)
    population, _ = es.ask(jax.random.key(2), es.init(jax.random.key(3), variables))
    perturbed = jax.jit(lambda member: lrne.nn.population_apply(model, member, ids)[0])
    plain = jax.jit(lambda v: model.apply(v, ids))
    for i in (0, 3):
        member = population.select(jnp.array([i]))
        got = perturbed(member)
        delta = jax.tree.map(lambda x: x[0], member.members["perturb"])
        explicit = {"params": lrne.perturb.apply(population.shared["params"], delta)}
        np.testing.assert_allclose(got, plain(explicit), rtol=1e-4, atol=1e-5)
        assert not np.allclose(got, plain(population.shared), atol=1e-3)


def test_layer_norm_matches_flax():
    x = jax.random.normal(jax.random.key(0), (3, 5, 16)) * 3 + 1
    ours = lrne.nn.LayerNorm()
    theirs = nn.LayerNorm(epsilon=1e-6)
    variables = theirs.init(jax.random.key(1), x)
    variables = jax.tree.map(lambda v: v + 0.1 * jnp.arange(v.size).reshape(v.shape), variables)
    np.testing.assert_allclose(
        ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-5, atol=1e-5
    )
