"""Planted mistakes: textbook errors in a backward pass, applied to an MLP, that every check must catch.

Each mutation takes a correct `MLP` and returns one whose *hand-coded backward* carries exactly one
classic mistake; its forward pass and cost are untouched, so `jax.grad` of its cost still gives the
true gradient. A check that passes a mutant has no teeth. Some mistakes only type-check when shapes
line up (W for W^T needs square hidden layers; a wrong layer's cache needs equal widths), as they
do in a hand derivation where they go unnoticed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, NamedTuple
from unittest import mock

import jax
import jax.scipy.stats  # noqa: F401  (the erf-form GELU derivative)
import jax.numpy as jnp

from ..activations import ACTIVATIONS, Activation
from ..layers import (Layer, activation, batch_norm, conv2d, dense, dense_backward, dense_forward, dropout, layer_norm,
                      max_pool, residual, softmax)
from ..losses import LOSSES, Head
from ..models.network import MLP, mlp

Array = jax.Array


class _NoMeanHead(Head):
    """dZ[L] = A[L] - Y: the 1/m of the averaged cost dropped."""

    def backward(self, z: Array, y: Array) -> Array:
        return super().backward(z, y) * z.shape[0]


def drop_one_over_m(net: MLP) -> MLP:
    """Drop the 1/m: the gradient of the summed, not the averaged, cost."""
    return dataclasses.replace(net, head=_NoMeanHead(net.head.output, net.head.loss))


def _map_dense(net: MLP, backward: Callable) -> MLP:
    layers = tuple(
        Layer(layer.init, dense_forward, backward, layer.name) if layer.forward is dense_forward else layer
        for layer in net.layers
    )
    return dataclasses.replace(net, layers=layers)


def _untransposed_backward(params: dict, x: Array, dz: Array) -> tuple[dict, Array]:
    grads, _ = dense_backward(params, x, dz)
    return grads, dz @ params["W"].T


def w_instead_of_w_transpose(net: MLP) -> MLP:
    """dA[l-1] = W[l] dZ[l] instead of W[l]^T dZ[l] (square layers only)."""
    return _map_dense(net, _untransposed_backward)


def _summed_bias_backward(params: dict, x: Array, dz: Array) -> tuple[dict, Array]:
    grads, dx = dense_backward(params, x, dz)
    return {**grads, "b": grads["b"] * dz.shape[0]}, dx


def sum_instead_of_mean_db(net: MLP) -> MLP:
    """dB[l] = sum_i dZ[l]_i of the per-example gradients, not their mean (m times too large)."""
    return _map_dense(net, _summed_bias_backward)


def _map_activations(net: MLP, derivative: Callable[[Activation], Callable], label: str) -> MLP:
    """Replace g'(z, a) in every hidden activation by `derivative(act)`."""
    def wrong(act: Activation) -> Layer:
        return activation(dataclasses.replace(act, name=f"{act.name} ({label})", derivative=derivative(act)))

    swapped = iter(net.activations)
    layers = tuple(layer if layer.forward is dense_forward else wrong(next(swapped)) for layer in net.layers)
    return dataclasses.replace(net, layers=layers)


def g_instead_of_g_prime(net: MLP) -> MLP:
    """dZ[l] = dA[l] * g(Z[l]) instead of dA[l] * g'(Z[l]) in every hidden layer."""
    return _map_activations(net, lambda act: lambda z, a: a, "g for g'")


def g_prime_of_a(net: MLP) -> MLP:
    """dZ[l] = dA[l] * g'(A[l]): the derivative evaluated at the output instead of the input."""
    def at_the_output(act: Activation) -> Callable:
        derivative = act.derivative
        assert derivative is not None, f"{act.name} has no elementwise derivative"
        return lambda z, a: derivative(a, act.fn(a))

    return _map_activations(net, at_the_output, "g'(A)")


def missing_g_prime(net: MLP) -> MLP:
    """dZ[l] = dA[l]: the factor g'(Z[l]) forgotten."""
    return _map_activations(net, lambda act: lambda z, a: jnp.ones_like(z), "no g'")


def _sign_flipped_backward(params: dict, x: Array, dz: Array) -> tuple[dict, Array]:
    grads, dx = dense_backward(params, x, dz)
    return {**grads, "W": -grads["W"]}, dx


def sign_flip(net: MLP) -> MLP:
    """dW[l] = -dZ^T A_prev: the gradient of the cost's negative (descent becomes ascent)."""
    return _map_dense(net, _sign_flipped_backward)


