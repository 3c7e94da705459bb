"""Where the conv network's batch-64 step spends its time, and which formulation of each piece is fastest.

    python experiments/conv_step_forms.py [--rounds 5]

At batch 64 the hand-coded im2col step of Nielsen's two-conv-pool network trails PyTorch eager
(oneDNN's direct convolution, channels-last) by about 15%. This times, at the step's shapes
(the second conv layer: 64 x 12 x 12 x 20 in, 40 maps of 5x5; the first: 64 x 28 x 28 x 1 in,
20 maps), every formulation of each piece of a conv layer's step, interleaved, in one process:

- the forward Z: im2col (patches P, then P W) or `lax.conv_general_dilated`;
- dW: P^T dZ (patches rebuilt) or the correlation by `lax.conv_general_dilated`;
- dX: col2im(dZ W^T) (the engine's), one product per kernel row (dZ W_i^T, then an overlap-add
  along the width and a shift by i), one product per kernel offset (dZ W_ij^T, shifted), the
  transposed convolution by `lax.conv_general_dilated` in forward form (the kernel rotated and its
  channel axes swapped explicitly), or col2im by `.at[].add` scatters.

Then the whole SGD step (`fnbackprop.bench.conv`, 100 steps scanned, interleaved with PyTorch eager
channels-last) with the engine's conv layers, with a dX by kernel rows, and with the forward by
`lax.conv` (the patches then built in the backward, for dW), at batch 64 and 10.

Each piece runs 50 times in a `lax.scan` whose carry feeds every input (so nothing is hoisted out
of the loop) and whose output is consumed whole, squared and summed (so no slice or sum is
simplified through the product). Every form is first checked equal to the engine's. Writes
results/conv_step_forms.json.
"""

import argparse
import json
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fnbackprop.bench.timing import interleaved, summary
from fnbackprop.bench.conv import STEPS, batches, jax_steps, nielsen_conv_net, torch_steps
from fnbackprop.layers import conv2d
from fnbackprop.layers.convolution import _dimension_numbers, col2im, patches
from fnbackprop.layers.protocol import Layer

REPEATS = 50
NHWC_HWIO = _dimension_numbers("NHWC", "HWIO", "NHWC")
ZERO = jnp.zeros((), jnp.float32)


def shifted(a: jax.Array, axis: int, offset: int, size: int) -> jax.Array:
    """a placed at `offset` along `axis` in a zero array `size` long there (a pad, which XLA fuses into the sum)."""
    widths = [(0, 0, 0)] * a.ndim
    widths[axis] = (offset, size - a.shape[axis] - offset, 0)
    return jax.lax.pad(a, ZERO, widths)


def forward_im2col(x, W, dz):
    return patches(x, W.shape[:2], (1, 1), dz.shape[1:3]).reshape(*dz.shape[:3], -1) @ W.reshape(-1, W.shape[-1])


def forward_lax(x, W, dz):
    return jax.lax.conv_general_dilated(x, W, (1, 1), "VALID", dimension_numbers=NHWC_HWIO)


def dW_from_patches(P, dz, shape):
    rows = dz.reshape(-1, dz.shape[-1])
    return (P.reshape(rows.shape[0], -1).T @ rows).reshape(shape)


def dW_im2col(x, W, dz):
    return dW_from_patches(patches(x, W.shape[:2], (1, 1), dz.shape[1:3]), dz, W.shape)


def dW_lax(x, W, dz):
    return jax.lax.conv_general_dilated(x, dz, (1, 1), "VALID", dimension_numbers=_dimension_numbers("CHWN", "IHWO", "HWNC"))


def dx_col2im(x, W, dz):
    dP = dz.reshape(-1, W.shape[-1]) @ W.reshape(-1, W.shape[-1]).T
    return col2im(dP.reshape(*dz.shape[:3], *W.shape[:3]), x.shape[1:3], (1, 1))


