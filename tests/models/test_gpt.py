"""The GPT's hand-written backward: every parameter and intermediate against jax.grad, causality, and
the classic mistakes planted one at a time (each must be caught by the checker and by these tests).

Tolerance: 1e-10 relative in float64, the project's tolerance for "equal to autodiff up to rounding"
(measured errors are about 1e-15; a wrong term moves them to 1e-2 or more)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb
from fnbackprop.check.mutations import GPT_MISTAKES, planted_gpt_mistake
from fnbackprop.check.numerics import rel_err

FLOAT64 = True  # conftest: the module runs with jax_enable_x64
TOL = 1e-10


def draw_configuration(seed: int) -> dict:
    """A random small GPT and batch: 1-3 layers, heads dividing the width, context 1 to block size, batch 1-4."""
    rng = np.random.default_rng(seed)
    n_head = int(rng.integers(1, 4))
    block = int(rng.integers(2, 7))
    return {"vocab_size": int(rng.integers(3, 12)), "block_size": block, "n_layer": int(rng.integers(1, 4)), "n_head": n_head,
            "n_embd": n_head * int(rng.integers(2, 5)), "bias": bool(rng.integers(2)), "dropout": float(rng.choice([0.0, 0.3])),
            "T": int(rng.integers(1, block + 1)), "m": int(rng.integers(1, 5))}


def batch(model, m, T, seed=1):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return (jax.random.randint(k1, (m, T), 0, model.vocab_size), jax.random.randint(k2, (m, T), 0, model.vocab_size))


def moved_params(model, key):
    """GPT-2's init, with the layer norms' gains and biases moved off 1 and 0 (special values hide mistakes)."""
    rng = np.random.default_rng(99)
    return jax.tree_util.tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape), model.init(key, jnp.float64))


# Seeds 6 and 9 run in the main step (2-layer and 5-position draws, with bias and without); 0-5 in the slow step
# (suite time), among them context 1, three layers and batch 4.
CONFIGS = [draw_configuration(6), draw_configuration(9), *(pytest.param(draw_configuration(s), marks=pytest.mark.slow)
                                                           for s in range(6))]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"L{c['n_layer']}h{c['n_head']}C{c['n_embd']}T{c['T']}m{c['m']}"
                         + ("-bias" if c["bias"] else "") + ("-dropout" if c["dropout"] else ""))
def test_every_gradient_and_intermediate_equals_autodiff(config):
    config = dict(config)
    m, T = config.pop("m"), config.pop("T")
    model = fb.gpt(**config)
    params = moved_params(model, jax.random.PRNGKey(0))
    idx, targets = batch(model, m, T)
    key = jax.random.PRNGKey(7) if model.dropout else None  # fixed dropout masks: the same function for both
    @jax.jit  # one compilation for the four computations
    def everything(params, idx, targets, key):
        t = model.trace(params, idx, targets, key)
        probes = jax.grad(model.probed_loss, argnums=3)(params, idx, targets, model.zero_probes(idx, jnp.float64), key)
        return ((t.loss, t.grads, t.residual, t.probs), jax.value_and_grad(model.loss)(params, idx, targets, key), probes,
                jax.grad(model.hand_loss)(params, idx, targets, key))

    hand, (loss, grads), probes, custom = everything(params, idx, targets, key)
    assert abs(float(hand[0] - loss)) <= TOL * abs(float(loss))
    assert jax.tree_util.tree_structure(hand[1]) == jax.tree_util.tree_structure(grads)
    assert rel_err(hand[1], grads) < TOL
    assert len(hand[2]) == model.n_layer + 1 and rel_err(hand[2], probes["residual"]) < TOL
    assert len(hand[3]) == model.n_layer and rel_err(hand[3], probes["probs"]) < TOL
    assert rel_err(custom, grads) < TOL  # the custom_vjp form


def test_logits_are_causal():
    model = fb.gpt(vocab_size=7, block_size=6, n_layer=2, n_head=2, n_embd=8, bias=True)
    params = moved_params(model, jax.random.PRNGKey(0))
    idx = jnp.array([[1, 2, 3, 4, 5, 6]])
    apply = jax.jit(model.apply)
    base = apply(params, idx)
    for t in range(6):
        changed = apply(params, idx.at[0, t].set((idx[0, t] + 1) % 7))
        moved = np.abs(np.asarray(changed - base)).max(axis=-1)[0]
        assert np.all(moved[:t] == 0.0), f"changing token {t} changed the logits before it"
        assert np.all(moved[t:] > 1e-6), f"changing token {t} left a later position's logits unchanged"


def test_the_embedding_adds_the_gradients_of_a_token_used_twice():
    emb = fb.embedding(vocab_size=4, block_size=3, n_embd=2)
    params = emb.init(jax.random.PRNGKey(0))
    idx = jnp.array([[2, 0, 2]])
    _, cache = emb.forward(params, idx)
    dx = jnp.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], jnp.float32)
    grads, dtokens = emb.backward(params, cache, dx)
    np.testing.assert_array_equal(grads["wte"], [[3.0, 4.0], [0, 0], [6.0, 8.0], [0, 0]])  # token 2 at t=0 and t=2
    np.testing.assert_array_equal(grads["wpe"], dx[0])
    assert dtokens is None


@pytest.mark.slow  # about 20 s: the checker's finite differences on every leaf
def test_the_checker_passes_the_gpt_with_dropout_masks_fixed_by_a_key():
    model = fb.gpt(vocab_size=9, block_size=5, n_layer=2, n_head=2, n_embd=6, bias=True, dropout=0.2)
    params = moved_params(model, jax.random.PRNGKey(0))
    idx, targets = batch(model, 2, 5)
    report = fb.check_vjp(model.hand_loss, params, idx, targets, jax.random.PRNGKey(3), fast=True, transforms=())
    assert report.passed, [(r.name, r.verdict, r.detail) for r in report.failing()]


def planted(mistake):
    """A GPT built with `mistake` planted, its parameters and a batch (the mistake lives in the model's hand_loss trace)."""
    model = fb.gpt(vocab_size=9, block_size=5, n_layer=2, n_head=2, n_embd=6, bias=True)
    return model, moved_params(model, jax.random.PRNGKey(0)), *batch(model, 2, 5)


@pytest.fixture(scope="module")
def autodiff_of_the_planted_model():
    model, params, idx, targets = planted(None)
    return jax.jit(jax.grad(model.loss))(params, idx, targets)


@pytest.mark.parametrize("mistake", sorted(GPT_MISTAKES))
def test_each_planted_mistake_moves_the_gradients_away_from_autodiff(mistake, autodiff_of_the_planted_model):
    """The smallest, GELU's erf-form derivative, differs from the tanh form's by at most about 1e-3 per unit:
    1e-6 relative is far above rounding (1e-15) and far below any of the mistakes' effects."""
    with planted_gpt_mistake(mistake):
        model, params, idx, targets = planted(mistake)
        hand = jax.jit(model.value_and_grad)(params, idx, targets)[1]
    assert rel_err(hand, autodiff_of_the_planted_model) > 1e-6


@pytest.mark.slow  # about 15 s each: the checker's fast mode on the whole model
@pytest.mark.parametrize("mistake", sorted(GPT_MISTAKES))
def test_each_planted_mistake_is_caught_by_the_checker(mistake):
    with planted_gpt_mistake(mistake):
        model, params, idx, targets = planted(mistake)
        report = fb.check_vjp(model.hand_loss, params, idx, targets, fast=True, transforms=())
    assert not report.passed


@pytest.mark.slow  # about 8 s; the whole model's check above covers the same layers
def test_the_layers_alone_pass_the_checker_on_sequences():
    key = jax.random.PRNGKey(0)
    for layer in (fb.causal_self_attention(2, bias=True), fb.layer_norm(bias=False)):  # dense on sequences: in the whole GPT
        report = fb.check_layer(layer, key, in_shape=(4, 6))
        assert report.passed, (layer.name, [(r.name, r.verdict, r.detail) for r in report.failing()])


@pytest.mark.parametrize("kwargs,message", [
    ({"n_head": 3}, "must divide n_embd"), ({"n_layer": 0}, "n_layer must be a positive integer"),
    ({"dropout": 1.0}, "dropout must lie in [0, 1)")])
def test_bad_configurations_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        fb.gpt(**{"vocab_size": 5, "block_size": 4, "n_layer": 1, "n_head": 2, "n_embd": 4, **kwargs})


def test_bad_tokens_are_refused_with_a_clear_error():
    model = fb.gpt(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4)
    params = model.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="longer than block_size=4"):
        model.apply(params, jnp.zeros((1, 5), jnp.int32))
    with pytest.raises(ValueError, match="must be integers"):
        model.apply(params, jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="must have the tokens' shape"):
        model.loss(params, jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 2), jnp.int32))
