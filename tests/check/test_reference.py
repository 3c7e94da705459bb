"""An independent float64 reference, written from the textbook definitions in plain numpy.

Nothing here imports the engine's equations: one example at a time, column vectors, as in Nielsen's
network.py and Lei's Algorithm 1, the per-example gradients summed and divided by m. Agreement with
fnbackprop to 1e-9 relative on random architectures is the acceptance criterion of the engine.
It covers every hidden activation and every head the library accepts, at batch sizes of 2 or more.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb
from fnbackprop.check.numerics import rel_err

FLOAT64 = True  # conftest: the module runs with jax_enable_x64 (float64 references at 1e-10)

def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gelu_tanh(z):
    """GPT-2's GELU (Hendrycks and Gimpel 2016, eq. for the tanh approximation)."""
    return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))


# g and g', each from its definition (not from the engine)
G = {
    "identity": (lambda z: z, lambda z: np.ones_like(z)),
    "sigmoid": (sigmoid, lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
    "tanh": (np.tanh, lambda z: 1 / np.cosh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
    "leaky_relu": (lambda z: np.where(z >= 0, z, 0.01 * z), lambda z: np.where(z >= 0, 1.0, 0.01)),  # jax.nn's slope
    "softplus": (lambda z: np.log1p(np.exp(z)), sigmoid),
    "silu": (lambda z: z * sigmoid(z), lambda z: sigmoid(z) + z * sigmoid(z) * (1 - sigmoid(z))),
    "huber": (lambda z: np.where(np.abs(z) <= 1, z * z / 2, np.abs(z) - 0.5), lambda z: np.where(np.abs(z) <= 1, z, np.sign(z))),
    "gelu": (lambda z: gelu_tanh(z), lambda z: np.imag(gelu_tanh(z + 1e-30j)) / 1e-30),  # g' by the complex step, no derivation
}
# every output activation and loss the library accepts together: the regression losses take any output
HEADS = [(out, loss) for loss in ("mse", "quadratic") for out in [*G, "softmax"]] + [("sigmoid", "bce"), ("softmax", "cross_entropy")]


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def per_example_gradient(params, hidden, output, loss, x, y):
    """dL/dW, dL/db of one example's loss L, by the chain rule on column vectors."""
    a, zs, activations = x[:, None], [], [x[:, None]]
    for l, p in enumerate(params):
        z = p["W"] @ a + p["b"][:, None]
        zs.append(z)
        a = G[hidden[l]][0](z) if l < len(params) - 1 else (softmax(z) if output == "softmax" else G[output][0](z))
        activations.append(a)
    y = y[:, None]
    if loss == "mse":  # L = ||a - y||^2
        dL_da = 2 * (a - y)
    elif loss == "quadratic":  # L = 1/2 ||a - y||^2
        dL_da = a - y
    elif loss == "bce":  # L = -sum [y ln a + (1 - y) ln(1 - a)]
        dL_da = -(y / a - (1 - y) / (1 - a))
    else:  # cross_entropy, L = -sum y ln a
        dL_da = -y / a
    if output == "softmax":  # full Jacobian: da_i/dz_j = a_i (delta_ij - a_j)
        delta = (np.diagflat(a) - a @ a.T) @ dL_da
    else:
        delta = dL_da * G[output][1](zs[-1])
    grads = [None] * len(params)
    for l in reversed(range(len(params))):
        grads[l] = {"W": delta @ activations[l].T, "b": delta[:, 0]}
        if l > 0:
            delta = (params[l]["W"].T @ delta) * G[hidden[l - 1]][1](zs[l - 1])
    return grads


def reference_gradient(params, hidden, output, loss, X, Y):
    per = [per_example_gradient(params, hidden, output, loss, x, y) for x, y in zip(X, Y)]
    return [{k: sum(g[l][k] for g in per) / len(per) for k in ("W", "b")} for l in range(len(params))]


def test_the_reference_covers_every_hidden_activation_and_every_head():
    assert set(G) == {name for name, act in fb.ACTIVATIONS.items() if act.hidden_ok}
    assert set(HEADS) == set(fb.check.battery.valid_heads())


@pytest.mark.parametrize("output,loss", HEADS)
def test_fnbackprop_matches_an_independent_numpy_reference(output, loss):
    """An architecture drawn per head: depth 2-3, widths 1-6, hidden activations drawn at random except
    the first, which cycles through all of them (each appears in at least two heads' networks), a batch
    of 2 to 6 (so the 1/m is exercised), non-zero biases."""
    case = HEADS.index((output, loss))
    rng = np.random.default_rng(case)
    depth = int(rng.integers(2, 4))
    sizes = [int(n) for n in rng.integers(1, 7, depth + 1)]
    sizes[-1] = max(sizes[-1], 2)
    hidden = [sorted(G)[case % len(G)]] + [str(g) for g in rng.choice(sorted(G), depth - 2)]
    m = int(rng.integers(2, 7))
    net = fb.mlp(sizes, hidden=hidden, output=output, loss=loss)
    params = [{"W": p["W"], "b": jnp.asarray(rng.normal(size=p["b"].shape))} for p in net.init(jax.random.PRNGKey(case), jnp.float64)]
    X = rng.normal(size=(m, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], m)]
    elif loss == "bce":
        Y = rng.integers(0, 2, (m, sizes[-1])) * 1.0
    else:
        Y = rng.normal(size=(m, sizes[-1]))
    np_params = [{k: np.asarray(v) for k, v in p.items()} for p in params]
    expected = reference_gradient(np_params, hidden, output, loss, X, Y)
    _, grads = jax.jit(net.value_and_grad)(params, jnp.asarray(X), jnp.asarray(Y))
    assert rel_err(grads, expected) <= 1e-9
