"""Losses averaged over the m examples of a batch, and the output head that pairs one with g[L].

Examples are rows: `a, y: (m, n_L)`. Every cost here is averaged over the batch, so every gradient
carries the factor 1/m. fnbackprop makes one choice about where that 1/m lives: **in the output
head's dZ[L]**. Every later equation (dW = dZ^T A_prev, db = sum_i dZ) then sums over the batch and
already yields the gradient of the averaged cost. Ng writes the same 1/m in dW and dB instead; the
derivation transcriptions show that both placements agree.

For the canonical pairs (sigmoid + bce, softmax + cross_entropy) the head uses the fused rule

    dZ[L] = (A[L] - Y) / m

and evaluates the cost from the logits Z[L] (no log of 0, no division by a(1 - a)). Every other pair
uses the general rule dZ[L] = dA[L] * g'(Z[L]) with dA[L] = dC/dA[L] from the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from .activations import Activation

Array = jax.Array


def _batch_size(a: Array) -> int:
    return a.shape[0]


@dataclass(frozen=True)
class Loss:
    """A cost C(A, Y) averaged over the batch, its gradient dC/dA, and (if any) its canonical output."""

    name: str
    equation: str
    cost: Callable[[Array, Array], Array]
    grad_output: Callable[[Array, Array], Array]
    canonical_output: str | None = None
    cost_from_logits: Callable[[Array, Array], Array] | None = None


def _mse(a: Array, y: Array) -> Array:
    return jnp.sum((a - y) ** 2) / _batch_size(a)


def _quadratic(a: Array, y: Array) -> Array:
    return jnp.sum((a - y) ** 2) / (2 * _batch_size(a))


def _bce(a: Array, y: Array) -> Array:
    return -jnp.sum(y * jnp.log(a) + (1 - y) * jnp.log(1 - a)) / _batch_size(a)


def _bce_from_logits(z: Array, y: Array) -> Array:
    """-[y ln s(z) + (1-y) ln(1-s(z))] = softplus(z) - y z, finite for every z."""
    return jnp.sum(jax.nn.softplus(z) - y * z) / _batch_size(z)


def _cross_entropy(a: Array, y: Array) -> Array:
    return -jnp.sum(y * jnp.log(a)) / _batch_size(a)


def _cross_entropy_from_logits(z: Array, y: Array) -> Array:
    return -jnp.sum(y * jax.nn.log_softmax(z, axis=-1)) / _batch_size(z)


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("mse", "C = (1/m) sum_i ||a_i - y_i||^2", _mse, lambda a, y: 2 * (a - y) / _batch_size(a)),
        Loss("quadratic", "C = (1/2m) sum_i ||a_i - y_i||^2", _quadratic, lambda a, y: (a - y) / _batch_size(a)),
        Loss(
            "bce",
            "C = -(1/m) sum_i sum_k [y ln a + (1-y) ln(1-a)]",
            _bce,
            lambda a, y: (a - y) / (a * (1 - a) * _batch_size(a)),
            canonical_output="sigmoid",
            cost_from_logits=_bce_from_logits,
        ),
        Loss(
            "cross_entropy",
            "C = -(1/m) sum_i sum_k y ln a",
            _cross_entropy,
            lambda a, y: -y / (a * _batch_size(a)),
            canonical_output="softmax",
            cost_from_logits=_cross_entropy_from_logits,
        ),
    )
}


def get_loss(name: str | Loss) -> Loss:
    """Look a loss up by name, with a clear error for unknown names."""
    if isinstance(name, Loss):
        return name
    if isinstance(name, str) and name in LOSSES:
        return LOSSES[name]
    raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")


@dataclass(frozen=True)
class Head:
    """The output activation g[L] and the loss, acting on the logits Z[L]."""

    output: Activation
    loss: Loss

    def __post_init__(self) -> None:
        wanted = self.loss.canonical_output
        if wanted is not None and self.output.name != wanted:
            raise ValueError(
                f"loss {self.loss.name!r} needs output activation {wanted!r}, got {self.output.name!r}"
            )

    @property
    def fused(self) -> bool:
        """True for the canonical pairs, whose backward is dZ[L] = (A[L] - Y) / m."""
        return self.loss.canonical_output is not None

    def predict(self, z: Array) -> Array:
        """A[L] = g[L](Z[L])."""
        return self.output.fn(z)

    def cost(self, z: Array, y: Array) -> Array:
        """C, from the logits for the canonical pairs, from A[L] otherwise."""
        from_logits = self.loss.cost_from_logits
        if self.fused and from_logits is not None:
            return from_logits(z, y)
        return self.loss.cost(self.predict(z), y)

    def backward(self, z: Array, y: Array) -> Array:
        """dZ[L] = (A[L] - Y)/m (canonical pairs), else dZ[L] = dA[L] * g'(Z[L]) with dA[L] = dC/dA[L]."""
        a = self.predict(z)
        if self.fused:
            return (a - y) / _batch_size(z)
        return self.output.backward(z, a, self.loss.grad_output(a, y))

    def grad_output(self, z: Array, y: Array) -> Array:
        """dA[L] = dC/dA[L]; reported as an intermediate, never used by the fused backward."""
        return self.loss.grad_output(self.predict(z), y)