class _StaleCacheMLP(MLP):
    """Each hidden layer's backward reads the cache of the layer of the same kind before it."""

    def _backward(self, full: list, caches: list, dy: Array):
        stale = [caches[i - 2] if i >= 2 else caches[i] for i in range(len(caches))]
        return super()._backward(full, stale, dy)


def previous_layers_cache(net: MLP) -> MLP:
    """Use the previous layer's cache (its A_prev, Z) in the backward (equal widths only)."""
    return _StaleCacheMLP(**{f.name: getattr(net, f.name) for f in dataclasses.fields(net)})


MUTATIONS: dict[str, Callable[[MLP], MLP]] = {
    "drop 1/m": drop_one_over_m,
    "sum instead of mean in db": sum_instead_of_mean_db,
    "W instead of W^T in dA_prev": w_instead_of_w_transpose,
    "g(Z) instead of g'(Z)": g_instead_of_g_prime,
    "g'(A) instead of g'(Z)": g_prime_of_a,
    "missing g'": missing_g_prime,
    "sign flip in dW": sign_flip,
    "previous layer's cache": previous_layers_cache,
}


def reference_network() -> MLP:
    """Equal widths (so every mistake type-checks), two different smooth hidden activations."""
    return mlp([5, 5, 5, 5], hidden=["tanh", "sigmoid"], output="softmax", loss="cross_entropy")


def catalogue_score(check: Callable[[MLP], bool], net: MLP | None = None) -> dict[str, bool]:
    """{mutation: caught}, where `check(network) -> passed`; a check with teeth catches them all."""
    net = reference_network() if net is None else net
    return {name: not check(mutate(net)) for name, mutate in MUTATIONS.items()}


# ----- the layer catalogue: one planted mistake in one built-in layer or head ---------------------------
class LayerMutant(NamedTuple):
    """A correct layer (or head) and the same with one mistake in its backward; `in_shape` to check at."""

    correct: Any
    mutant: Any
    in_shape: tuple


def _rewired(layer: Layer, label: str, patch: Callable) -> Layer:
    """`layer` whose backward returns patch(params, cache, dy, grads, dx), given its correct (grads, dx)."""
    def backward(params, cache, dy):
        grads, dx = layer.backward(params, cache, dy)
        return patch(params, cache, dy, grads, dx)

    return layer._replace(backward=backward, name=f"{layer.name} [{label}]")


def _dense_mutants() -> dict[str, LayerMutant]:
    d = dense(6)
    rules = {
        "dense: W instead of W^T in dx": lambda p, x, dz, g, dx: (g, dz @ p["W"].T),
        "dense: dW = A_prev^T dZ (transposed)": lambda p, x, dz, g, dx: ({**g, "W": x.T @ dz}, dx),
        "dense: db = mean_i dZ_i": lambda p, x, dz, g, dx: ({**g, "b": jnp.mean(dz, 0)}, dx),
        "dense: sign flip in dW": lambda p, x, dz, g, dx: ({**g, "W": -g["W"]}, dx),
    }
    return {name: LayerMutant(d, _rewired(d, name, rule), (6,)) for name, rule in rules.items()}


def _activation_mutants() -> dict[str, LayerMutant]:
    """g(Z) for g'(Z) in every hidden activation; g' forgotten in every one whose g' is not 1."""
    out = {}
    for name, act in ACTIVATIONS.items():
        if not act.hidden_ok:
            continue
        wrong = {"g(Z) instead of g'(Z)": lambda z, a: a}
        if name != "identity":  # identity's g' is 1: leaving it out is no mistake
            wrong["missing g'"] = lambda z, a: jnp.ones_like(z)
        if name == "gelu":  # the forward is the tanh form, the derivative taken from the exact erf form
            wrong["erf-form derivative"] = _gelu_erf_derivative
        correct = activation(act)
        for label, derivative in wrong.items():
            out[f"{name}: {label}"] = LayerMutant(correct, activation(dataclasses.replace(act, derivative=derivative)), (6,))
    return out


