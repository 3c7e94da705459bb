"""Convolution and pooling, NHWC inputs (m, H, W, C) and HWIO kernels (kh, kw, C_in, C_out), as in JAX/Flax.

The forward of `conv2d` is the cross-correlation every framework calls convolution,

    Z[n, p, q, o] = b[o] + sum_{i, j, c} Xpad[n, s p + i, s q + j, c] W[i, j, c, o],

Xpad the input padded by (top, bottom, left, right), s the stride. Its backward, from the derivation
(each W[i, j, c, o] and each Xpad entry appears in the sum above once per output position it touches):

    db[o]          = sum_{n, p, q} dZ[n, p, q, o]
    dW[i, j, c, o] = sum_{n, p, q} Xpad[n, s p + i, s q + j, c] dZ[n, p, q, o]
                     (the correlation of the input with dZ, dZ dilated by the stride)
    dXpad[n, y, x, c] = sum_{i, j, o: y = s p + i, x = s q + j} dZ[n, p, q, o] W[i, j, c, o]
                     (the full convolution of dZ, dilated by the stride, with W rotated 180 degrees
                      and its channel axes swapped; dX is dXpad without the padding)

Two implementations of the same equations, both hand-written, selectable with `impl=`:

- ``"xla"``: each equation as one `lax.conv_general_dilated` (the forward, the correlation for dW,
  the full convolution with the rotated kernel for dX);
- ``"im2col"``: the patches as a matrix P (one row per output position, kh kw C_in columns), so that
  Z = P W + b, dW = P^T dZ, db = 1^T dZ, dP = dZ W^T and dX = col2im(dP): a dense layer's equations.
  XLA's CPU convolution is several times slower than the same arithmetic as matrix products, so
  ``"auto"`` (the default) picks im2col on CPU and XLA elsewhere.
"""

from __future__ import annotations

import functools

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .protocol import Array, Layer, no_params

Padding = Any  # "VALID", "SAME", an int, or ((top, bottom), (left, right))
IMPLEMENTATIONS = ("auto", "xla", "im2col")


