"""The computation-graph engine: the worked examples of Lei's notes, fan-out, an MLP, random graphs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fnbackprop as fb
from fnbackprop.graph import OPS, Graph
from fnbackprop.check.numerics import rel_err

FLOAT64 = True  # conftest: the module runs with jax_enable_x64 (float64 references at 1e-10)


def linear_regression():
    g = Graph()
    x, w, b, y = g.input("x"), g.param("w"), g.param("b"), g.input("y")
    u = g.mul(w, x, name="u")
    yhat = g.add(u, b, name="yhat")
    e = g.sub(yhat, y, name="e")
    g.square(e, name="J")
    return g


def test_linear_regression_example_of_the_notes():
    """Lei's Example 5: w = 5, x = 1 gives u = 5, yhat = 6, J = 16 (so b = 1, y = 2, J = e^2).

    Example 6, by hand: dJ/dJ = 1, dJ/de = 2e = 8, dJ/dyhat = 8 * 1, dJ/du = 8, dJ/dw = 8 x = 8, dJ/db = 8.
    """
    g = linear_regression()
    values = g.forward({"x": 1.0, "w": 5.0, "b": 1.0, "y": 2.0})
    assert [float(values[k]) for k in ("u", "yhat", "J")] == [5.0, 6.0, 16.0]
    grads = g.backward(values, "J")
    assert {k: float(grads[k]) for k in ("J", "e", "yhat", "u", "w", "b")} == {"J": 1, "e": 8, "yhat": 8, "u": 8, "w": 8, "b": 8}


def test_sigmoid_neuron_example_of_the_notes():
    """C = 1/2 (sigma(wx + b) - y)^2: dC/dw = (sigma - y) sigma' x, dC/db = (sigma - y) sigma' (the notes' chain rule)."""
    g = Graph()
    x, w, b, y = g.input("x"), g.param("w"), g.param("b"), g.input("y")
    a = g.sigmoid(g.add(g.mul(w, x), b), name="a")
    C = g.mul(g.const(0.5), g.square(g.sub(a, y)), name="C")
    feed = {"x": 1.5, "w": -0.7, "b": 0.2, "y": 1.0}
    grads = g.backward(g.forward(feed), C)
    s = 1 / (1 + np.exp(-(-0.7 * 1.5 + 0.2)))
    assert float(grads["w"]) == pytest.approx((s - 1.0) * s * (1 - s) * 1.5, rel=1e-6)
    assert float(grads["b"]) == pytest.approx((s - 1.0) * s * (1 - s), rel=1e-6)


def test_fan_out_sums_over_successors():
    """p = a*b and q = b*c both use b; f = p * q. df/db = df/dp dp/db + df/dq dq/db = q a + p c."""
    g = Graph()
    a, b, c = g.param("a"), g.param("b"), g.param("c")
    p, q = g.mul(a, b, name="p"), g.mul(b, c, name="q")
    f = g.mul(p, q, name="f")
    grads = g.backward(g.forward({"a": 2.0, "b": 3.0, "c": 4.0}), f)
    assert float(grads["b"]) == 12 * 2 + 6 * 4  # q a + p c = 48
    assert float(grads["a"]) == 12 * 3 and float(grads["c"]) == 6 * 3


def mlp_graph(n_layers: int, m: int):
    """Z[l] = A[l-1] W[l]^T + b[l], A = tanh(Z) (sigmoid last), J = (1/2m) sum (A[L] - Y)^2."""
    g = Graph()
    a = g.input("x")
    for l in range(n_layers):
        z = g.add(g.matmul(a, g.transpose(g.param(f"W{l}"))), g.param(f"b{l}"), name=f"Z{l}")
        a = g.op("sigmoid" if l == n_layers - 1 else "tanh", z, name=f"A{l}")
    g.mul(g.const(1 / (2 * m)), g.sum(g.square(g.sub(a, g.input("y")))), name="J")
    return g


def test_mlp_from_graph_nodes_agrees_with_the_engine(key):
    net = fb.mlp([4, 6, 5, 3], hidden="tanh", output="sigmoid", loss="quadratic")
    params = net.init(key, jnp.float64)
    x = jax.random.normal(key, (7, 4), jnp.float64)
    y = jax.random.uniform(key, (7, 3), jnp.float64)
    g = mlp_graph(3, 7)
    feed = {"x": x, "y": y} | {f"W{l}": p["W"] for l, p in enumerate(params)} | {f"b{l}": p["b"] for l, p in enumerate(params)}
    grads = jax.jit(lambda f: g.backward(g.forward(f), "J"))(feed)
    engine = net.value_and_grad(params, x, y)[1]
    assert rel_err([{"W": grads[f"W{l}"], "b": grads[f"b{l}"]} for l in range(3)], engine) <= 1e-12
    eager = g.backward(g.forward(feed), "J")
    assert rel_err(eager["W0"], grads["W0"]) <= 1e-12


UNARY = ["sigmoid", "tanh", "relu", "square", "exp"]
BINARY = ["add", "sub", "mul"]


@st.composite
def random_graphs(draw):
    """Elementwise ops on 3-vectors, each reading random earlier nodes (fan-out included), then log, mean."""
    g = Graph()
    names = [g.param(f"p{i}") for i in range(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            names.append(g.op(draw(st.sampled_from(UNARY)), draw(st.sampled_from(names))))
        else:
            names.append(g.op(draw(st.sampled_from(BINARY)), draw(st.sampled_from(names)), draw(st.sampled_from(names))))
    safe = g.log(g.add(g.square(g.tanh(names[-1])), g.const(1.0)))  # log of something >= 1
    g.mean(g.add(safe, g.sum(names[-1])), name="out")
    return g, draw(st.integers(0, 2**20))


@settings(max_examples=40)
@given(random_graphs())
def test_random_graphs_agree_with_jax_grad(case):
    g, seed = case
    params = [n.name for n in g.nodes.values() if n.kind == "param"]
    feed = {p: 0.5 * jax.random.normal(jax.random.PRNGKey(seed + i), (3,), jnp.float64) for i, p in enumerate(params)}
    grads = g.backward(g.forward(feed), "out")
    expected = jax.grad(lambda f: g.forward(f)["out"])(feed)
    for p in params:
        np.testing.assert_allclose(grads.get(p, jnp.zeros(3)), expected[p], rtol=1e-10, atol=1e-12)


def test_every_operation_is_covered():
    used = {"add", "sub", "mul", "matmul", "transpose", "sigmoid", "tanh", "relu", "square", "exp", "log", "sum", "mean"}
    assert used == set(OPS)


def test_dot_rendering_shows_values_and_gradients(tmp_path):
    g = linear_regression()
    values = g.forward({"x": 1.0, "w": 5.0, "b": 1.0, "y": 2.0})
    dot = g.to_dot(values, g.backward(values, "J"))
    assert '"yhat" [label="yhat = add | value 6 | grad 8"' in dot and '"u" -> "yhat";' in dot
    written = g.render(tmp_path / "lr", values, g.backward(values, "J"))
    assert [p.suffix for p in written] == [".dot", ".png"] and written[1].read_bytes()[:4] == b"\x89PNG"


def test_graph_errors():
    g = Graph()
    g.input("x")
    with pytest.raises(ValueError, match="already has a node named 'x'"):
        g.input("x")
    with pytest.raises(ValueError, match="unknown operation 'conv'"):
        g.op("conv", "x")
    with pytest.raises(ValueError, match="unknown nodes"):
        g.add("x", "nope")
    with pytest.raises(ValueError, match="forward needs values for"):
        g.forward({})


@pytest.mark.parametrize("shape_a,shape_b", [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
                                             ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((5, 2, 3), (5, 3, 4)),
                                             ((1, 2, 3), (5, 3, 4)), ((4,), (5, 4, 2)), ((6, 1, 2, 3), (5, 3, 4))])
def test_matmul_backward_for_vectors_matrices_and_batches(x64, shape_a, shape_b):
    """numpy's matmul rules: a 1-D left operand is a row, a 1-D right one a column, batch axes broadcast."""
    rng = np.random.default_rng(len(shape_a) * 10 + len(shape_b))
    g = Graph()
    c = g.matmul(g.param("a"), g.param("b"), name="c")
    J = g.sum(g.square(c), name="J")
    A, B = rng.normal(size=shape_a), rng.normal(size=shape_b)
    grads = g.backward(g.forward({"a": A, "b": B}), J)
    expected = jax.grad(lambda a, b: jnp.sum((a @ b) ** 2), argnums=(0, 1))(A, B)
    assert grads["a"].shape == shape_a and grads["b"].shape == shape_b
    assert rel_err((grads["a"], grads["b"]), expected) <= 1e-12


def test_matmul_of_a_scalar_is_refused_clearly():
    g = Graph()
    g.sum(g.matmul(g.param("a"), g.param("b")))
    with pytest.raises(ValueError, match="at least one dimension"):
        g.forward({"a": 2.0, "b": np.ones(3)})