def _norm_backward(axis: int, drop: str) -> Callable:
    """Batch/layer norm's backward with one term of dx = (inv_std/N)(N dxhat - sum dxhat - xhat sum(dxhat xhat)),
    or gamma in dxhat = dy gamma, dropped."""
    def backward(params, cache, dy, grads, _dx):
        xhat, inv_std = cache
        dxhat = dy if drop == "gamma" else dy * params["gamma"]
        n = xhat.shape[axis]
        mean = 0 if drop == "mean term" else jnp.sum(dxhat, axis, keepdims=True)
        var = 0 if drop == "variance term" else xhat * jnp.sum(dxhat * xhat, axis, keepdims=True)
        return grads, inv_std / n * (n * dxhat - mean - var)

    return backward


def _structural_mutants() -> dict[str, LayerMutant]:
    sm, dr = softmax(), dropout(0.5)
    res = residual(dense(6), activation("tanh"), dense(6))
    out = {
        "softmax: diagonal only, dz = a * da": LayerMutant(sm, _rewired(sm, "diagonal", lambda p, a, da, g, dz: (g, a * da)), (5,)),
        "softmax: + instead of - sum(da a)": LayerMutant(
            sm, _rewired(sm, "+ sum", lambda p, a, da, g, dz: (g, a * (da + jnp.sum(da * a, -1, keepdims=True)))), (5,)),
        "dropout: mask forgotten, dx = dy": LayerMutant(dr, _rewired(dr, "no mask", lambda p, s, dy, g, dx: (g, dy)), (6,)),
        "dropout: 1/(1 - rate) forgotten": LayerMutant(dr, _rewired(dr, "no scale", lambda p, s, dy, g, dx: (g, dy * (s > 0))), (6,)),
        "residual: skip path missing, dx = df^T dy": LayerMutant(res, _rewired(res, "no skip", lambda p, c, dy, g, dx: (g, dx - dy)), (6,)),
        "residual: inner path missing, dx = dy": LayerMutant(res, _rewired(res, "skip only", lambda p, c, dy, g, dx: (g, dy)), (6,)),
    }
    for norm, axis in ((batch_norm(), 0), (layer_norm(), 1)):
        for drop in ("gamma", "mean term", "variance term"):
            out[f"{norm.name}: missing {drop}"] = LayerMutant(norm, _rewired(norm, f"no {drop}", _norm_backward(axis, drop)), (5,))
        out[f"{norm.name}: dgamma = sum dy (xhat forgotten)"] = LayerMutant(
            norm, _rewired(norm, "dgamma", lambda p, c, dy, g, dx: ({**g, "gamma": jnp.sum(dy, 0)}, dx)), (5,))
    return out


class _SignFlippedHead(Head):
    def backward(self, z: Array, y: Array) -> Array:
        return -super().backward(z, y)


class _NoOutputDerivativeHead(Head):
    """dZ[L] = dA[L]: g[L]'(Z[L]) (or softmax's Jacobian) forgotten in the general rule."""

    def backward(self, z: Array, y: Array) -> Array:
        return self.loss.grad_output(self.predict(z), y) if not self.fused else super().backward(z, y)


def _head_mutants() -> dict[str, LayerMutant]:
    from .battery import valid_heads

    out = {}
    for output, loss in valid_heads():
        head = Head(ACTIVATIONS[output], LOSSES[loss])
        out[f"head {output} + {loss}: 1/m dropped"] = LayerMutant(head, _NoMeanHead(head.output, head.loss), (3,))
        out[f"head {output} + {loss}: sign flip"] = LayerMutant(head, _SignFlippedHead(head.output, head.loss), (3,))
        if not head.fused and output != "identity":
            out[f"head {output} + {loss}: g'(Z[L]) forgotten"] = LayerMutant(head, _NoOutputDerivativeHead(head.output, head.loss), (3,))
    return out


