"""The derivation audit: every transcribed equation checked against jax.grad (float64).

Each entry names its source and equation, the check's verdict (`passed`), the verdict the audit
expects (`expected`: False for the equations printed wrong), and the max relative error against
autodiff. Where an entry maps to fnbackprop's parameter layout, it must also equal the production
engine's hand-coded gradients. The audit is green when every verdict is the expected one: the known
mistakes flagged, everything else passing.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..models.network import mlp
from ..check.numerics import TOL_FLOAT64, rel_err
from . import dong, matrix_calculus, ng, per_example


class AuditRow(NamedTuple):
    source: str
    equation: str
    passed: bool
    expected: bool
    max_rel_err: float
    detail: str

    @property
    def as_expected(self) -> bool:
        return self.passed == self.expected


NG = "Ng's course notation (notes on the deep learning specialization)"
MC = "a framework for derivatives of matrix-valued functions"
DONG = 'M. Dong, "Back-propagation Tutorial" (2016)'
LEI = 'Y. Lei, "Week 5: Backpropagation" lecture notes, Algorithm 1'
DIARY = '"My Machine Learning Diary: Day 32"'


def _problem(sizes, hidden, output, loss, key, targets="binary", bias=True):
    net = mlp(sizes, hidden=hidden, output=output, loss=loss)
    kp, kx, ky = jax.random.split(key, 3)
    params = net.init(kp, jnp.float64)
    if not bias:
        params = [{"W": p["W"], "b": jnp.zeros_like(p["b"])} for p in params]
    else:  # non-zero biases, so that a wrong bias gradient shows
        params = [{"W": p["W"], "b": 0.3 * jax.random.normal(jax.random.fold_in(kp, i), p["b"].shape, jnp.float64)}
                  for i, p in enumerate(params)]
    m = 7
    x = jax.random.normal(kx, (m, sizes[0]), jnp.float64)
    if targets == "binary":
        y = jax.random.bernoulli(ky, 0.5, (m, sizes[-1])).astype(jnp.float64)
    else:
        y = jax.random.normal(ky, (m, sizes[-1]), jnp.float64)
    return net, params, x, y


def _agreement(name: str, source: str, transcribed, autodiff, engine=None, detail: str = "") -> AuditRow:
    err = rel_err(transcribed, autodiff)
    if engine is not None:
        err = max(err, rel_err(transcribed, engine))
    where = "jax.grad" + (" and the engine" if engine is not None else "")
    verdict = f"agrees with {where}" if err <= TOL_FLOAT64 else f"DISAGREES with {where}"
    return AuditRow(source, name, err <= TOL_FLOAT64, True, err, f"{verdict}. {detail}".strip())


# ----- Ng -----------------------------------------------------------------------------------------
def _compiled(fn: Callable, *static: int) -> Callable:
    """jax.jit with static (hashable) arguments: one compilation beats many eager dispatches."""
    return jax.jit(fn, static_argnums=static)


def ng_rows(key) -> list[AuditRow]:
    hidden = ("tanh", "relu")
    net, params, x, y = _problem([5, 6, 4, 3], list(hidden), "sigmoid", "bce", key)
    P, X, Y = ng.to_ng(params), x.T, y.T
    grads, dZs = _compiled(ng.backward, 3)(P, X, Y, hidden)
    autodiff = _compiled(jax.grad(ng.cost), 3)(P, X, Y, hidden)
    engine = _compiled(net.value_and_grad)(params, x, y)[1]
    rows = [_agreement(
        "dZ[L] = Yhat - Y; dA[l-1] = W[l]^T dZ[l]; dZ[l] = dA[l] * g'(Z[l]); dW[l] = (1/m) dZ[l] A[l-1]^T; dB[l] = (1/m) sum_i dZ[l]",
        NG, ng.from_ng(grads), [{"W": g["W"], "b": g["B"][:, 0]} for g in autodiff], engine,
        "Examples as columns; tanh and relu hidden, logistic output.")]
    m = x.shape[0]
    engine_dZ = _compiled(net.intermediates)(params, x, y)["dZ"]
    rows.append(_agreement(
        "blue dZ[l] (per-example loss) = m x the averaged cost's dZ[l]", NG,
        [dZ.T / m for dZ in dZs], engine_dZ, None, "Checked against the engine's dZ of every layer."))
    return rows


# ----- matrix calculus ----------------------------------------------------------------------------
def matrix_calculus_rows(key) -> list[AuditRow]:
    k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
    X = jax.random.normal(k1, (4, 5), jnp.float64)
    W = jax.random.normal(k2, (5, 3), jnp.float64)
    Wl = jax.random.normal(k3, (6, 4), jnp.float64)
    C = jax.random.normal(k4, (4, 5), jnp.float64)
    dG = jax.random.normal(k5, (4, 3), jnp.float64)
    dG_left = jax.random.normal(k6, (6, 5), jnp.float64)

    def vjp(fn, at, cotangent):
        return jax.vjp(fn, at)[1](cotangent)[0]

    g, g_prime = matrix_calculus.G["tanh"]
    rows = [
        _agreement("G = XW  ->  df/dX = df/dG W^T", MC, matrix_calculus.rule_xw(dG, W), vjp(lambda t: t @ W, X, dG)),
        _agreement("G = WX  ->  df/dX = W^T df/dG", MC, matrix_calculus.rule_wx(dG_left, Wl), vjp(lambda t: Wl @ t, X, dG_left)),
        _agreement("G = g(X)  ->  df/dX = df/dG * g'(X)", MC, matrix_calculus.rule_elementwise(C, X, g_prime), vjp(g, X, C)),
        _agreement("G = X + C  ->  df/dX = df/dG", MC, matrix_calculus.rule_plus_constant(C), vjp(lambda t: t + C, X, C)),
        _agreement("f = ||G||_F^2  ->  df/dG = 2G", MC, matrix_calculus.rule_frobenius(X), jax.grad(lambda t: jnp.sum(t**2))(X)),
    ]
    acts = ("sigmoid", "relu", "identity")
    net, params, x, y = _problem([4, 6, 5, 2], list(acts[:-1]), "identity", "mse", key, targets="real", bias=False)
    Ws = matrix_calculus.to_mc(params)
    engine = [g["W"] for g in _compiled(net.value_and_grad)(params, x, y)[1]]
    rows.append(_agreement(
        "df/dA[L] = (2/m)(A[L] - Y); df/dZ[l] = df/dA[l] * g'(Z[l]); df/dW[l] = A[l-1]^T df/dZ[l]; df/dA[l-1] = df/dZ[l] W[l]^T",
        MC, matrix_calculus.from_mc(_compiled(matrix_calculus.backward, 3)(Ws, x, y, acts)),
        matrix_calculus.from_mc(_compiled(jax.grad(matrix_calculus.cost), 3)(Ws, x, y, acts)), engine,
        "Examples as rows, Z = A W, no bias."))
    return rows


# ----- Dong ---------------------------------------------------------------------------------------
def dong_rows(key) -> list[AuditRow]:
    hidden = ("relu", "sigmoid")
    net, params, x, y = _problem([5, 6, 4, 3], list(hidden), "sigmoid", "bce", key)
    F, X, Y = dong.fold(params), x.T, y.T
    m = x.shape[0]

    def total(cost_fn):
        return lambda folded: cost_fn(dong.forward(folded, X, hidden)[0], Y)

    rows = []
    # C as written: its own gradient is consistent, but descent on it raises the true cross-entropy.
    written = jax.jit(jax.grad(total(dong.cost_as_written)))(F)
    true = jax.jit(jax.grad(total(dong.cost_corrected)))(F)
    eta = 0.05 / m
    before = total(dong.cost_corrected)(F)
    after = total(dong.cost_corrected)([Wt - eta * g for Wt, g in zip(F, written)])
    rows.append(AuditRow(
        DONG, "C = sum_i [y_i ln a_i^L + (1 - y_i) ln(1 - a_i^L)]  (section 1.2, as printed)",
        bool(after < before), False, rel_err(written, true),
        f"Sign error: a gradient-descent step on it raised the true cross-entropy from {float(before):.4f} "
        f"to {float(after):.4f}; its gradient is -1 x the cross-entropy's."))

    aL, acts = dong.forward(F, X, hidden)
    zL = F[-1] @ acts[-1][0]  # z^L = W^L . [1; a^{L-1}]
    autodiff_dz_written = jax.grad(lambda z: dong.cost_as_written(dong.G["sigmoid"][0](z), Y))(zL)
    missing = dong.output_delta_section_1_3(aL, Y)
    err = rel_err(missing, autodiff_dz_written)
    rows.append(AuditRow(
        DONG, "delta_i^L = y_i/a_i^L - (1 - y_i)/(1 - a_i^L)  (section 1.3, as printed)",
        err <= TOL_FLOAT64, False, err,
        f"Missing factor g'(z^L): disagrees with autodiff of C at the output layer (best-fit ratio "
        f"{float(jnp.vdot(missing, autodiff_dz_written) / jnp.vdot(autodiff_dz_written, autodiff_dz_written)):.2f})."))
    rows.append(_agreement(
        "delta_i^L = [y_i/a_i^L - (1 - y_i)/(1 - a_i^L)] (.) g'(z_i^L)  (section 1.2)", DONG,
        dong.output_delta_section_1_2(aL, Y), autodiff_dz_written, None,
        "The chain-rule step is right for the cost as printed; the sign error is in C."))

    grads, _ = _compiled(dong.backward, 3)(F, X, Y, hidden)
    engine = _compiled(net.value_and_grad)(params, x, y)[1]
    rows.append(_agreement(
        "corrected C = -sum[...]; delta^L = -[y/a - (1-y)/(1-a)] (.) g'(z^L); delta^l = g'(z^l) (.) (W^{l+1})^T delta^{l+1}; dC/dW^l = delta^l (a^{l-1})^T",
        DONG, dong.unfold([g / m for g in grads]), dong.unfold([g / m for g in true]), engine,
        "Bias as a constant input 1; ReLU and sigmoid hidden; the cost summed over inputs, so gradients / m = the engine's."))

    eta, lam, n = 0.1, 5.0, 1000
    regularised = lambda folded: total(dong.cost_corrected)(folded) + lam / (2 * n) * sum(jnp.sum(Wt**2) for Wt in folded)  # noqa: E731
    by_autodiff = [Wt - eta * g for Wt, g in zip(F, jax.grad(regularised)(F))]
    rows.append(_agreement(
        "W^l <- W^l - (eta lambda / n) W^l - eta dC/dW^l  (section 2, L2)", DONG,
        dong.l2_update(F, grads, eta, lam, n), by_autodiff, None,
        "Against a gradient step on C + (lambda / 2n) sum w^2 (the folded bias column included, as written)."))
    return rows


# ----- per-example ----------------------------------------------------------------------------------
def per_example_rows(key) -> list[AuditRow]:
    rows = []
    for source, fn, loss, name in [
        (LEI, per_example.lei_example, "quadratic",
         "delta^L = grad_a C (.) sigma'(z^L); delta^l = ((W^{l+1})^T delta^{l+1}) (.) sigma'(z^l); dC/dW = delta a^T; dC/db = delta; (1/s) sum over the batch"),
        (DIARY, per_example.diary_example, "bce",
         "delta^L = a^L - y; delta^l = (W^{l+1})^T delta^{l+1} (.) sigma'(z^l); mean over the samples"),
    ]:
        net, params, x, y = _problem([5, 6, 4, 3], "sigmoid", "sigmoid", loss, key)
        rows.append(_agreement(
            name, source, _compiled(per_example.minibatch_gradient, 0)(fn, params, x, y),
            _compiled(jax.grad(net.loss))(params, x, y), _compiled(net.value_and_grad)(params, x, y)[1],
            "One example's column vectors at a time, by jax.vmap."))
    return rows


SECTIONS: dict[str, Callable] = {"ng": ng_rows, "matrix_calculus": matrix_calculus_rows, "dong": dong_rows,
                                 "per_example": per_example_rows}


def audit(seed: int = 0) -> list[AuditRow]:
    """Every transcription's checks, in float64 (jax_enable_x64 must be on)."""
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError("the derivation audit runs in float64: enable jax_enable_x64 first")
    key = jax.random.PRNGKey(seed)
    return [row for i, section in enumerate(SECTIONS.values()) for row in section(jax.random.fold_in(key, i))]
