"""Convolution and pooling layers: both hand-written implementations of conv2d against an independent
float64 reference written here with loops over output positions (from the NHWC / HWIO layout), the
checker on each layer, planted mistakes caught, max-pool ties, and a conv net checked whole."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb
from fnbackprop.check.mutations import conv_mutations

FLOAT64 = True


# ----- the reference: loops over output positions, numpy float64 --------------------------------------
def same_padding(n, k, s):
    """XLA's and TensorFlow's SAME: out = ceil(n / s), the odd row or column at the end."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def reference_pads(padding, x_shape, kernel, stride):
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        return tuple(same_padding(n, k, s) for n, k, s in zip(x_shape[1:3], kernel, stride))
    return ((padding, padding), (padding, padding))


def reference_conv(x, W, b, stride, pads, dz=None):
    """Z[n,p,q,o] = b[o] + sum_{i,j,c} Xpad[n, s p + i, s q + j, c] W[i,j,c,o]; with dz, also (dW, db, dx)."""
    xpad = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    kh, kw, _, n_out = W.shape
    P, Q = (xpad.shape[1] - kh) // stride[0] + 1, (xpad.shape[2] - kw) // stride[1] + 1
    z = np.zeros((x.shape[0], P, Q, n_out))
    dW, dxpad = np.zeros_like(W), np.zeros_like(xpad)
    for p in range(P):
        for q in range(Q):
            rows, cols = slice(p * stride[0], p * stride[0] + kh), slice(q * stride[1], q * stride[1] + kw)
            z[:, p, q, :] = np.einsum("nijc,ijco->no", xpad[:, rows, cols, :], W) + b
            if dz is not None:
                dW += np.einsum("nijc,no->ijco", xpad[:, rows, cols, :], dz[:, p, q, :])
                dxpad[:, rows, cols, :] += np.einsum("no,ijco->nijc", dz[:, p, q, :], W)
    if dz is None:
        return z
    dx = dxpad[:, pads[0][0]:pads[0][0] + x.shape[1], pads[1][0]:pads[1][0] + x.shape[2], :]
    return z, dW, dz.sum(axis=(0, 1, 2)), dx


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def random_configs(n, seed=0):
    """Kernel sizes (square and not), strides, every padding mode, channel counts, batch sizes including 1."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = ["VALID", "SAME", int(rng.integers(0, 3))][rng.integers(0, 3)]
        size = tuple(int(max(k, v)) for k, v in zip(kernel, rng.integers(4, 8, 2)))
        yield kernel, stride, padding, (int(rng.integers(1, 4)), *size, int(rng.integers(1, 4))), int(rng.integers(1, 4))


CONFIGS = list(random_configs(4)) + [((3, 3), (2, 2), "SAME", (1, 7, 6, 2), 3),  # batch 1, an odd SAME
                                     ((2, 2), (3, 3), 1, (2, 8, 7, 3), 2)]  # int padding, stride above the kernel


# the draws compile slowly (18 s and 27 s): slow step; in the main step both forms meet in a whole network below
@pytest.mark.parametrize("impl", [pytest.param("xla", marks=pytest.mark.slow), pytest.param("im2col", marks=pytest.mark.slow)])
def test_both_implementations_equal_the_loop_reference(impl):
    for i, (kernel, stride, padding, x_shape, n_out) in enumerate(CONFIGS):
        layer = fb.conv2d(n_out, kernel, stride, padding, impl=impl)
        kx, kp, kd = jax.random.split(jax.random.PRNGKey(i), 3)
        x = jax.random.normal(kx, x_shape, jnp.float64)
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), layer.init(kp, x_shape[1:]))
        params["b"] = jax.random.normal(kd, params["b"].shape, jnp.float64)
        z, cache = layer.forward(params, x)
        dz = jax.random.normal(kd, z.shape, jnp.float64)
        grads, dx = layer.backward(params, cache, dz)
        pads = reference_pads(padding, x_shape, kernel, stride)
        z_ref, dW_ref, db_ref, dx_ref = reference_conv(np.asarray(x), np.asarray(params["W"]), np.asarray(params["b"]), stride, pads,
                                                       np.asarray(dz))
        errors = [rel(z, z_ref), rel(grads["W"], dW_ref), rel(grads["b"], db_ref), rel(dx, dx_ref)]
        assert max(errors) < 1e-10, (kernel, stride, padding, x_shape, errors)  # float64 rounding of sums of <100 terms


@pytest.mark.slow  # 21 s: the checker on each of seven layers
def test_the_checker_passes_each_conv_and_pooling_layer():
    key = jax.random.PRNGKey(3)
    layers = [(fb.conv2d(3, 3, 2, "SAME", impl="xla"), (5, 4, 2)), (fb.conv2d(3, (2, 3), (1, 2), 1, impl="im2col"), (6, 7, 2)),
              (fb.max_pool(3, 2), (7, 7, 1)), (fb.avg_pool(2, 1), (5, 5, 2)), (fb.flatten(), (3, 4, 2))]
    failing = {layer.name: report.failing() for layer, shape in layers
               if not (report := fb.check_layer(layer, key, in_shape=shape, batch=2)).passed}
    assert failing == {}


def test_each_planted_convolution_mistake_fails_the_checker():
    reports = {name: fb.check_layer(m.mutant, jax.random.PRNGKey(0), in_shape=m.in_shape, batch=2)
               for name, m in conv_mutations().items()}
    assert {name: r.passed for name, r in reports.items()} == {name: False for name in reports}
    assert {name: sorted(r.name for r in rep.failing()) for name, rep in reports.items()} == {
        "conv2d: kernel not rotated in dx": ["dx"], "conv2d: stride ignored in the backward": ["dx"],
        "conv2d: db not summed over positions": ["params['b']"], "max_pool: gradient to every entry": ["dx"]}
    assert reports["conv2d: db not summed over positions"].diagnosis.startswith("broadcast-sum")


def reference_max_pool(x, window, stride, dy):
    """y = the max of each window; dx: each window's dy split evenly among its maximal entries (loops, float64)."""
    (kh, kw), (sh, sw) = window, stride
    P, Q = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    y, dx = np.zeros((x.shape[0], P, Q, x.shape[3])), np.zeros_like(x)
    for n in range(x.shape[0]):
        for p in range(P):
            for q in range(Q):
                for c in range(x.shape[3]):
                    win = x[n, p * sh:p * sh + kh, q * sw:q * sw + kw, c]
                    y[n, p, q, c] = win.max()
                    hits = win == win.max()
                    dx[n, p * sh:p * sh + kh, q * sw:q * sw + kw, c] += hits * dy[n, p, q, c] / hits.sum()
    return y, dx