def conv_mutations() -> dict[str, LayerMutant]:
    """The convolution derivation's classic mistakes: the kernel not rotated in dx, the stride ignored
    in the backward, db not summed over positions, and a max-pool gradient sent to every entry."""
    from ..layers.convolution import _unpad, col2im, padding_amounts

    xla, im2col = conv2d(3, 3, 2, 1, impl="xla"), conv2d(3, 3, 2, 1, impl="im2col")
    pads = padding_amounts(1, (7, 7), (3, 3), (2, 2))

    def unflipped(p, cache, dz, g, dx):  # dxpad = dZ (dilated) convolved with W itself, not W rotated 180 degrees
        full = jax.lax.conv_general_dilated(dz, p["W"], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
                                            dimension_numbers=jax.lax.conv_dimension_numbers(dz.shape, p["W"].shape,
                                                                                            ("NHWC", "HWOI", "NHWC")))
        return g, _unpad(full, pads, cache[0].shape[1:3])

    def stride_ignored(p, cache, dz, g, dx):  # col2im with stride 1: each patch's gradient lands next to the last
        x, P = cache
        dP = (dz.reshape(-1, dz.shape[-1]) @ p["W"].reshape(-1, p["W"].shape[-1]).T).reshape(P.shape)
        return g, _unpad(col2im(dP, (9, 9), (1, 1)), pads, x.shape[1:3])

    pool = max_pool(2)

    def every_entry(p, cache, dy, g, dx):  # dy to all four entries of each window, not to its arg-max
        x, _ = cache
        return g, col2im(jnp.broadcast_to(dy[:, :, :, None, None, :], (*dy.shape[:3], 2, 2, dy.shape[-1])), x.shape[1:3], (2, 2))

    return {
        "conv2d: kernel not rotated in dx": LayerMutant(xla, _rewired(xla, "kernel not rotated", unflipped), (7, 7, 2)),
        "conv2d: stride ignored in the backward": LayerMutant(im2col, _rewired(im2col, "stride ignored", stride_ignored), (7, 7, 2)),
        "conv2d: db not summed over positions": LayerMutant(im2col, _rewired(im2col, "db over the batch only",
                                                                             lambda p, c, dz, g, dx: ({**g, "b": dz.sum(0)}, dx)), (7, 7, 2)),
        "max_pool: gradient to every entry": LayerMutant(pool, _rewired(pool, "to every entry", every_entry), (6, 6, 2)),
    }


def layer_mutations() -> dict[str, LayerMutant]:
    """Every built-in layer and head with each of its classic mistakes (see the individual rules)."""
    return {**_dense_mutants(), **_activation_mutants(), **_structural_mutants(), **_head_mutants()}


# ----- the GPT's classic mistakes, planted for the length of a `with` block ---------------------
def _attention_without_scale_in_backward(params, cache, dout, block=None, dtype=None):
    """dQ = dS K and dK = dS^T Q: the forward's 1/sqrt(hs) forgotten in the backward (q, k scaled up to cancel it)."""
    from ..layers.attention import attention_backward
    x, q, k, v, *rest = cache
    s = jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
    return attention_backward(params, (x, q * s, k * s, v, *rest), dout, dtype=dtype)


def _attention_without_mask_in_backward(params, cache, dout, block=None, dtype=None):
    """The backward recomputes P = softmax(Q K^T / sqrt(hs)) without the causal mask."""
    from ..layers.attention import attention_backward
    x, q, k, v, (P, att_scale), *rest = cache
    unmasked = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype)), axis=-1)
    return attention_backward(params, (x, q, k, v, (unmasked, att_scale), *rest), dout, dtype=dtype)


def _normalisation_dx_without_mean(dxhat, xhat, inv_std, axis):
    """dx = (inv_std / N)(N dxhat - xhat sum(dxhat xhat)): the mean term dropped."""
    n = xhat.shape[axis]
    return inv_std / n * (n * dxhat - xhat * jnp.sum(dxhat * xhat, axis, keepdims=True))


def _gelu_erf_derivative(z, a):
    """Phi(z) + z phi(z): the exact GELU's derivative, for a forward that uses the tanh approximation."""
    return jax.scipy.stats.norm.cdf(z) + z * jax.scipy.stats.norm.pdf(z)


GPT_MISTAKES: dict[str, Callable[[], Any]] = {
    "attention: 1/sqrt(hs) missing in the backward":
        lambda: mock.patch("fnbackprop.models.gpt.attention_backward", _attention_without_scale_in_backward),
    "attention: causal mask forgotten in the backward":
        lambda: mock.patch("fnbackprop.models.gpt.attention_backward", _attention_without_mask_in_backward),
    "tied embedding: the head's use dropped": lambda: mock.patch("fnbackprop.models.gpt.tied_sum", lambda embedding_use, head_use: embedding_use),
    "layer norm: mean term missing in dx":
        lambda: mock.patch("fnbackprop.layers.normalisation._normalisation_dx", _normalisation_dx_without_mean),
    "gelu: the erf form's derivative":
        lambda: mock.patch.dict(ACTIVATIONS, {"gelu": dataclasses.replace(ACTIVATIONS["gelu"], derivative=_gelu_erf_derivative)}),
}


