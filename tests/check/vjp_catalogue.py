"""A catalogue of custom_vjp rules written here, outside the package: each base function with its correct
rule and rules carrying one planted mistake, labelled with the kind of mistake it is (by its
definition, not by what the checker says). Inputs: pytrees, integer indices, broadcasting, square
matrices where a transpose keeps the shape.

`CATALOGUE`: {name: Case(fn, args, kind)}, kind None for a correct rule.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class Case(NamedTuple):
    fn: Callable
    args: tuple
    kind: str | None  # the planted mistake's kind (a diagnosis word), None when the rule is right


def ruled(primal: Callable, fwd: Callable, bwd: Callable) -> Callable:
    f = jax.custom_vjp(primal)
    f.defvjp(fwd, bwd)
    return f


def _keyed(i: int, shape: tuple) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(100 + i), shape)


X44, W44, B4, X34 = _keyed(1, (4, 4)), _keyed(2, (4, 4)), _keyed(3, (4,)), _keyed(4, (3, 4))


# ----- affine map x W + b, W square --------------------------------------------------------------------
def affine(mistake: str = "") -> Callable:
    def bwd(res, g):
        x, W = res
        dx, dW, db = g @ W.T, x.T @ g, g.sum(0)
        return {"": (dx, dW, db), "dx = g W": (g @ W, dW, db), "dW = (x^T g)^T": (dx, dW.T, db),
                "db not summed": (dx, dW, g), "db = mean": (dx, dW, g.mean(0)), "dW dropped": (dx, jnp.zeros_like(W), db),
                "dW / m": (dx, dW / x.shape[0], db)}[mistake]
    return ruled(lambda x, W, b: x @ W + b, lambda x, W, b: (x @ W + b, (x, W)), bwd)


AFFINE = {"": None, "dx = g W": "transpose", "dW = (x^T g)^T": "transpose", "db not summed": "broadcast-sum",
          "db = mean": "scale", "dW dropped": "zero", "dW / m": "scale"}


# ----- tanh(x W), x and W both square -------------------------------------------------------------------
def tanh_layer(mistake: str = "") -> Callable:
    def bwd(res, g):
        x, W, y = res
        dz = {"tanh' missing": g, "tanh for tanh'": g * y}.get(mistake, g * (1 - y ** 2))
        dx, dW = dz @ W.T, x.T @ dz
        return {"dx and dW swapped": (dW, dx), "dx sign": (-dx, dW)}.get(mistake, (dx, dW))
    return ruled(lambda x, W: jnp.tanh(x @ W), lambda x, W: (jnp.tanh(x @ W), (x, W, jnp.tanh(x @ W))), bwd)


TANH_LAYER = {"": None, "tanh' missing": "missing-derivative", "tanh for tanh'": "activation-for-derivative",
              "dx and dW swapped": "swapped", "dx sign": "sign"}


# ----- elementwise: softplus, sigmoid, recomputing GELU (tanh form) -----------------------------------
def softplus(mistake: str = "") -> Callable:
    def bwd(x, g):
        return ({"": g * jax.nn.sigmoid(x), "sigma' missing": g, "softplus for its derivative": g * jnp.logaddexp(x, 0.0),
                 "x 2": 2 * g * jax.nn.sigmoid(x)}[mistake],)
    return ruled(lambda x: jnp.logaddexp(x, 0.0), lambda x: (jnp.logaddexp(x, 0.0), x), bwd)


SOFTPLUS = {"": None, "sigma' missing": "missing-derivative", "softplus for its derivative": "activation-for-derivative",
            "x 2": "scale"}


def sigmoid(mistake: str = "") -> Callable:
    def bwd(y, g):
        return ({"": g * y * (1 - y), "sigmoid for its derivative": g * y, "derivative missing": g}[mistake],)
    return ruled(jax.nn.sigmoid, lambda x: (jax.nn.sigmoid(x), jax.nn.sigmoid(x)), bwd)


SIGMOID = {"": None, "sigmoid for its derivative": "activation-for-derivative", "derivative missing": "missing-derivative"}


def _gelu(x):
    return 0.5 * x * (1 + jnp.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def gelu(mistake: str = "") -> Callable:
    def bwd(x, g):  # recomputes from x instead of storing intermediates
        u = 0.7978845608028654 * (x + 0.044715 * x ** 3)
        t = jnp.tanh(u)
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * 0.7978845608028654 * (1 + 3 * 0.044715 * x ** 2)
        return ({"": g * d, "gelu for gelu'": g * _gelu(x), "gelu' missing": g, "sign": -g * d}[mistake],)
    return ruled(_gelu, lambda x: (_gelu(x), x), bwd)


GELU = {"": None, "gelu for gelu'": "activation-for-derivative", "gelu' missing": "missing-derivative", "sign": "sign"}


def gelu_layer(mistake: str = "") -> Callable:
    """gelu(x W): the written-out GELU inside a layer; its slips show only through dW and dx."""
    def bwd(res, g):
        x, W = res
        z = x @ W
        u = 0.7978845608028654 * (z + 0.044715 * z ** 3)
        t = jnp.tanh(u)
        d = 0.5 * (1 + t) + 0.5 * z * (1 - t ** 2) * 0.7978845608028654 * (1 + 3 * 0.044715 * z ** 2)
        dz = {"": g * d, "gelu for gelu'": g * _gelu(z), "gelu' missing": g}[mistake]
        return dz @ W.T, x.T @ dz
    return ruled(lambda x, W: _gelu(x @ W), lambda x, W: (_gelu(x @ W), (x, W)), bwd)


GELU_LAYER = {"": None, "gelu for gelu'": "activation-for-derivative", "gelu' missing": "missing-derivative"}


# ----- log-sum-exp over the last axis -------------------------------------------------------------------
def logsumexp(mistake: str = "") -> Callable:
    def primal(x):
        top = jax.lax.stop_gradient(x.max(-1, keepdims=True))
        return top[..., 0] + jnp.log(jnp.exp(x - top).sum(-1))

    def bwd(res, g):
        x, y = res
        p = jnp.exp(x - y[..., None])
        return ({"": g[..., None] * p, "x 0.5": 0.5 * g[..., None] * p, "sign": -g[..., None] * p,
                 "inf": g[..., None] * p / (x - x)}[mistake],)
    return ruled(primal, lambda x: (primal(x), (x, primal(x))), bwd)


LOGSUMEXP = {"": None, "x 0.5": "scale", "sign": "sign", "inf": "non-finite"}


# ----- a pytree of parameters: relu(x W1 + b1) W2 ---------------------------------------------------------
def two_layer(mistake: str = "") -> Callable:
    def primal(p, x):
        return jax.nn.relu(x @ p["W1"] + p["b1"]) @ p["W2"]

    def fwd(p, x):
        z = x @ p["W1"] + p["b1"]
        return jax.nn.relu(z) @ p["W2"], (p, x, z)

    def bwd(res, g):
        p, x, z = res
        a = jax.nn.relu(z)
        da = g @ p["W2"].T
        dz = {"relu' missing": da, "relu for relu'": da * a}.get(mistake, da * (z > 0))
        grads = {"W1": x.T @ dz, "b1": dz.sum(0), "W2": a.T @ g}
        if mistake == "db1 not summed":
            grads["b1"] = dz
        if mistake == "dW2 transposed":
            grads["W2"] = grads["W2"].T
        if mistake == "dW1 x m":
            grads["W1"] = grads["W1"] * x.shape[0]
        return grads, dz @ p["W1"].T
    return ruled(primal, fwd, bwd)


TWO_LAYER = {"": None, "relu' missing": "missing-derivative", "relu for relu'": "activation-for-derivative",
             "db1 not summed": "broadcast-sum", "dW2 transposed": "transpose", "dW1 x m": "scale"}
TWO_LAYER_ARGS = ({"W1": _keyed(5, (4, 6)), "b1": _keyed(6, (6,)), "W2": _keyed(7, (6, 6))}, X34)


# ----- an embedding: integer indices (float0 cotangents), a repeated row ------------------------------------
def embedding(mistake: str = "") -> Callable:
    def bwd(res, g):
        E, idx = res
        dE = jnp.zeros_like(E).at[idx].add(g)
        return {"": dE, "dE dropped": jnp.zeros_like(E), "x 2": 2 * dE, "sign": -dE}[mistake], None
    return ruled(lambda E, idx: E[idx], lambda E, idx: (E[idx], (E, idx)), bwd)


EMBEDDING = {"": None, "dE dropped": "zero", "x 2": "scale", "sign": "sign"}
EMBEDDING_ARGS = (_keyed(8, (6, 3)), jnp.array([0, 2, 2, 5]))


# ----- a product of two square matrices -------------------------------------------------------------------
def matmul(mistake: str = "") -> Callable:
    def bwd(res, g):
        A, B = res
        dA, dB = g @ B.T, A.T @ g
        return {"": (dA, dB), "dA = g B": (g @ B, dB), "dB = A g": (dA, A @ g), "swapped": (dB, dA)}[mistake]
    return ruled(jnp.matmul, lambda A, B: (A @ B, (A, B)), bwd)


MATMUL = {"": None, "dA = g B": "transpose", "dB = A g": "transpose", "swapped": "swapped"}


# ----- a weighted sum over the last axis, the weights broadcast over rows ----------------------------------
def weighted_sum(mistake: str = "") -> Callable:
    def bwd(res, g):
        x, w = res
        dx, dw = g[:, None] * w, (g[:, None] * x).sum(0)
        return {"": (dx, dw), "dw not summed": (dx, g[:, None] * x), "dw = mean": (dx, (g[:, None] * x).mean(0))}[mistake]
    return ruled(lambda x, w: (x * w).sum(-1), lambda x, w: ((x * w).sum(-1), (x, w)), bwd)


WEIGHTED_SUM = {"": None, "dw not summed": "broadcast-sum", "dw = mean": "scale"}


FAMILIES: dict[str, tuple[Callable, dict, tuple]] = {
    "affine": (affine, AFFINE, (X34, W44, B4)),
    "tanh layer": (tanh_layer, TANH_LAYER, (X44, W44)),
    "softplus": (softplus, SOFTPLUS, (X34,)),
    "sigmoid": (sigmoid, SIGMOID, (X34,)),
    "gelu": (gelu, GELU, (X34,)),
    "gelu layer": (gelu_layer, GELU_LAYER, (X34, _keyed(9, (4, 5)))),
    "logsumexp": (logsumexp, LOGSUMEXP, (X34,)),
    "two layer": (two_layer, TWO_LAYER, TWO_LAYER_ARGS),
    "embedding": (embedding, EMBEDDING, EMBEDDING_ARGS),
    "matmul": (matmul, MATMUL, (X44, W44)),
    "weighted sum": (weighted_sum, WEIGHTED_SUM, (X34, B4)),
}

CATALOGUE: dict[str, Case] = {f"{family}: {mistake or 'correct'}": Case(make(mistake), args, kind)
                              for family, (make, kinds, args) in FAMILIES.items() for mistake, kind in kinds.items()}


def diagnosis_word(diagnosis: str) -> str:
    """The first word of a diagnosis ("scale x2: ..." -> "scale")."""
    return diagnosis.split(":")[0].split(" ")[0]


def score(check: Callable[[Case], Any]) -> dict[str, tuple[bool, str]]:
    """{name: (passed, diagnosis)} of `check(case) -> Report` over the catalogue."""
    return {name: ((r := check(case)).passed, r.diagnosis) for name, case in CATALOGUE.items()}