def dx_per_kernel_row(x, W, dz):
    """dX = sum_i shift_i(sum_j shift_j(dZ W_i^T [.., j, :])): kh products of (m P Q, C_out) x (C_out, kw C_in)."""
    kh, kw, c_in, c_out = W.shape
    rows = dz.reshape(-1, c_out)
    total = None
    for i in range(kh):
        d = (rows @ W[i].reshape(-1, c_out).T).reshape(*dz.shape[:3], kw, c_in)
        row = sum(shifted(d[:, :, :, j, :], 2, j, x.shape[2]) for j in range(kw))
        part = shifted(row, 1, i, x.shape[1])
        total = part if total is None else total + part
    return total


def dx_per_offset(x, W, dz):
    """dX = sum_ij shift_ij(dZ W_ij^T): kh kw products of (m P Q, C_out) x (C_out, C_in)."""
    kh, kw, c_in, c_out = W.shape
    rows = dz.reshape(-1, c_out)
    return sum(shifted(shifted((rows @ W[i, j].T).reshape(*dz.shape[:3], c_in), 1, i, x.shape[1]), 2, j, x.shape[2])
               for i in range(kh) for j in range(kw))


def dx_lax_forward_form(x, W, dz):
    kh, kw = W.shape[:2]
    rotated = W[::-1, ::-1].transpose(0, 1, 3, 2)  # HWIO with C_out as the input channels
    return jax.lax.conv_general_dilated(dz, rotated, (1, 1), ((kh - 1, kh - 1), (kw - 1, kw - 1)), dimension_numbers=NHWC_HWIO)


def dx_scatter(x, W, dz):
    kh, kw, c_in, c_out = W.shape
    dP = (dz.reshape(-1, c_out) @ W.reshape(-1, c_out).T).reshape(*dz.shape[:3], kh, kw, c_in)
    out = jnp.zeros(x.shape, x.dtype)
    for i in range(kh):
        for j in range(kw):
            out = out.at[:, i:i + dz.shape[1], j:j + dz.shape[2], :].add(dP[:, :, :, i, j, :])
    return out


PIECES: dict[str, dict[str, Callable]] = {
    "forward": {"im2col (engine)": forward_im2col, "lax.conv": forward_lax},
    "dW": {"P^T dZ (engine)": dW_im2col, "lax.conv": dW_lax},
    "dX": {"col2im(dZ W^T) (engine)": dx_col2im, "a product per kernel row": dx_per_kernel_row,
           "a product per kernel offset": dx_per_offset, "lax.conv, forward form": dx_lax_forward_form,
           "col2im by scatter-add": dx_scatter},
}


def looped(form: Callable) -> Callable:
    """REPEATS evaluations in a scan; the carry perturbs every input, the whole output feeds the carry."""
    @jax.jit
    def run(x, W, dz):
        def body(c, _):
            out = form(x + c, W + c, dz + c)
            return c + 1e-12 * jnp.sum(out * out), None
        return jax.lax.scan(body, jnp.float32(0), None, length=REPEATS)[0]
    return run


