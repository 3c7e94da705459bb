"""Recurrent layers: the hand-written BPTT of `fb.rnn`, `fb.lstm` and `fb.gru` against `jax.grad` of an
independent forward written here from PyTorch's equations (a Python loop over time), in float64 at 1e-10:
every parameter's gradient, dx, the initial state's gradient and the gradient entering every h_t (and
every c_t of the LSTM). A sequence run whole equals it run in chunks with the state carried (torch-rnn's
test), and the planted BPTT mistakes fail the checker while their correct twins pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb
from fnbackprop.check.mutations import recurrent_mutations
from fnbackprop.check.numerics import rel_err

FLOAT64 = True
TOL = 1e-10  # the project's float64 tolerance against autodiff (measured here: below 1e-15)
m, T, C, H = 3, 6, 4, 5


def sigmoid(a):
    return 1 / (1 + jnp.exp(-a))


def reference(kind, params, x, state, probes):
    """PyTorch's equations step by step; probes["h"][:, t] is added to h_t and probes["c"][:, t] to c_t
    where they are made, so their gradients are the whole dC/dh_t and dC/dc_t."""
    W_ih, W_hh = params["W_ih"], params["W_hh"]
    b_ih, b_hh = params.get("b_ih", 0.0), params.get("b_hh", 0.0)
    h, c = state if kind == "lstm" else (state, None)
    hs = []
    for t in range(x.shape[1]):
        gi, gh = x[:, t] @ W_ih.T + b_ih, h @ W_hh.T + b_hh
        if kind in ("tanh", "relu"):
            h = (jnp.tanh if kind == "tanh" else jax.nn.relu)(gi + gh)
        elif kind == "lstm":
            i, f, g, o = jnp.split(gi + gh, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g) + probes["c"][:, t]
            h = sigmoid(o) * jnp.tanh(c)
        else:
            (ir, iz, in_), (hr, hz, hn) = jnp.split(gi, 3, axis=-1), jnp.split(gh, 3, axis=-1)
            r, z = sigmoid(ir + hr), sigmoid(iz + hz)
            h = (1 - z) * jnp.tanh(in_ + r * hn) + z * h
        h = h + probes["h"][:, t]
        hs.append(h)
    return jnp.stack(hs, axis=1), ((h, c) if kind == "lstm" else h)


LAYERS = {"tanh": lambda bias: fb.rnn(H, "tanh", bias), "relu": lambda bias: fb.rnn(H, "relu", bias),
          "lstm": lambda bias: fb.lstm(H, bias), "gru": lambda bias: fb.gru(H, bias)}


def draws(kind, bias, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    layer = LAYERS[kind](bias)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), layer.init(k[0], (T, C)))
    x = jax.random.normal(k[1], (m, T, C))
    h0 = jax.random.normal(k[2], (m, H))
    state = (h0, jax.random.normal(k[3], (m, H))) if kind == "lstm" else h0
    return layer, params, x, state, jax.random.normal(k[4], (m, T, H)), jax.random.normal(k[5], (m, H))


@pytest.mark.parametrize("kind,bias", [(kind, True) for kind in LAYERS] + [("lstm", False)] + [
    pytest.param(kind, False, marks=pytest.mark.slow) for kind in ("tanh", "relu", "gru")])  # slow: the suite's time
def test_every_gradient_and_intermediate_equals_autodiff(kind, bias):
    layer, params, x, state, dy, dh_final = draws(kind, bias)
    zeros = {"h": jnp.zeros((m, T, H)), "c": jnp.zeros((m, T, H))}

    def loss(params, x, state, probes):  # C = <h, dy> + <h_T, dh_final>: the final state used too
        hs, final = reference(kind, params, x, state, probes)
        return jnp.sum(hs * dy) + jnp.sum((final[0] if kind == "lstm" else final) * dh_final)

    want = jax.grad(loss, argnums=(0, 1, 2, 3))(params, x, state, zeros)
    hs, final, cache = layer.scan(params, x, state)
    assert rel_err(hs, reference(kind, params, x, state, zeros)[0]) < TOL
    dfinal = (dh_final, jnp.zeros((m, H))) if kind == "lstm" else dh_final
    grads, dx, dstate, found = fb.layers.recurrent.sequence_backward(layer.cell, params, cache, dy, dfinal, intermediates=True)
    assert set(grads) == set(params) == ({"W_ih", "W_hh", "b_ih", "b_hh"} if bias else {"W_ih", "W_hh"})
    for name in params:
        assert rel_err(grads[name], want[0][name]) < TOL, name
    assert rel_err(dx, want[1]) < TOL
    assert rel_err(dstate, want[2]) < TOL  # the initial state's gradient (h and c for the LSTM)
    assert rel_err(found["dh"], want[3]["h"]) < TOL  # dh_t entering every step
    if kind == "lstm":
        assert rel_err(found["dc"], want[3]["c"]) < TOL


@pytest.mark.parametrize("kind", list(LAYERS))
def test_a_sequence_in_chunks_with_the_state_carried_equals_it_whole(kind):
    """torch-rnn's test: the outputs equal; and the gradients, with the state's gradient carried back
    from the second chunk into the first, equal the whole sequence's."""
    layer, params, x, state, dy, _ = draws(kind, True, seed=1)
    whole, final, cache = layer.scan(params, x, state)
    first, mid, cache1 = layer.scan(params, x[:, :2], state)
    second, end, cache2 = layer.scan(params, x[:, 2:], mid)
    # equal to the last rounding unit: XLA may block x W_ih^T differently for 2 and 6 steps (measured: at most 1 ulp)
    assert rel_err(jnp.concatenate([first, second], axis=1), whole) < 1e-15
    assert rel_err(end, final) < 1e-15
    grads, dx, dstate = layer.scan_backward(params, cache, dy)
    g2, dx2, dmid = layer.scan_backward(params, cache2, dy[:, 2:])
    g1, dx1, dstate1 = layer.scan_backward(params, cache1, dy[:, :2], dmid)
    assert rel_err(jax.tree_util.tree_map(jnp.add, g1, g2), grads) < TOL
    assert rel_err(jnp.concatenate([dx1, dx2], axis=1), dx) < TOL and rel_err(dstate1, dstate) < TOL


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_checkpointed_bptt_equals_the_backward_that_stores_every_step(kind):
    """Gruslys et al.'s checkpointed BPTT (segments of 2 or 3 steps, recomputed in the backward), from a given
    state and with the final state's gradient, against the plain backward: equal to float64 rounding."""
    layer, params, x, state, dy, dh_final = draws(kind, True, seed=2)
    dfinal = (dh_final, jnp.zeros((m, H))) if kind == "lstm" else dh_final
    want = layer.scan_backward(params, layer.scan(params, x, state)[2], dy, dfinal)
    for every in (2, 3):
        got = fb.layers.recurrent.checkpointed_backward(layer.cell, params, x, dy, every, state, dfinal)
        assert rel_err(got, want) < TOL, every
    with pytest.raises(ValueError, match="dividing T = 6"):
        fb.layers.recurrent.checkpointed_backward(layer.cell, params, x, dy, 4)


