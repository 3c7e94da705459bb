"""The layer protocol and the built-in layers.

A layer is any object with three pure callables (no subclassing needed; `Layer` is a NamedTuple):

    init(key, in_shape)          -> params            in_shape excludes the batch axis
    forward(params, x)           -> (y, cache)        x: (m, *in_shape)
    backward(params, cache, dy)  -> (dparams, dx)     dy = dC/dy, dparams shaped like params

A layer with a true attribute `stochastic` (dropout) takes a PRNG key: `forward(params, x, key)`,
with `key=None` meaning inference mode. Networks hand each such layer its own key per step.

Examples are rows (x: (m, n_in)) and W is stored as (n_out, n_in), as in Ng's and Nielsen's texts,
so Ng's column equations appear transposed:

    Z = A_prev W^T + b           (Ng: Z[l] = W[l] A[l-1] + B[l])
    dW = dZ^T A_prev             (Ng: dW[l] = (1/m) dZ[l] A[l-1]^T; the 1/m is already in dZ)
    db = sum_i dZ_i              (Ng: dB[l] = (1/m) sum_i dZ[l]_i)
    dA_prev = dZ W               (Ng: dA[l-1] = W[l]^T dZ[l])
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .activations import Activation, get_activation, softmax_vjp

Array = jax.Array
Params = Any
Cache = Any


class Layer(NamedTuple):
    """A layer: pure `init`, `forward` and `backward`, plus a name for reports."""

    init: Callable[[Array, tuple[int, ...]], Params]
    forward: Callable[[Params, Array], tuple[Array, Cache]]
    backward: Callable[[Params, Cache, Array], tuple[Params, Array]]
    name: str = "layer"
    stochastic: bool = False


def is_stochastic(layer: Any) -> bool:
    """True for layers that draw random numbers in training (dropout), taking forward(params, x, key)."""
    return bool(getattr(layer, "stochastic", False))


def forward_with_key(layer: Any, params: Params, x: Array, key: Array | None) -> tuple[Array, Cache]:
    """forward(params, x), or forward(params, x, key) for a stochastic layer (key None: inference)."""
    return layer.forward(params, x, key) if is_stochastic(layer) else layer.forward(params, x)


def _normal(key: Array, shape: tuple[int, ...], std: float, dtype: Any) -> Array:
    return std * jax.random.normal(key, shape, dtype)


def init_dense_params(key: Array, n_in: int, n_out: int, scheme: str, dtype: Any = jnp.float32) -> dict:
    """W: (n_out, n_in) and b: (n_out,) drawn by a named scheme.

    - ``lecun``: W ~ N(0, 1/n_in), b = 0.
    - ``he``: W ~ N(0, 2/n_in), b = 0 (for ReLU-type hidden layers).
    - ``nielsen``: W ~ N(0, 1/n_in), b ~ N(0, 1)  (Nielsen's network2 default_weight_initializer).
    - ``nielsen_large``: W ~ N(0, 1), b ~ N(0, 1)  (Nielsen's network.py, large_weight_initializer).
    """
    kw, kb = jax.random.split(key)
    zeros = jnp.zeros((n_out,), dtype)
    schemes = {
        "lecun": lambda: (_normal(kw, (n_out, n_in), n_in**-0.5, dtype), zeros),
        "he": lambda: (_normal(kw, (n_out, n_in), (2 / n_in) ** 0.5, dtype), zeros),
        "nielsen": lambda: (_normal(kw, (n_out, n_in), n_in**-0.5, dtype), _normal(kb, (n_out,), 1.0, dtype)),
        "nielsen_large": lambda: (_normal(kw, (n_out, n_in), 1.0, dtype), _normal(kb, (n_out,), 1.0, dtype)),
    }
    if scheme not in schemes:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {sorted(schemes)}")
    W, b = schemes[scheme]()
    return {"W": W, "b": b}


INIT_SCHEMES = ("lecun", "he", "nielsen", "nielsen_large")


def dense_forward(params: dict, x: Array) -> tuple[Array, Array]:
    """Z = A_prev W^T + b  (Ng: Z[l] = W[l] A[l-1] + B[l]); the cache is A_prev."""
    return x @ params["W"].T + params["b"], x


def dense_backward(params: dict, x: Array, dz: Array) -> tuple[dict, Array]:
    """dW = dZ^T A_prev, db = sum_i dZ_i, dA_prev = dZ W  (Ng: dW = dZ A^T, dB = sum dZ, dA = W^T dZ).

    dZ already holds the 1/m of the averaged cost (see `fnbackprop.losses`).
    """
    return {"W": dz.T @ x, "b": jnp.sum(dz, axis=0)}, dz @ params["W"]


def dense(n_out: int, init: str = "lecun") -> Layer:
    """A fully connected layer without activation: Z = A_prev W^T + b."""
    if not isinstance(n_out, int) or n_out <= 0:
        raise ValueError(f"dense layer width must be a positive integer, got {n_out!r}")
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {init!r}; expected one of {list(INIT_SCHEMES)}")

    def init_fn(key: Array, in_shape: tuple[int, ...]) -> dict:
        (n_in,) = in_shape
        return init_dense_params(key, n_in, n_out, init)

    return Layer(init_fn, dense_forward, dense_backward, name=f"dense({n_out})")


def no_params(key: Array, in_shape: tuple[int, ...]) -> dict:
    """`init` of a layer without parameters."""
    return {}


def activation(g: str | Activation) -> Layer:
    """A = g(Z), backward dZ = dA * g'(Z); the cache is (Z, A)."""
    act = get_activation(g, hidden=True)

    def forward(params: dict, z: Array) -> tuple[Array, tuple[Array, Array]]:
        a = act.fn(z)
        return a, (z, a)

    def backward(params: dict, cache: tuple[Array, Array], da: Array) -> tuple[dict, Array]:
        z, a = cache
        return {}, act.backward(z, a, da)

    return Layer(no_params, forward, backward, name=act.name)


def softmax() -> Layer:
    """A = softmax(Z) row by row, as a layer on its own (the full Jacobian-vector product).

    da_k/dz_j = a_k (1[j = k] - a_j), so dz_j = sum_k da_k a_k (1[j = k] - a_j) = a_j (da_j - sum_k da_k a_k).
    """
    act = get_activation("softmax", hidden=False)

    def forward(params: dict, z: Array) -> tuple[Array, Array]:
        a = act.fn(z)
        return a, a

    def backward(params: dict, a: Array, da: Array) -> tuple[dict, Array]:
        return {}, softmax_vjp(a, da)

    return Layer(no_params, forward, backward, name="softmax")


def dropout(rate: float) -> Layer:
    """Inverted dropout: y = x * mask / (1 - rate), mask_i ~ Bernoulli(1 - rate); identity at inference.

    The mask is kept in the cache, so the backward is dx = dy * mask / (1 - rate): the same units
    dropped, the same scaling. A stochastic layer: forward(params, x, key), key=None for inference.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"dropout rate must lie in [0, 1), got {rate}")

    def forward(params: dict, x: Array, key: Array | None) -> tuple[Array, Array]:
        if key is None or rate == 0:
            scale = jnp.ones_like(x)
        else:
            scale = jax.random.bernoulli(key, 1 - rate, x.shape).astype(x.dtype) / (1 - rate)
        return x * scale, scale

    def backward(params: dict, scale: Array, dy: Array) -> tuple[dict, Array]:
        return {}, dy * scale

    return Layer(no_params, forward, backward, name=f"dropout({rate})", stochastic=True)


def _affine_params(key: Array, in_shape: tuple[int, ...]) -> dict:
    (n,) = in_shape
    return {"gamma": jnp.ones((n,), jnp.float32), "beta": jnp.zeros((n,), jnp.float32)}


def _normalise(x: Array, axis: int, eps: float) -> tuple[Array, Array]:
    mu = jnp.mean(x, axis=axis, keepdims=True)
    inv_std = 1 / jnp.sqrt(jnp.var(x, axis=axis, keepdims=True) + eps)
    return (x - mu) * inv_std, inv_std


def _normalisation_dx(dxhat: Array, xhat: Array, inv_std: Array, axis: int) -> Array:
    """dx = (inv_std / N) (N dxhat - sum dxhat - xhat sum(dxhat xhat)), sums over the normalised axis."""
    n = xhat.shape[axis]
    return inv_std / n * (n * dxhat - jnp.sum(dxhat, axis, keepdims=True) - xhat * jnp.sum(dxhat * xhat, axis, keepdims=True))


def _normalisation(axis: int, eps: float, name: str) -> Layer:
    """y = gamma xhat + beta, xhat normalised over `axis`; dgamma, dbeta sum over the batch (axis 0)."""

    def forward(params: dict, x: Array) -> tuple[Array, tuple]:
        xhat, inv_std = _normalise(x, axis, eps)
        return params["gamma"] * xhat + params["beta"], (xhat, inv_std)

    def backward(params: dict, cache: tuple, dy: Array) -> tuple[dict, Array]:
        xhat, inv_std = cache
        grads = {"gamma": jnp.sum(dy * xhat, axis=0), "beta": jnp.sum(dy, axis=0)}
        return grads, _normalisation_dx(dy * params["gamma"], xhat, inv_std, axis=axis)

    return Layer(_affine_params, forward, backward, name=name)


def batch_norm(eps: float = 1e-5) -> Layer:
    """Batch normalisation in training mode (Ioffe and Szegedy 2015), over the batch axis:

        mu = (1/m) sum_i x_i,  var = (1/m) sum_i (x_i - mu)^2,  xhat = (x - mu) / sqrt(var + eps),
        y = gamma xhat + beta.
    Backward (the classic derivation, mu and var depending on every x_i):
        dgamma = sum_i dy_i xhat_i,  dbeta = sum_i dy_i,  dxhat = dy gamma,
        dx = (1 / (m sqrt(var + eps))) (m dxhat - sum_i dxhat_i - xhat sum_i dxhat_i xhat_i).
    Batch statistics are used at evaluation time too (no running averages are kept).
    """
    return _normalisation(0, eps, "batch_norm")


def layer_norm(eps: float = 1e-5) -> Layer:
    """Layer normalisation (Ba et al. 2016): batch normalisation's equations over the features of
    each example (axis 1) instead of over the batch; dgamma and dbeta still sum over the batch."""
    return _normalisation(1, eps, "layer_norm")


def residual(*inner: Layer) -> Layer:
    """y = x + f(x), f the inner layers in sequence (output shape = input shape).

    Backward: the identity path and the inner path both reach x, so their gradients add:
    dx = dy + df^T dy, the inner layers' backward run in reverse. Stochastic if any inner layer is;
    each inner layer then gets its own key, folded in from the residual's.
    """

    def keys(key: Array | None) -> list:
        return [None if key is None else jax.random.fold_in(key, i) for i in range(len(inner))]

    def init(key: Array, in_shape: tuple[int, ...]) -> list:
        params, shape = [], in_shape
        for layer, k in zip(inner, jax.random.split(key, len(inner))):
            params.append(layer.init(k, shape))
            x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
            shape = jax.eval_shape(lambda p, x: forward_with_key(layer, p, x, None), params[-1], x)[0].shape[1:]
        return params

    def forward(params: list, x: Array, key: Array | None = None) -> tuple[Array, list]:
        h, caches = x, []
        for layer, p, k in zip(inner, params, keys(key)):
            h, cache = forward_with_key(layer, p, h, k)
            caches.append(cache)
        return x + h, caches

    def backward(params: list, caches: list, dy: Array) -> tuple[list, Array]:
        grads, dh = [None] * len(inner), dy
        for i in reversed(range(len(inner))):
            grads[i], dh = inner[i].backward(params[i], caches[i], dh)
        return grads, dy + dh

    return Layer(init, forward, backward, name="residual(" + ", ".join(l.name for l in inner) + ")",
                 stochastic=any(is_stochastic(layer) for layer in inner))
