"""Custom gradient rules people write, each checked with `fb.check_vjp` (tests/test_vjp.py runs them all).

    python examples/custom_rules.py        # prints each rule's verdict

Each function is a `jax.custom_vjp` with its derivation in the docstring. Two of them differ from the
true gradient on purpose (a straight-through estimator, a clipped backward): they are checked with
`by_design=True`, so the report shows by how much they differ without calling it a bug.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import fnbackprop as fb


@jax.custom_vjp
def logsumexp(x):
    """y = m + log sum_j exp(x_j - m), m = max_j x_j (stable); dy/dx_j = exp(x_j - y) = softmax(x)_j."""
    m = jnp.max(x, -1, keepdims=True)
    return m[..., 0] + jnp.log(jnp.sum(jnp.exp(x - m), -1))


logsumexp.defvjp(lambda x: (logsumexp(x), (x, logsumexp(x))),
                 lambda res, g: (g[..., None] * jnp.exp(res[0] - res[1][..., None]),))


@jax.custom_vjp
def softplus(x):
    """y = log(1 + e^x), written stably as max(x, 0) + log1p(e^-|x|); dy/dx = sigmoid(x)."""
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(x),))


@jax.custom_vjp
def gelu(x):
    """GPT-2's tanh GELU, y = x/2 (1 + tanh u), u = c (x + 0.044715 x^3), c = sqrt(2/pi). The forward keeps
    only x; the backward recomputes u: dy/dx = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) c (1 + 3 * 0.044715 x^2)."""
    return 0.5 * x * (1 + jnp.tanh(jnp.sqrt(2 / jnp.pi) * (x + 0.044715 * x**3)))


def _gelu_bwd(x, g):
    c = jnp.sqrt(2 / jnp.pi)
    t = jnp.tanh(c * (x + 0.044715 * x**3))
    return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)),)


gelu.defvjp(lambda x: (gelu(x), x), _gelu_bwd)


@jax.custom_vjp
def round_ste(x):
    """Rounding with a straight-through estimator: y = round(x), but the backward passes g through as if
    y = x (the true derivative is 0 almost everywhere). Different from the gradient by design."""
    return jnp.round(x)


round_ste.defvjp(lambda x: (round_ste(x), None), lambda _, g: (g,))


@jax.custom_vjp
def clip_gradient(x):
    """y = x, whose backward clips the incoming gradient to [-0.1, 0.1]. Different from the gradient by design."""
    return x


clip_gradient.defvjp(lambda x: (x, None), lambda _, g: (jnp.clip(g, -0.1, 0.1),))


@jax.custom_vjp
def matmul(a, b):
    """C = A B; dA = G B^T, dB = A^T G (G = dC)."""
    return a @ b


matmul.defvjp(lambda a, b: (a @ b, (a, b)), lambda res, g: (g @ res[1].T, res[0].T @ g))


def examples(key: jax.Array) -> dict:
    """name -> (function, arguments, by_design)."""
    k1, k2, k3 = jax.random.split(key, 3)
    x = jax.random.normal(k1, (4, 6))
    return {
        "logsumexp": (logsumexp, (x,), False),
        "softplus": (softplus, (x,), False),
        "gelu (recomputing)": (gelu, (x,), False),
        "matmul": (matmul, (x, jax.random.normal(k2, (6, 3))), False),
        "round, straight-through": (round_ste, (3 * x,), True),
        "clipped backward": (clip_gradient, (x,), True),
    }


if __name__ == "__main__":
    for name, (f, args, by_design) in examples(jax.random.PRNGKey(0)).items():
        report = fb.check_vjp(f, *args, by_design=by_design)
        print(f"{name:24s} {'PASS' if report.passed else 'FAIL'}  " + "; ".join(f"{r.name}: {r.verdict}" for r in report.rows[:1]))