def test_the_layout_and_init_are_pytorchs():
    params = fb.lstm(8).init(jax.random.PRNGKey(0), (10, 3))
    assert {k: v.shape for k, v in params.items()} == {"W_ih": (32, 3), "W_hh": (32, 8), "b_ih": (32,), "b_hh": (32,)}
    assert all(float(jnp.max(jnp.abs(v))) <= 8 ** -0.5 for v in params.values())  # U(-1/sqrt(H), 1/sqrt(H))
    assert float(jnp.std(params["W_ih"])) > 0.6 * 8 ** -0.5 / 3 ** 0.5  # spread over the interval, not near 0
    assert fb.gru(8, bias=False).init(jax.random.PRNGKey(0), (3,))["W_hh"].shape == (24, 8)
    with pytest.raises(ValueError, match="nonlinearity"):
        fb.rnn(4, "sigmoid")
    with pytest.raises(ValueError, match="hidden"):
        fb.lstm(0)


@pytest.mark.parametrize("kind", ["tanh", "lstm", "gru"])
def test_the_checker_passes_each_layer(kind):
    report = fb.check_layer(LAYERS[kind](True), jax.random.PRNGKey(2), in_shape=(4, 3), batch=2)
    assert report.passed, str(report)


MUTATIONS = recurrent_mutations()
QUICK = ["lstm: the cell state's path dropped", "gru: the reset gate outside W_hn h", "rnn: time reversed in the backward"]


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in MUTATIONS])
def test_each_planted_bptt_mistake_fails_and_its_twin_passes(name):
    case = MUTATIONS[name]
    assert fb.check_layer(case.correct, jax.random.PRNGKey(0), in_shape=case.in_shape, batch=2).passed
    report = fb.check_layer(case.mutant, jax.random.PRNGKey(0), in_shape=case.in_shape, batch=2)
    assert not report.passed and {r.verdict for r in report.failing()} == {"backward wrong"}, str(report)


def test_pytorchs_modules_give_the_same_outputs_and_gradients():
    torch = pytest.importorskip("torch", reason="PyTorch not installed (optional extra: pip install '.[torch]')")
    for kind, module in (("tanh", torch.nn.RNN(C, H, batch_first=True, dtype=torch.float64)),
                         ("lstm", torch.nn.LSTM(C, H, batch_first=True, dtype=torch.float64)),
                         ("gru", torch.nn.GRU(C, H, batch_first=True, dtype=torch.float64))):
        layer, _, x, _, dy, _ = draws(kind, True)
        params = {name: jnp.asarray(getattr(module, f"{torch_name}_l0").detach().numpy())
                  for name, torch_name in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh"))}
        tx = torch.tensor(np.asarray(x), requires_grad=True)
        out, _ = module(tx)
        out.backward(torch.tensor(np.asarray(dy)))
        hs, cache = layer.forward(params, x)
        grads, dx = layer.backward(params, cache, dy)
        assert rel_err(hs, out.detach().numpy()) < TOL
        assert rel_err(dx, tx.grad.numpy()) < TOL
        for name, torch_name in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
            assert rel_err(grads[name], getattr(module, f"{torch_name}_l0").grad.numpy()) < TOL, (kind, name)