@contextlib.contextmanager
def planted_gpt_mistake(name: str):
    """Within the block, GPTs built there (`fnbackprop.models.gpt`) carry the named mistake in their backward:

        with planted_gpt_mistake("attention: 1/sqrt(hs) missing in the backward"):
            model = gpt(...)
            report = check_vjp(model.hand_loss, params, idx, targets)
    """
    if name not in GPT_MISTAKES:
        raise ValueError(f"unknown GPT mistake {name!r}; expected one of {sorted(GPT_MISTAKES)}")
    with GPT_MISTAKES[name]():
        yield


# ----- backpropagation through time: the classic mistakes of a recurrent backward ---------------------------------
def _with_back(layer: Any, back: Callable, label: str) -> Any:
    """The recurrent `layer` whose cell's step backward is `back` (the forward untouched)."""
    from ..layers.recurrent import sequence_backward

    cell = layer.cell._replace(back=back)

    def backward(params, cache, dy):
        grads, dx, _ = sequence_backward(cell, params, cache, dy)
        return grads, dx

    return layer._replace(backward=backward, name=f"{layer.name} ({label})")


def _with_sequence_backward(layer: Any, backward: Callable, label: str) -> Any:
    return layer._replace(backward=backward, name=f"{layer.name} ({label})")


def _time_reversed(layer: Any) -> Callable:
    """The reverse scan run forward in time: dh carried from step t - 1 to step t."""
    from ..layers.recurrent import sequence_backward

    def backward(params, cache, dy):
        flip = lambda a: a[:, ::-1]  # noqa: E731
        flipped = cache._replace(x=flip(cache.x), h_prev=flip(cache.h_prev),
                                 steps=jax.tree_util.tree_map(lambda a: a[::-1], cache.steps))
        grads, dx, _ = sequence_backward(layer.cell, params, flipped, flip(dy))
        return grads, flip(dx)

    return backward


def _last_step_only(layer: Any) -> Callable:
    """The weights' gradients of the last step alone (no sum over time); dx right."""
    from ..layers.recurrent import sequence_backward

    def backward(params, cache, dy):
        _, dx, _ = sequence_backward(layer.cell, params, cache, dy)
        last = cache._replace(x=cache.x[:, -1:], h_prev=cache.h_prev[:, -1:],
                              steps=jax.tree_util.tree_map(lambda a: a[-1:], cache.steps))
        grads, _, _ = sequence_backward(layer.cell, params, last, dy[:, -1:])
        return grads, dx

    return backward