def _pairs(value: int | tuple, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{what} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def padding_amounts(padding: Padding, size: tuple[int, ...], window: tuple[int, int], stride: tuple[int, int]) -> tuple:
    """((top, bottom), (left, right)) for "VALID" (none), "SAME" (out = ceil(size / stride), the
    extra row or column at the bottom or right, as XLA does), an int p (p on every side) or the pairs."""
    if isinstance(padding, str) and padding.upper() == "VALID":
        return ((0, 0), (0, 0))
    if isinstance(padding, str) and padding.upper() == "SAME":
        def same(n: int, k: int, s: int) -> tuple[int, int]:
            total = max((-(-n // s) - 1) * s + k - n, 0)
            return total // 2, total - total // 2
        return tuple(same(n, k, s) for n, k, s in zip(size, window, stride))
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) and padding >= 0:
        return ((int(padding),) * 2,) * 2
    try:
        pads = tuple((int(a), int(b)) for a, b in padding)
        if len(pads) == 2 and all(a >= 0 and b >= 0 for a, b in pads):
            return pads
    except (TypeError, ValueError):
        pass
    raise ValueError(f'padding must be "VALID", "SAME", a non-negative int or ((top, bottom), (left, right)); got {padding!r}')


def _out_size(size: int, pads: tuple[int, int], k: int, s: int) -> int:
    return (size + pads[0] + pads[1] - k) // s + 1


def _pad(x: Array, pads: tuple) -> Array:
    return jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _unpad(x: Array, pads: tuple, size: tuple[int, int]) -> Array:
    return x[:, pads[0][0]:pads[0][0] + size[0], pads[1][0]:pads[1][0] + size[1], :]


# ----- im2col and col2im -------------------------------------------------------------------------------
def shifted(x: Array, at: dict[int, tuple[int, int, int]]) -> Array:
    """Entry `offset` of `count` windows along each axis in `at` = {axis: (offset, stride, count)}: x at
    offset, offset + s, ..., offset + s (count - 1) there. One strided slice, whichever the axes."""
    start, limit, strides = [0] * x.ndim, list(x.shape), [1] * x.ndim
    for axis, (offset, stride, count) in at.items():
        start[axis], limit[axis], strides[axis] = offset, offset + stride * (count - 1) + 1, stride
    return jax.lax.slice(x, start, limit, strides)


def placed(a: Array, at: dict[int, tuple[int, int, int]]) -> Array:
    """The adjoint of `shifted`, at = {axis: (offset, stride, size)}: a's entries put at offset + s k
    along each axis, now `size` long, zeros elsewhere. A pad (interior padding s - 1), which XLA fuses
    with a sum of such placements."""
    config = [(0, 0, 0)] * a.ndim
    for axis, (offset, stride, size) in at.items():
        config[axis] = (offset, size - offset - stride * (a.shape[axis] - 1) - 1, stride - 1)
    return jax.lax.pad(a, jnp.zeros((), a.dtype), config)


def window_slices(xpad: Array, window: tuple[int, int], stride: tuple[int, int], out: tuple[int, ...]) -> list[Array]:
    """The kh kw entries of every window, row-major in (i, j): entry (i, j) is xpad[:, s p + i, s q + j, :], (m, P, Q, C)."""
    (kh, kw), (sh, sw), (P, Q) = window, stride, out
    return [shifted(xpad, {1: (i, sh, P), 2: (j, sw, Q)}) for i in range(kh) for j in range(kw)]


def tile_view(x: Array, window: tuple[int, int], out: tuple[int, ...]) -> Array:
    """Windows that tile the input (stride = window): x[:, :P kh, :Q kw] seen as (m, P, kh, Q, kw, C), a reshape."""
    (kh, kw), (P, Q) = window, out
    return x[:, :P * kh, :Q * kw, :].reshape(x.shape[0], P, kh, Q, kw, x.shape[-1])


def untile(tiles: Array, padded: tuple[int, ...]) -> Array:
    """The adjoint of `tile_view`: (m, P, kh, Q, kw, C) back to (m, P kh, Q kw, C), then zeros for the rows
    and columns of the (padded) input that no window saw."""
    m, P, kh, Q, kw, C = tiles.shape
    return placed(tiles.reshape(m, P * kh, Q * kw, C), {1: (0, 1, padded[0]), 2: (0, 1, padded[1])})


def patches(xpad: Array, window: tuple[int, int], stride: tuple[int, int], out: tuple[int, ...],
            windows_first: bool = False) -> Array:
    """patches[n, p, q, i, j, c] = xpad[n, s p + i, s q + j, c], shape (m, P, Q, kh, kw, C); with
    `windows_first`, the same entries as (kh, kw, m, P, Q, C), which for C = 1 is the matrix P^T (kh kw, m P Q).

    Built in two passes, rows then columns: the kh row-shifted strided slices of xpad are stacked
    (m, P, Wpad, kh, C), then the kw column-shifted slices of that. Each pass copies runs of C (or
    kh C) contiguous values; one stack of the kh kw slices at once was 1.4 and 6 times slower on XLA:CPU
    for the two conv layers of Nielsen's network (the 25 entries of a 5x5 window interleaved value by
    value when C = 1)."""
    (kh, kw), (sh, sw), (P, Q) = window, stride, out
    if tuple(window) == tuple(stride) and not windows_first:  # windows that tile the input: a reshape, no copies by slicing
        return tile_view(xpad, window, out).transpose(0, 1, 3, 2, 4, 5)
    window_axis, width_axis = (0, 3) if windows_first else (3, 2)  # in rows: (kh, m, P, Wpad, C) or (m, P, Wpad, kh, C)
    rows = jnp.stack([shifted(xpad, {1: (i, sh, P)}) for i in range(kh)], axis=window_axis)
    return jnp.stack([shifted(rows, {width_axis: (j, sw, Q)}) for j in range(kw)], axis=window_axis + 1)


def col2im(dpatches: Array, padded: tuple[int, ...], stride: tuple[int, int]) -> Array:
    """The adjoint of `patches`: dxpad[n, s p + i, s q + j, c] += dpatches[n, p, q, i, j, c], overlapping
    windows adding up (the fan-out rule: an entry used by several patches gets the sum of their gradients).

    The adjoint of each of `patches`' two passes in reverse order: for each i the kw column slices are
    placed in their columns and summed, (m, P, Wpad, C); then the kh row slices in their rows. Each
    slice is placed by a pad (`placed`, the adjoint of `shifted`), not scattered: XLA fuses the pads and
    the sum, where a strided scatter-add is several times slower. Two passes of kw and kh terms took two
    thirds of the time of one pass of kh kw terms (conv 2 of Nielsen's network)."""
    m, P, Q, kh, kw, C = dpatches.shape
    (sh, sw) = stride
    if (kh, kw) == (sh, sw):  # tiling windows: the reshape back, and zeros for the rows and columns no window saw
        return untile(dpatches.transpose(0, 1, 3, 2, 4, 5), padded)
    rows = jnp.stack([functools.reduce(jnp.add, [placed(dpatches[:, :, :, i, j], {2: (j, sw, padded[1])}) for j in range(kw)])
                      for i in range(kh)])  # (kh, m, P, Wpad, C)
    # the barrier keeps the first pass a pass: XLA would fuse it into the second, one pass of kh kw terms again
    rows = jax.lax.optimization_barrier(rows)
    return functools.reduce(jnp.add, [placed(rows[i], {1: (i, sh, padded[0])}) for i in range(kh)])


# ----- conv2d ------------------------------------------------------------------------------------------
def _dimension_numbers(lhs: str, rhs: str, out: str) -> jax.lax.ConvDimensionNumbers:
    return jax.lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), (lhs, rhs, out))


def patches_transposed_times(x: Array, P: Array, rows: Array, pads: tuple, window: tuple[int, int], strides: tuple[int, int]) -> Array:
    """P^T dZ, (kh kw C_in, C_out), with `rows` = dZ as (m P Q, C_out): the im2col form of dW.

    Layout, for speed only: both factors have the positions m P Q as their leading axis, and XLA:CPU's
    product for that form (the contraction over the first axis of both) ran at half the speed of its
    plain one. So one factor is made position-minor first: with one input channel the patches are
    built again window-first, which is P^T itself and costs one cheap pass over x; otherwise dZ (C_out
    columns, far fewer than P's kh kw C_in) is transposed, and dW = (dZ^T P)^T. The optimisation
    barriers keep XLA from folding those transposes back into the product. Nielsen's network at batch
    64, one core: its two dW products took 4.2 ms of a 16 ms step, 3.1 ms in this form, transposes included."""
    if x.shape[-1] == 1:
        window_first = patches(_pad(x, pads), window, strides, P.shape[1:3], windows_first=True)  # (kh, kw, m, P, Q, 1)
        return window_first.reshape(window[0] * window[1], -1) @ rows
    dz_t = jax.lax.optimization_barrier(rows.T)  # (C_out, m P Q), materialised
    return jax.lax.optimization_barrier(dz_t @ P.reshape(rows.shape[0], -1)).T


def conv2d(features: int, kernel: int | tuple = 3, stride: int | tuple = 1, padding: Padding = "VALID",
           impl: str = "auto", init: str = "he") -> Layer:
    """A 2-D convolution layer: Z = X * W + b (the cross-correlation of the module doc), NHWC / HWIO.

    `kernel` and `stride` are ints or (height, width) pairs; `padding` "VALID", "SAME", an int, or
    ((top, bottom), (left, right)); `impl` "xla", "im2col" or "auto" (im2col on CPU); `init` "he"
    (W ~ N(0, 2 / fan_in)) or "lecun" (N(0, 1 / fan_in)), fan_in = kh kw C_in, b = 0.
    """
    if not isinstance(features, (int, np.integer)) or isinstance(features, bool) or features <= 0:
        raise ValueError(f"conv2d features must be a positive integer, got {features!r}")
    window, strides = _pairs(kernel, "kernel"), _pairs(stride, "stride")
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    if init not in ("he", "lecun"):
        raise ValueError(f'init must be "he" or "lecun", got {init!r}')
    padding_amounts(padding, (window[0], window[1]), window, strides)  # refuse a bad padding now, not at init

    def init_fn(key: Array, in_shape: tuple[int, ...]) -> dict:
        if len(in_shape) != 3:
            raise ValueError(f"conv2d expects inputs (m, H, W, C); got an input shape {in_shape} without the batch axis")
        H, W_, C = in_shape
        pads = padding_amounts(padding, (H, W_), window, strides)
        if min(_out_size(H, pads[0], window[0], strides[0]), _out_size(W_, pads[1], window[1], strides[1])) < 1:
            raise ValueError(f"a {window} kernel does not fit a {H}x{W_} input with padding {pads}")
        fan_in = window[0] * window[1] * C
        std = (2.0 / fan_in) ** 0.5 if init == "he" else fan_in ** -0.5
        return {"W": std * jax.random.normal(key, (*window, C, int(features)), jnp.float32),
                "b": jnp.zeros((int(features),), jnp.float32)}

    def chosen() -> str:
        return ("im2col" if jax.default_backend() == "cpu" else "xla") if impl == "auto" else impl

    def forward(params: dict, x: Array) -> tuple[Array, tuple]:
        W, b = params["W"], params["b"]
        pads = padding_amounts(padding, x.shape[1:3], window, strides)
        if chosen() == "xla":
            z = jax.lax.conv_general_dilated(x, W, strides, pads, dimension_numbers=_dimension_numbers("NHWC", "HWIO", "NHWC"))
            return z + b, (x, None)
        xpad = _pad(x, pads)
        out = tuple(_out_size(n, p, k, s) for n, p, k, s in zip(x.shape[1:3], pads, window, strides))
        P = patches(xpad, window, strides, out)  # (m, P, Q, kh, kw, C)
        z = P.reshape(*P.shape[:3], -1) @ W.reshape(-1, W.shape[-1])
        return z + b, (x, P)

    def backward(params: dict, cache: tuple, dz: Array) -> tuple[dict, Array]:
        x, P = cache
        W = params["W"]
        pads = padding_amounts(padding, x.shape[1:3], window, strides)
        padded = (x.shape[1] + sum(pads[0]), x.shape[2] + sum(pads[1]))
        db = jnp.sum(dz, axis=(0, 1, 2))
        if P is None:  # the XLA form: two more convolutions
            kh, kw = window
            xpad = _pad(x, pads)
            # dW[i, j, c, o] = sum_{n,p,q} xpad[n, s p + i, s q + j, c] dZ[n, p, q, o]: batch and channels trade places
            dW = jax.lax.conv_general_dilated(xpad, dz, (1, 1), "VALID", rhs_dilation=strides,
                                              dimension_numbers=_dimension_numbers("CHWN", "IHWO", "HWNC"))[:kh, :kw]
            # dxpad = dZ (dilated by s) fully convolved with W rotated 180 degrees, C_in and C_out swapped
            rest = tuple(n - (s * (o - 1) + k) for n, s, o, k in zip(padded, strides, dz.shape[1:3], window))
            dxpad = jax.lax.conv_general_dilated(dz, W[::-1, ::-1], (1, 1), ((kh - 1, kh - 1 + rest[0]), (kw - 1, kw - 1 + rest[1])),
                                                 lhs_dilation=strides, dimension_numbers=_dimension_numbers("NHWC", "HWOI", "NHWC"))
            return {"W": dW.astype(W.dtype), "b": db}, _unpad(dxpad, pads, x.shape[1:3])
        rows = dz.reshape(-1, dz.shape[-1])  # (m P Q, C_out)
        dW = patches_transposed_times(x, P, rows, pads, window, strides).reshape(W.shape)  # dW = P^T dZ
        dP = (rows @ W.reshape(-1, W.shape[-1]).T).reshape(P.shape)  # dP = dZ W^T
        return {"W": dW, "b": db}, _unpad(col2im(dP, padded, strides), pads, x.shape[1:3])

    label = f"conv2d({features}, {window[0]}x{window[1]}" + (f", stride {strides[0]}" if strides != (1, 1) else "") + \
            (f", padding {padding}" if padding != "VALID" else "") + (f", {impl}" if impl != "auto" else "") + ")"
    return Layer(init_fn, forward, backward, name=label)


def shape_token(x: Array) -> Array:
    """An empty array (0, *x.shape[1:]) that carries x's shape through a cache: caches cross `jax.jit`
    and `custom_vjp` residuals, where a tuple of Python ints would not stay static."""
    return jnp.zeros((0, *x.shape[1:]), x.dtype)


# ----- pooling -----------------------------------------------------------------------------------------
def _pool_geometry(x_shape: tuple, window: tuple[int, int], strides: tuple[int, int]) -> tuple[int, int]:
    out = tuple((n - k) // s + 1 for n, k, s in zip(x_shape[1:3], window, strides))
    if min(out) < 1:
        raise ValueError(f"a {window} pooling window does not fit a {x_shape[1]}x{x_shape[2]} input")
    return out


def max_pool(window: int | tuple = 2, stride: int | tuple | None = None) -> Layer:
    """y[n, p, q, c] = max_{i, j} x[n, s p + i, s q + j, c] (no padding; stride defaults to the window).

    Backward: each window's gradient goes to its arg-max, dx = col2im(1[x = y] dy / count), overlapping
    windows adding up. Ties (common after a ReLU: an all-zero window) share dy evenly: count is the
    number of maximal entries in the window, 1 without a tie. Any split of dy among tied entries is a
    valid derivative there (a kink: the one-sided slopes are 0 and 1); the even split is `jax.grad`'s
    convention (PyTorch and cuDNN give all of it to one entry), so hand and autodiff agree at ties too.
    The division also keeps XLA from fusing the incoming gradient's computation (a col2im) into every
    window entry it is spread to: at batch 64 in Nielsen's network, routing to the first arg-max by a
    mask cost 13.8 ms per step against 8.5 ms for this form. The cache is the input (alive anyway as the
    previous layer's output) and y.

    Layout, for speed only: the kh kw entries of the windows are strided slices of x (`window_slices`),
    so count is an elementwise sum that XLA fuses into the routing pass. Windows that tile the input
    (stride = window, the usual case) are reduced and routed in the view (m, P, kh, Q, kw, C) of x
    (`tile_view`, a reshape), so dx needs no transpose back. Together about 8% of Nielsen's step at batch 64. y
    stays a max reduction, whose autodiff also splits ties evenly (nested maxima would not).
    """
    win = _pairs(window, "window")
    strides = win if stride is None else _pairs(stride, "stride")
    tiling = strides == win

    def forward(params: dict, x: Array) -> tuple[Array, tuple]:
        out = _pool_geometry(x.shape, win, strides)
        y = jnp.max(tile_view(x, win, out), axis=(2, 4)) if tiling else jnp.max(jnp.stack(window_slices(x, win, strides, out), axis=3), axis=3)
        return y, (x, y)

    def backward(params: dict, cache: tuple, dy: Array) -> tuple[dict, Array]:
        x, y = cache
        out = _pool_geometry(x.shape, win, strides)
        entries = window_slices(x, win, strides, out)
        share = dy / functools.reduce(jnp.add, [(entry == y).astype(dy.dtype) for entry in entries])  # dy / count
        if tiling:  # route in the view of x itself: no transpose back
            return {}, untile(jnp.where(tile_view(x, win, out) == y[:, :, None, :, None, :], share[:, :, None, :, None, :], 0), x.shape[1:3])
        routed = jnp.stack([jnp.where(entry == y, share, 0) for entry in entries], axis=3)  # (m, P, Q, kh kw, C)
        return {}, col2im(routed.reshape(*dy.shape[:3], *win, dy.shape[-1]), x.shape[1:3], strides)

    return Layer(no_params, forward, backward, name=f"max_pool({win[0]}x{win[1]}" + (f", stride {strides[0]}" if strides != win else "") + ")")


def avg_pool(window: int | tuple = 2, stride: int | tuple | None = None) -> Layer:
    """y[n, p, q, c] = (1 / (kh kw)) sum_{i, j} x[n, s p + i, s q + j, c]; backward dx = col2im(dy / (kh kw))
    to every entry of each window (no padding; stride defaults to the window)."""
    win = _pairs(window, "window")
    strides = win if stride is None else _pairs(stride, "stride")
    size = win[0] * win[1]

    def forward(params: dict, x: Array) -> tuple[Array, Array]:
        p = patches(x, win, strides, _pool_geometry(x.shape, win, strides))
        return jnp.sum(p, axis=(3, 4)) / size, shape_token(x)

    def backward(params: dict, token: Array, dy: Array) -> tuple[dict, Array]:
        x_shape = token.shape
        spread = jnp.broadcast_to(dy[:, :, :, None, None, :] / size, (*dy.shape[:3], *win, dy.shape[-1]))
        return {}, col2im(spread, x_shape[1:3], strides)

    return Layer(no_params, forward, backward, name=f"avg_pool({win[0]}x{win[1]}" + (f", stride {strides[0]}" if strides != win else "") + ")")


def flatten() -> Layer:
    """(m, H, W, C) -> (m, H W C), row-major (C fastest); backward: dy reshaped back."""

    def forward(params: dict, x: Array) -> tuple[Array, Array]:
        return x.reshape(x.shape[0], -1), shape_token(x)

    def backward(params: dict, token: Array, dy: Array) -> tuple[dict, Array]:
        return {}, dy.reshape(dy.shape[0], *token.shape[1:])

    return Layer(no_params, forward, backward, name="flatten")


def reshape(shape: tuple) -> Layer:
    """(m, *in_shape) -> (m, *shape), e.g. flat MNIST rows (m, 784) to images (m, 28, 28, 1); backward:
    dy reshaped back. The first layer of a conv net trained on flat rows (`fnbackprop.models.architecture`)."""
    shape = tuple(int(n) for n in shape)

    def forward(params: dict, x: Array) -> tuple[Array, Array]:
        if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
            raise ValueError(f"cannot reshape inputs of shape {tuple(x.shape[1:])} to {shape}")
        return x.reshape(x.shape[0], *shape), shape_token(x)

    def backward(params: dict, token: Array, dy: Array) -> tuple[dict, Array]:
        return {}, dy.reshape(dy.shape[0], *token.shape[1:])

    return Layer(no_params, forward, backward, name=f"reshape{shape}")