# tiling windows with rows and columns left over, overlapping windows, windows with gaps, a non-square
# window and batch 1; entries drawn from {-1, 0, 1} so that most windows hold ties
@pytest.mark.parametrize("window,stride,x_shape", [((2, 2), None, (2, 7, 6, 3)), ((3, 2), (3, 2), (1, 8, 5, 2)),
                                                    ((3, 3), (2, 2), (2, 7, 7, 1)), ((2, 2), (3, 3), (2, 8, 8, 2))])
def test_max_pool_equals_the_loop_reference_ties_included(window, stride, x_shape):
    rng = np.random.default_rng(sum(x_shape))
    x = rng.integers(-1, 2, x_shape).astype(np.float64)
    pool = fb.max_pool(window, stride)
    y, cache = pool.forward({}, jnp.asarray(x))
    dy = rng.standard_normal(y.shape)
    _, dx = pool.backward({}, cache, jnp.asarray(dy))
    y_ref, dx_ref = reference_max_pool(x, window, stride or window, dy)
    assert rel(y, y_ref) == 0  # a max selects an entry: no rounding
    assert rel(dx, dx_ref) < 1e-14  # dy / count, summed over at most 4 overlapping windows


def test_max_pool_shares_a_tie_evenly_as_jax_grad_does_and_the_checker_calls_it_a_kink():
    pool = fb.max_pool(2)
    x = jnp.zeros((1, 4, 4, 1)).at[0, 1, 1, 0].set(-1.0).at[0, 2, 3, 0].set(2.0)  # ties of zeros, one clear maximum
    y, cache = pool.forward({}, x)
    dy = jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    _, dx = pool.backward({}, cache, dy)
    expected = np.zeros((4, 4))
    expected[0, 0] = expected[0, 1] = expected[1, 0] = 1.0 / 3  # three tied zeros (the fourth entry is -1)
    expected[0:2, 2:4] = 2.0 / 4  # an all-zero window: four ways
    expected[2:4, 0:2] = 3.0 / 4
    expected[2, 3] = 4.0  # the clear maximum takes all of dy
    np.testing.assert_allclose(np.asarray(dx)[0, :, :, 0], expected, rtol=1e-6)
    autodiff = jax.vjp(lambda x: pool.forward({}, x)[0], x)[1](dy)[0]
    np.testing.assert_allclose(np.asarray(dx), np.asarray(autodiff), rtol=1e-6)
    report = fb.check_layer(pool, jax.random.PRNGKey(0), x=jnp.zeros((2, 4, 4, 1)))  # every window tied
    assert report.passed and report.rows[-1].verdict == "kink"