def _add_products_by_slices(dW: Array, dz: Array, hc: Array, width: int) -> Array:
    """dW + dz^T hc, computed and added `width` rows of dW at a time: dW[v:v+k] += dz[:, v:v+k]^T hc. The last
    slice is dW's last `width` rows; the rows it shares with the slice before add 0 (`fresh` masks them)."""
    V = dW.shape[0]

    def add_slice(k, dW):
        start = jnp.minimum(k * width, V - width)
        fresh = start + jnp.arange(width) >= k * width  # rows no earlier slice has added
        dz_k = jnp.where(fresh, jax.lax.dynamic_slice_in_dim(dz, start, width, axis=1), 0.0)
        return jax.lax.dynamic_update_slice_in_dim(dW, jax.lax.dynamic_slice_in_dim(dW, start, width) + dz_k.T @ hc, start, 0)

    return jax.lax.fori_loop(0, -(-V // width), add_slice, dW)


def chunked_softmax_cross_entropy(h: Array, W: Array, targets: Array, chunk: int,
                                  vocab_chunk: int = 4096) -> tuple[Array, Array, Array]:
    """(C, dC/dh, dC/dW) of C = -(1/N) sum_i log softmax(h_i W^T)[t_i], for h: (N, d), W: (V, d), integer t: (N,),
    chunk rows at a time, so the (N x V) logits never exist at once (Liger's and Cut Cross-Entropy's idea).

    Per chunk c: Z_c = h_c W^T, its loss sum_i (logsumexp(Z_i) - Z_i[t_i]), the fused dZ_c = (softmax(Z_c) -
    onehot(t_c)) / N, then dh_c = dZ_c W and dW += dZ_c^T h_c: the dense layer's equations, contracted
    chunk by chunk. Rows are padded to a whole number of chunks with weight 0.

    The accumulation dW += dZ_c^T h_c is done vocab_chunk rows of W at a time,
    dW[v:v+k] += dZ_c[:, v:v+k]^T h_c, so no (V x d) product is ever held beside dW itself (measured at
    N 4,096, V 50,257, d 768: 67 MiB of temporaries instead of 197). The last slice is the last vocab_chunk
    rows of W; the rows it shares with the slice before it add 0.
    """
    N, d = h.shape
    V = W.shape[0]
    n_chunks = -(-N // chunk)
    pad = n_chunks * chunk - N
    weights = jnp.pad(jnp.ones((N,), h.dtype), (0, pad)).reshape(n_chunks, chunk)
    hs = jnp.pad(h, ((0, pad), (0, 0))).reshape(n_chunks, chunk, d)
    ts = jnp.pad(targets, (0, pad)).reshape(n_chunks, chunk)
    width = min(vocab_chunk, V)

    def step(dW, inputs):
        hc, tc, wc = inputs
        z = hc @ W.T
        lse = jax.nn.logsumexp(z, axis=-1)
        picked = jnp.take_along_axis(z, tc[:, None], axis=-1)[:, 0]
        dz = (jnp.exp(z - lse[:, None]) - jax.nn.one_hot(tc, V, dtype=z.dtype)) * (wc / N)[:, None]
        return _add_products_by_slices(dW, dz, hc, width), (jnp.sum(wc * (lse - picked)), dz @ W)

    dW, (losses, dh) = jax.lax.scan(step, jnp.zeros_like(W), (hs, ts, weights))
    return jnp.sum(losses) / N, dh.reshape(-1, d)[:N], dW
