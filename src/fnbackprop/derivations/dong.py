"""M. Dong, "Back-propagation Tutorial" (2016), transcribed as written, mistakes included.

Examples are columns, and the bias is a constant input "1": layer l's matrix W~[l] has a column 0
of bias weights w_j0 multiplying a_0 = 1, so z^l = W~^l . [1; a^{l-1}]. Derivatives as in section
1.1: sigmoid' = g(1 - g), ReLU' = 1 if z > 0 else 0. The cost is summed over output neurons and,
"in stochastic gradient descent", over the inputs x, so its gradients are m times those of
fnbackprop's averaged cost.

Two equations are wrong as printed and are kept wrong here, for the checker to find:
- section 1.2 writes C = sum_i [y_i ln a_i + (1 - y_i) ln(1 - a_i)] without the minus sign, so
  gradient descent on it *raises* the cross-entropy;
- section 1.3 writes the base case delta_i^L = [y_i/a_i - (1 - y_i)/(1 - a_i)] without the factor
  g'(z_i^L) that section 1.2 has.
`cost_corrected` and `output_delta_corrected` are the fixed versions, named as such.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

G = {
    "sigmoid": (lambda z: 1 / (1 + jnp.exp(-z)), lambda g: g * (1 - g)),  # g'(z) = g(z)[1 - g(z)]
    "relu": (lambda z: jnp.maximum(z, 0), lambda g: (g > 0).astype(g.dtype)),  # 1 if z > 0 else 0
}


def fold(params: list) -> list:
    """fnbackprop layout -> Dong's: W~ = [b | W], (n_l, 1 + n_{l-1}); column 0 multiplies a_0 = 1."""
    return [jnp.concatenate([p["b"][:, None], p["W"]], axis=1) for p in params]


def unfold(folded: list) -> list:
    """W~ -> {"W": W~[:, 1:], "b": W~[:, 0]}."""
    return [{"W": Wt[:, 1:], "b": Wt[:, 0]} for Wt in folded]


def with_constant_input(a):
    """[1; a]: the constant input "1" on top of every column."""
    return jnp.concatenate([jnp.ones((1, a.shape[1]), a.dtype), a], axis=0)


def forward(folded: list, X, hidden: Sequence[str]):
    """z^l = W^l . a^{l-1} (with a_0 = 1);  a^l = g(z^l), the output layer a sigmoid."""
    a, acts = X, []
    for l, Wt in enumerate(folded):
        a_in = with_constant_input(a)
        g = hidden[l] if l < len(hidden) else "sigmoid"
        a = G[g][0](Wt @ a_in)  # z^l = W^l . a^{l-1};  a^l = g(z^l)
        acts.append((a_in, a, g))
    return a, acts


def cost_as_written(aL, y):
    """C = sum_i [y_i ln(a_i^L) + (1 - y_i) ln(1 - a_i^L)]   (section 1.2, as printed: no minus sign)."""
    return jnp.sum(y * jnp.log(aL) + (1 - y) * jnp.log(1 - aL))


def cost_corrected(aL, y):
    """C = -sum_i [y_i ln(a_i^L) + (1 - y_i) ln(1 - a_i^L)]   (the cross-entropy)."""
    return -cost_as_written(aL, y)


def output_delta_section_1_2(aL, y):
    """delta_i^L = [y_i/a_i^L - (1 - y_i)/(1 - a_i^L)] (.) g'(z_i^L)   (section 1.2, dC/dz of the cost as written)."""
    return (y / aL - (1 - y) / (1 - aL)) * G["sigmoid"][1](aL)


def output_delta_section_1_3(aL, y):
    """delta_i^L = [y_i/a_i^L - (1 - y_i)/(1 - a_i^L)]   (section 1.3, as printed: g'(z^L) dropped)."""
    return y / aL - (1 - y) / (1 - aL)


def output_delta_corrected(aL, y):
    """delta_i^L = -[y_i/a_i^L - (1 - y_i)/(1 - a_i^L)] (.) g'(z_i^L) = a_i^L - y_i for the sigmoid."""
    return -output_delta_section_1_2(aL, y)


def backward(folded: list, X, Y, hidden: list[str], output_delta=output_delta_corrected):
    """delta^l = g'(z^l) (.) {[W^{l+1}]^T . delta^{l+1}};  dC/dW^l = delta^l . [a^{l-1}]^T.

    The constant input has no z, so the recursion uses W^{l+1} without its bias column 0.
    Returns (dC/dW~ per layer, delta^L).
    """
    aL, acts = forward(folded, X, hidden)
    delta = output_delta(aL, Y)
    delta_L = delta
    grads = [None] * len(folded)
    for l in reversed(range(len(folded))):
        a_in = acts[l][0]
        grads[l] = delta @ a_in.T  # dC/dW^l = delta^l . [a^{l-1}]^T
        if l > 0:
            _, a_prev, g_prev = acts[l - 1]
            delta = G[g_prev][1](a_prev) * (folded[l][:, 1:].T @ delta)  # delta^l = g'(z^l) (.) (W^{l+1})^T delta^{l+1}
    return grads, delta_L


def l2_update(folded: list, grads: list, eta: float, lam: float, n: int) -> list:
    """W^l <- W^l - (eta lambda / n) W^l - eta dC/dW^l   (section 2; W~ holds the bias column too)."""
    return [Wt - (eta * lam / n) * Wt - eta * g for Wt, g in zip(folded, grads)]
