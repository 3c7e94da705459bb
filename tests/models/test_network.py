"""The fb.mlp contract, hand-coded backward vs jax.grad over a sweep of architectures, custom_vjp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fnbackprop as fb
from fnbackprop.activations import ACTIVATIONS
from fnbackprop.check.battery import compare, sample_targets, valid_heads
from fnbackprop.check.numerics import TOL_FLOAT32, TOL_FLOAT64, rel_err

FLOAT64 = True  # conftest: the module runs with jax_enable_x64 (float64 references at 1e-10)

HIDDEN = [name for name, act in ACTIVATIONS.items() if act.hidden_ok]
HEADS = list(valid_heads())


def test_contract_shapes(key):
    net = fb.mlp([6, 5, 4, 3], hidden=["tanh", "relu"], output="softmax", loss="cross_entropy")
    params = net.init(key)
    assert [(p["W"].shape, p["b"].shape) for p in params] == [((5, 6), (5,)), ((4, 5), (4,)), ((3, 4), (3,))]
    x = jnp.ones((7, 6))
    yhat = net.apply(params, x)
    assert yhat.shape == (7, 3)
    np.testing.assert_allclose(yhat.sum(-1), 1.0, rtol=1e-6)  # softmax rows
    cost, grads = jax.jit(net.value_and_grad)(params, x, jnp.arange(7) % 3)
    assert cost.shape == () and jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    inter = net.intermediates(params, x, jnp.arange(7) % 3)
    assert [a.shape for a in inter["A"]] == [(7, 5), (7, 4), (7, 3)] == [d.shape for d in inter["dA"]]
    assert [z.shape for z in inter["Z"]] == [(7, 5), (7, 4), (7, 3)] == [d.shape for d in inter["dZ"]]


@st.composite
def problems(draw):
    depth = draw(st.integers(1, 5))
    sizes = [draw(st.sampled_from([1, 2, 3, 7, 16, 64])) for _ in range(depth + 1)]
    hidden = [draw(st.sampled_from(HIDDEN)) for _ in range(depth - 1)]
    output, loss = draw(st.sampled_from(HEADS))
    if output == "softmax" and loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)  # one-class softmax has zero gradient everywhere
    m = draw(st.sampled_from([1, 2, 5, 32]))
    dtype = draw(st.sampled_from([jnp.float32, jnp.float64]))
    return fb.mlp(sizes, hidden=hidden, output=output, loss=loss), m, dtype, draw(st.integers(0, 2**30))


def hand_equals_autodiff(problem) -> None:
    """Parameters and every layer's dZ, dA; tolerance 1e-10 in float64, 2e-5 in float32 (see numerics)."""
    net, m, dtype, seed = problem
    kp, kx, ky = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = net.init(kp, dtype)
    x = jax.random.normal(kx, (m, *net.in_shape), dtype)
    y = sample_targets(ky, net.head.loss.name, m, net.n_out, dtype)
    agreement = compare(net, params, x, y, finite_differences=False)
    tol = TOL_FLOAT64 if dtype == jnp.float64 else TOL_FLOAT32
    assert agreement.hand_vs_autodiff <= tol, agreement
    assert agreement.intermediates_vs_autodiff <= tol, agreement


@settings(max_examples=6)  # 6 random architectures in the quick suite: it must stay under 6 min on 2 cores
@given(problems())
def test_hand_equals_autodiff_over_architectures(problem):
    hand_equals_autodiff(problem)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)  # the longer sweep, in the slow step
@given(problems())
def test_hand_equals_autodiff_over_more_architectures(problem):
    hand_equals_autodiff(problem)


@pytest.fixture(scope="module")
def problem():
    net = fb.mlp([4, 8, 8, 3], hidden=["tanh", "relu"], output="softmax", loss="cross_entropy")
    kp, kx = jax.random.split(jax.random.PRNGKey(1))
    params = net.init(kp, jnp.float64)
    x = jax.random.normal(kx, (6, 4), jnp.float64)
    return net, params, x, jnp.array([0, 1, 2, 2, 1, 0])


def test_custom_vjp_grad_is_the_hand_backward(problem):
    net, params, x, y = problem
    cost, hand = net.value_and_grad(params, x, y)
    assert rel_err(jax.grad(net.hand_loss)(params, x, y), hand) <= TOL_FLOAT64
    assert float(net.hand_loss(params, x, y)) == pytest.approx(float(cost), rel=1e-14)
    dx = jax.grad(net.hand_loss, argnums=1)(params, x, y)
    assert rel_err(dx, jax.grad(net.loss, argnums=1)(params, x, y)) <= TOL_FLOAT64
    # inside a larger function the rule receives a cotangent other than 1 and must scale by it
    scaled, scaled_dx = jax.grad(lambda p, v: -3.0 * net.hand_loss(p, v, y), argnums=(0, 1))(params, x)
    assert rel_err(scaled, jax.tree_util.tree_map(lambda g: -3.0 * g, hand)) <= TOL_FLOAT64
    assert rel_err(scaled_dx, -3.0 * dx) <= TOL_FLOAT64


def test_per_example_gradients_by_vmap_average_to_the_batch_gradient(problem):
    net, params, x, y = problem
    per_example = jax.vmap(jax.grad(net.hand_loss), in_axes=(None, 0, 0))(params, x[:, None], y[:, None])
    assert jax.tree_util.tree_leaves(per_example)[0].shape[0] == x.shape[0]
    mean = jax.tree_util.tree_map(lambda g: g.mean(0), per_example)
    assert rel_err(mean, net.value_and_grad(params, x, y)[1]) <= TOL_FLOAT64
    # and each example's gradient is the gradient of that example alone
    first = jax.tree_util.tree_map(lambda g: g[0], per_example)
    assert rel_err(first, jax.grad(net.loss)(params, x[:1], y[:1])) <= TOL_FLOAT64


def test_jit_and_eager_agree(problem):
    net, params, x, y = problem
    eager = net.value_and_grad(params, x, y)
    jitted = jax.jit(net.value_and_grad)(params, x, y)
    assert rel_err(eager, jitted) <= TOL_FLOAT64
    assert rel_err(jax.jit(jax.grad(net.hand_loss))(params, x, y), eager[1]) <= TOL_FLOAT64


def test_float_targets_get_the_true_cotangent(problem):
    net, params, x, labels = problem
    y = jax.nn.one_hot(labels, 3, dtype=jnp.float64)
    assert rel_err(jax.grad(net.hand_loss, argnums=2)(params, x, y), jax.grad(net.loss, argnums=2)(params, x, y)) <= TOL_FLOAT64


def test_init_schemes_have_the_stated_scales(key):
    n_in = 400
    for scheme, w_std, b_std in [("lecun", n_in**-0.5, 0), ("he", (2 / n_in) ** 0.5, 0),
                                 ("nielsen", n_in**-0.5, 1), ("nielsen_large", 1, 1)]:
        (p,) = fb.mlp([n_in, 300], init=scheme).init(key, jnp.float64)
        assert float(p["W"].std()) == pytest.approx(w_std, rel=0.02), scheme
        assert float(p["b"].std()) == pytest.approx(b_std, abs=0.15), scheme