def test_a_conv_net_is_checked_whole_and_both_implementations_agree():
    def net(impl):
        return fb.network([fb.conv2d(4, 3, impl=impl), fb.activation("relu"), fb.max_pool(2), fb.flatten(), fb.dense(5)],
                          in_shape=(8, 8, 1), output="softmax", loss="cross_entropy")

    key = jax.random.PRNGKey(1)
    report = fb.check_network(net("im2col"), key, batch=3)
    assert report.passed, [(r.name, r.verdict, r.detail) for r in report.failing()]
    x = jax.random.normal(key, (3, 8, 8, 1), jnp.float64)
    y = jnp.array([0, 3, 4])
    params = net("xla").init(key, jnp.float64)
    (lx, gx), (li, gi) = (net(impl).value_and_grad(params, x, y) for impl in ("xla", "im2col"))
    assert abs(lx - li) < 1e-12 and max(rel(a, b) for a, b in zip(jax.tree_util.tree_leaves(gx), jax.tree_util.tree_leaves(gi))) < 1e-10


@pytest.mark.parametrize("window,stride", [((3, 3), (1, 1)), ((2, 2), (2, 2)), ((3, 2), (3, 2)), ((2, 3), (3, 2))])
def test_col2im_is_the_adjoint_of_patches(window, stride):
    """<patches(x), d> = <x, col2im(d)> for every x and d: the definition of the backward of im2col
    (overlapping windows, tiling windows with a remainder, a stride larger than the window)."""
    from fnbackprop.layers.convolution import col2im, patches

    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 9, 3), jnp.float64)
    out = tuple((n - k) // s + 1 for n, k, s in zip((7, 9), window, stride))
    d = jax.random.normal(jax.random.PRNGKey(1), (2, *out, *window, 3), jnp.float64)
    lhs, rhs = float(jnp.vdot(patches(x, window, stride, out), d)), float(jnp.vdot(x, col2im(d, (7, 9), stride)))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("window,stride", [((3, 3), (1, 1)), ((2, 2), (2, 2)), ((3, 2), (3, 2)), ((2, 3), (3, 2))])
def test_patches_match_their_definition_in_both_layouts(window, stride):
    """patches[n, p, q, i, j, c] = x[n, s p + i, s q + j, c], read off x by index here; the window-first
    layout (kh, kw, m, P, Q, C), which the one-channel dW uses as P^T, holds the same entries."""
    from fnbackprop.layers.convolution import patches

    x = np.arange(2 * 7 * 9 * 3, dtype=np.float64).reshape(2, 7, 9, 3)  # every entry distinct: a misplaced one shows
    out = tuple((n - k) // s + 1 for n, k, s in zip((7, 9), window, stride))
    expected = np.array([[[[[x[n, stride[0] * p + i, stride[1] * q + j] for j in range(window[1])] for i in range(window[0])]
                           for q in range(out[1])] for p in range(out[0])] for n in range(2)])
    assert np.array_equal(patches(jnp.asarray(x), window, stride, out), expected)
    assert np.array_equal(patches(jnp.asarray(x), window, stride, out, windows_first=True), expected.transpose(3, 4, 0, 1, 2, 5))