def layer_forms(m: int, size: int, c_in: int, c_out: int, rounds: int, skip: tuple[str, ...] = ()) -> dict:
    """ms per evaluation of every form of every piece at one conv layer's shapes (5x5, VALID, stride 1)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (m, size, size, c_in))
    W = jax.random.normal(keys[1], (5, 5, c_in, c_out))
    dz = jax.random.normal(keys[2], (m, size - 4, size - 4, c_out))
    engine = conv2d(c_out, 5, impl="im2col")  # what every form must reproduce: the engine's layer itself (b = 0)
    params = {"W": W, "b": jnp.zeros(c_out)}
    z, cache = engine.forward(params, x)
    grads, dx = engine.backward(params, cache, dz)
    expected = {"forward": z, "dW": grads["W"], "dX": dx}
    runs = {}
    for piece, forms in PIECES.items():
        if piece in skip:
            continue
        reference = np.asarray(expected[piece])
        for name, form in forms.items():
            # float32 sums of 25 C_in terms in another order: 1e-4 of the largest entry
            difference = np.abs(np.asarray(form(x, W, dz)) - reference).max()
            assert difference <= 1e-4 * np.abs(reference).max(), f"{piece} {name} differs from the engine's layer"
            run = looped(form)
            jax.block_until_ready(run(x, W, dz))
            runs[f"{piece}: {name}"] = lambda run=run: run(x, W, dz)
    times = interleaved(runs, rounds)
    return {name: 1e3 * summary(t)["median"] / REPEATS for name, t in times.items()}


def conv_variant(features: int, forward_by_lax: bool, dx_form: Callable) -> Layer:
    """conv2d(features, 5), im2col, with its forward by lax.conv (then P is built in the backward, for dW)
    and/or another dX form; dW = P^T dZ and db as the engine's."""
    engine = conv2d(features, 5, impl="im2col")

    def forward(params, x):
        if not forward_by_lax:
            return engine.forward(params, x)  # caches (x, P)
        return forward_lax(x, params["W"], None) + params["b"], (x, None)

    def backward(params, cache, dz):
        x, P = cache
        W = params["W"]
        P = patches(x, W.shape[:2], (1, 1), dz.shape[1:3]) if P is None else P
        return {"W": dW_from_patches(P, dz, W.shape), "b": jnp.sum(dz, axis=(0, 1, 2))}, dx_form(x, W, dz)

    return engine._replace(forward=forward, backward=backward)


STEP_VARIANTS = {"engine (im2col, col2im)": None, "dX by kernel rows": (False, dx_per_kernel_row),
                 "forward by lax.conv": (True, dx_col2im)}


def step_forms(batch: int, rounds: int) -> dict:
    """ms per SGD step of each variant (its gradients first checked against the engine's), and PyTorch's."""
    xs, ys = (jnp.asarray(a) for a in batches(batch))
    params = nielsen_conv_net("im2col").init(jax.random.PRNGKey(0))
    runs, reference = {}, None
    for name, variant in STEP_VARIANTS.items():  # the engine's network first: the reference
        net = nielsen_conv_net("im2col", None if variant is None else lambda features, v=variant: conv_variant(features, *v))
        grads = jax.jit(lambda p, x, y, net=net: net.value_and_grad(p, x, y)[1])(params, xs[0], ys[0])
        reference = grads if reference is None else reference
        # the same gradients up to float32 summation order; a wrong form (a dX unflipped, misplaced) is off by O(1)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5), reference, grads)
        run = jax_steps(net, "hand")
        jax.block_until_ready(run(params, xs, ys))
        runs[name] = lambda run=run: run(params, xs, ys)
    torch_run = torch_steps(batch, channels_last=True)
    if torch_run is not None:
        torch_run()
        runs["torch eager channels-last"] = torch_run
    times = interleaved(runs, rounds)
    return {name: 1e3 * summary(t)["median"] / STEPS for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    # The first layer's dX is never needed (its input is the data), so only its forward and dW are timed.
    layers = {"conv 2 (64 x 12 x 12 x 20 -> 40 maps)": layer_forms(64, 12, 20, 40, args.rounds),
              "conv 1 (64 x 28 x 28 x 1 -> 20 maps)": layer_forms(64, 28, 1, 20, args.rounds, skip=("dX",))}
    steps = {f"batch {b}": step_forms(b, args.rounds + 2) for b in (64, 10)}
    for title, rows in {**layers, **{f"whole step, {k}" : v for k, v in steps.items()}}.items():
        print(title)
        for name, ms in rows.items():
            print(f"  {name:40s} {ms:6.2f} ms")
    out = Path(__file__).resolve().parent / "results" / "conv_step_forms.json"
    out.write_text(json.dumps({"ms_per_evaluation": layers, "ms_per_step": steps, "repeats": REPEATS, "rounds": args.rounds,
                               "machine": f"{jax.device_count()} {jax.default_backend()} device(s)"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