def recurrent_mutations() -> dict[str, LayerMutant]:
    """The mistakes of a hand-derived BPTT, each planted in the backward of an RNN, LSTM or GRU on (m, 5, 3)."""
    from ..layers.recurrent import GRU_CELL, LSTM_CELL, _gru_back, _lstm_back, _lstm_gates_back, gru, lstm, lstm_dc, rnn

    r, l, g = rnn(4), lstm(4), gru(4)
    shape = (5, 3)

    def not_carried(back):
        def wrong(W_hh, cache, dh, dc):
            dgi, dgh, (dh_prev, dc_prev) = back(W_hh, cache, dh, dc)
            return dgi, dgh, (jnp.zeros_like(dh_prev), dc_prev)
        return wrong

    def lstm_no_cell_path(W_hh, cache, dh, dc):
        dgi, dgh, (dh_prev, dc_prev) = _lstm_back(W_hh, cache, dh, dc)
        return dgi, dgh, (dh_prev, jnp.zeros_like(dc_prev))

    def lstm_tanh_prime_for_tanh(W_hh, cache, dh, dc_next):
        """do = dh (.) (1 - tanh^2 c_t): the derivative of tanh where tanh(c_t) itself belongs."""
        tc = cache[6]
        da, dc_prev = _lstm_gates_back(cache, dh * (1 - tc * tc), lstm_dc(cache, dh, dc_next))
        return da, da, (da @ W_hh, dc_prev)

    def lstm_forget_from_input(W_hh, cache, dh, dc_next):
        """df's sigmoid' taken at the input gate: dc c_{t-1} i(1 - i) instead of dc c_{t-1} f(1 - f)."""
        h, c, i, f, gg, o, tc = cache
        dc = lstm_dc(cache, dh, dc_next)
        da, _ = _lstm_gates_back((h, c, i, i, gg, o, tc), dh * tc, dc)
        return da, da, (da @ W_hh, dc * f)

    def gru_reset_outside(W_hh, cache, dh, _):
        """dgh_n = da_n: the reset gate left out of the hidden side's gradient (as if n = tanh(gi_n + W_hn h + b_hn))."""
        dgi, dgh, (dh_prev, _) = _gru_back(W_hh, cache, dh, None)
        H = dh.shape[-1]
        wrong = dgh.at[..., 2 * H:].set(dgi[..., 2 * H:])
        return dgi, wrong, (dh * cache[2] + wrong @ W_hh, None)

    return {
        "rnn: dh_{t-1} not carried back": LayerMutant(r, _with_back(r, not_carried(r.cell.back), "not carried"), shape),
        "lstm: dh_{t-1} not carried back": LayerMutant(l, _with_back(l, not_carried(LSTM_CELL.back), "not carried"), shape),
        "gru: dh_{t-1} not carried back": LayerMutant(g, _with_back(g, not_carried(GRU_CELL.back), "not carried"), shape),
        "lstm: the cell state's path dropped": LayerMutant(l, _with_back(l, lstm_no_cell_path, "no dc"), shape),
        "lstm: tanh'(c_t) where tanh(c_t) belongs": LayerMutant(l, _with_back(l, lstm_tanh_prime_for_tanh, "tanh'"), shape),
        "lstm: the forget gate's derivative from the input gate": LayerMutant(l, _with_back(l, lstm_forget_from_input, "df"), shape),
        "gru: the reset gate outside W_hn h": LayerMutant(g, _with_back(g, gru_reset_outside, "reset outside"), shape),
        "rnn: time reversed in the backward": LayerMutant(r, _with_sequence_backward(r, _time_reversed(r), "reversed"), shape),
        "lstm: time reversed in the backward": LayerMutant(l, _with_sequence_backward(l, _time_reversed(l), "reversed"), shape),
        "rnn: the weights' gradients of the last step only": LayerMutant(
            r, _with_sequence_backward(r, _last_step_only(r), "last step"), shape),
        "gru: the weights' gradients of the last step only": LayerMutant(
            g, _with_sequence_backward(g, _last_step_only(g), "last step"), shape),
    }


# ----- tensor parallelism: the classic mistakes in a sharded GPT's collectives --------------------------------------
class ShardedMutant(NamedTuple):
    """A mistake planted in a tensor-parallel GPT's collectives (`fnbackprop.parallel.TensorParallel`)."""

    sequence_parallel: bool  # the layout the mistake lives in
    plant: Callable  # TensorParallel -> the same split with the mistake
    named: str  # the mistake's name in `fnbackprop.check.sharded` (what check_sharded must say)


def _own_block(a: Any) -> Any:
    """Each rank's own block of the sequence, with no sum over ranks: what an all-gather's adjoint would be if
    the upstream gradient were the same on every rank (it is not: each rank's is a partial sum)."""
    n = a.shape[1] // jax.lax.axis_size("model")
    return jax.lax.dynamic_slice_in_dim(a, jax.lax.axis_index("model") * n, n, axis=1)


def _identity(a: Any) -> Any:
    return a


def _all_reduce(a: Any) -> Any:
    return jax.lax.psum(a, "model")


def sharded_mutations() -> dict[str, ShardedMutant]:
    """The silent bugs of tensor and sequence parallelism, each planted by replacing one collective (or its
    adjoint) of the GPT's split (`TensorParallel.with_boundaries`); the correct twin is the split itself."""
    return {
        "f's backward without its all-reduce (jax-finufft #226)":
            ShardedMutant(False, lambda tp: tp.with_boundaries(enter_adjoint=_identity), "not all-reduced"),
        "row-parallel bias's gradient all-reduced (torchtitan #2106)":
            ShardedMutant(False, lambda tp: tp.with_boundaries(bias_sync=_all_reduce), "counted tp times"),
        "layer norms' gradients not synchronised under sequence parallelism (Megatron-LM #1446)":
            ShardedMutant(True, lambda tp: tp.with_boundaries(sync=_identity), "not synchronised"),
        "g's adjoint taken as f's (an all-reduce where the identity belongs)":
            ShardedMutant(False, lambda tp: tp.with_boundaries(leave_adjoint=_all_reduce), "adjoint swapped"),
        "all-gather's adjoint taken as a split, not a reduce-scatter":
            ShardedMutant(True, lambda tp: tp.with_boundaries(enter_adjoint=_own_block), "adjoint swapped"),
    }
