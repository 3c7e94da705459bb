"""The suite's own teeth: plant one mistake at a time in the engine's source and run the README's test
command on it. Every planted mistake must turn the suite red; one that does not is a hole in the suite.

    .venv/bin/python tests/teeth.py                 # every mistake below, the full test command each
    .venv/bin/python tests/teeth.py --fast          # stop each run at its first failure (pytest -x)
    .venv/bin/python tests/teeth.py --only relu     # the mistakes whose name contains "relu"
    .venv/bin/python tests/teeth.py --list

Each mistake is (file, the exact text, its replacement). The tracked files are copied to a fresh
folder beside this checkout (so `../shared/data` resolves as it does here), the mistake is applied
there, and the pytest part of the README's test command runs in that folder with the copy's `src`
first on PYTHONPATH (checked before each run: the mutated package must be the one imported). The
score, each mistake's verdict and the time taken are printed, and written as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Mistake(NamedTuple):
    name: str
    file: str  # relative to src/fnbackprop
    old: str
    new: str


MISTAKES = [
    # the backward functions
    Mistake("dense: db = mean instead of sum", "layers/dense.py", '"b": jnp.sum(rows, axis=0)}', '"b": jnp.mean(rows, axis=0)}'),
    Mistake("dense: dx = dZ W scaled by 2", "layers/dense.py", "return grads, dz @ params[\"W\"]", "return grads, 2 * dz @ params[\"W\"]"),
    Mistake("dense: forward subtracts b", "layers/dense.py", '(z + params["b"] if', '(z - params["b"] if'),
    Mistake("norm: mean term dropped in dx", "layers/normalisation.py", "(n * dxhat - jnp.sum(dxhat, axis, keepdims=True) - xhat",
            "(n * dxhat - xhat"),
    Mistake("norm: gamma forgotten in dx", "layers/normalisation.py", "_normalisation_dx(dy * params[\"gamma\"], xhat", "_normalisation_dx(dy, xhat"),
    Mistake("norm: dgamma without xhat", "layers/normalisation.py", '{"gamma": jnp.sum(dy * xhat, axis=leading)', '{"gamma": jnp.sum(dy, axis=leading)'),
    Mistake("dropout: mask forgotten in the backward", "layers/regularisation.py", "return {}, dy * scale", "return {}, dy"),
    Mistake("dropout: no 1/(1 - rate) in the forward", "layers/regularisation.py", ".astype(x.dtype) / (1 - rate)", ".astype(x.dtype)"),
    Mistake("residual: skip path dropped in dx", "layers/composition.py", "return grads, dy + dh", "return grads, dh"),
    Mistake("conv2d: db summed over the batch only", "layers/convolution.py", "db = jnp.sum(dz, axis=(0, 1, 2))",
            "db = jnp.sum(dz, axis=(0, 1, 2)) / dz.shape[1]"),
    Mistake("conv2d: kernel not rotated in dx (XLA form)", "layers/convolution.py", "dxpad = jax.lax.conv_general_dilated(dz, W[::-1, ::-1]",
            "dxpad = jax.lax.conv_general_dilated(dz, W"),
    Mistake("max_pool: gradient to every entry of the window", "layers/convolution.py",
            "jnp.where(tile_view(x, win, out) == y[:, :, None, :, None, :], share[:, :, None, :, None, :], 0)",
            "jnp.broadcast_to(dy[:, :, None, :, None, :], tile_view(x, win, out).shape)"),
    Mistake("softmax: sum term dropped", "activations.py", "return a * (da - jnp.sum(da * a, axis=-1, keepdims=True))", "return a * da"),
    # activation derivatives
    Mistake("sigmoid: a(1 + a)", "activations.py", "lambda z, a: a * (1 - a)", "lambda z, a: a * (1 + a)"),
    Mistake("tanh: 1 - a", "activations.py", "lambda z, a: 1 - a * a", "lambda z, a: 1 - a"),
    Mistake("relu: 1[z < 0]", "activations.py", "lambda z, a: (z > 0).astype(z.dtype)", "lambda z, a: (z < 0).astype(z.dtype)"),
    Mistake("leaky_relu: slope 0 in the derivative", "activations.py", "jnp.where(z >= 0, 1.0, LEAKY_SLOPE)", "jnp.where(z >= 0, 1.0, 0.0)"),
    Mistake("softplus: g for g'", "activations.py", "lambda z, a: jax.nn.sigmoid(z), \"g'(z) = sigmoid(z)\"",
            "lambda z, a: a, \"g'(z) = sigmoid(z)\""),
    Mistake("silu: sign in the derivative", "activations.py", "(1 + z * (1 - jax.nn.sigmoid(z)))", "(1 + z * (1 + jax.nn.sigmoid(z)))"),
    Mistake("huber: clipped at 1/2", "activations.py", "jnp.clip(z, -1.0, 1.0)", "jnp.clip(z, -0.5, 0.5)"),
    Mistake("gelu: the erf form's derivative", "activations.py", "lambda z, a: _gelu_tanh_derivative(z),",
            "lambda z, a: jax.scipy.stats.norm.cdf(z) + z * jax.scipy.stats.norm.pdf(z),"),
    # the GPT
    Mistake("attention: 1/sqrt(hs) missing in the backward", "layers/attention.py", "dq = dS @ k / math.sqrt(hs)", "dq = dS @ k"),
    Mistake("attention: causal mask forgotten in the backward", "layers/attention.py", "dS = softmax_vjp(P, dP)",
            "dS = softmax_vjp(jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs), axis=-1), dP)"),
    Mistake("gpt: the head's use of wte dropped", "models/gpt.py", "tied_sum(g_emb[\"wte\"], dwte_head)", "g_emb[\"wte\"]"),
    Mistake("embedding: rows set, not added", "layers/attention.py", ".at[idx.reshape(-1)].add(", ".at[idx.reshape(-1)].set("),
    # backpropagation through time
    Mistake("bptt: dh not carried back to the previous step", "layers/recurrent.py", "dh_t = dy_t + dh_carried", "dh_t = dy_t"),
    Mistake("lstm: the cell state's path dropped", "layers/recurrent.py", "    return da, dc * f", "    return da, 0 * dc * f"),
    Mistake("rnn: tanh' taken at h_{t-1}", "layers/recurrent.py", "da = dh * (1 - h_new * h_new)", "da = dh * (1 - h_prev * h_prev)"),
    Mistake("gru: the reset gate left out of dgh", "layers/recurrent.py", "[da_r, da_z, da_n * r]", "[da_r, da_z, da_n]"),
    # loss gradients
    Mistake("mse: factor 2 dropped", "losses.py", "lambda a, y: 2 * (a - y) / _batch_size(a)", "lambda a, y: (a - y) / _batch_size(a)"),
    Mistake("quadratic: 1/m dropped", "losses.py", "_quadratic, lambda a, y: (a - y) / _batch_size(a)", "_quadratic, lambda a, y: (a - y)"),
    Mistake("bce: (1 - a) dropped", "losses.py", "(a - y) / (a * (1 - a) * _batch_size(a))", "(a - y) / (a * _batch_size(a))"),
    Mistake("cross-entropy: sign of dC/dA", "losses.py", "lambda a, y: -y / (a * _batch_size(a))", "lambda a, y: y / (a * _batch_size(a))"),
    Mistake("fused head: 1/m dropped", "losses.py", "return (a - y) / _batch_size(z)", "return (a - y)"),
    Mistake("cross-entropy cost: summed, not averaged", "losses.py", "-jnp.sum(y * jax.nn.log_softmax(z, axis=-1)) / _batch_size(z)",
            "-jnp.sum(y * jax.nn.log_softmax(z, axis=-1))"),
    # the network's backward
    Mistake("network: upstream gradient recorded after the layer", "models/network.py",
            "cotangents[i] = dy\n            grads[i], dy = self.layers[i].backward(full[i], caches[i], dy)",
            "grads[i], dy = self.layers[i].backward(full[i], caches[i], dy)\n            cotangents[i] = dy"),
    Mistake("custom_vjp: cotangent g not applied", "models/network.py", "scale = lambda t: jax.tree_util.tree_map(lambda v: g * v, t)",
            "scale = lambda t: t"),
    # the training step, its L2 mask, the epoch
    Mistake("step: updates subtracted (ascent)", "train/epochs.py", "return (optax.apply_updates(params, updates), opt_state)",
            "return (jax.tree_util.tree_map(lambda p, u: p - u, params, updates), opt_state)"),
    Mistake("L2 mask: biases decayed, not weights", "train/epochs.py", 'return getattr(path[-1], "key", None) == "W"',
            'return getattr(path[-1], "key", None) == "b"'),
    Mistake("L2: lambda not divided by n", "train/epochs.py", "add_decayed_weights(l2 / n_train, mask=weights_only)",
            "add_decayed_weights(l2, mask=weights_only)"),
    Mistake("epoch: the same shuffle every epoch", "train/epochs.py",
            "run_epoch(params, opt_state, jax.random.fold_in(shuffle_key, epoch), x_tr, y_tr)",
            "run_epoch(params, opt_state, shuffle_key, x_tr, y_tr)"),
    Mistake("epoch: no shuffle at all", "train/epochs.py", "return jnp.argsort(jax.random.bits(key, (n,)))", "return jnp.arange(n)"),
    Mistake("epoch: last partial batch dropped", "train/epochs.py", "        if remainder:\n            last =", "        if False:\n            last ="),
    Mistake("epoch: mean cost unweighted", "train/epochs.py", "mean_cost = jnp.sum(costs * weights) / n", "mean_cost = jnp.mean(costs)"),
    Mistake("codes decoded with the wrong denominator", "train/epochs.py", "return x.astype(dtype) / jnp.asarray(denominator, dtype)",
            "return x.astype(dtype) / jnp.asarray(denominator + 1, dtype)"),
    # checkpoints
    Mistake("checkpoint: load ignores the stored arrays", "train/checkpoint.py",
            "jax.numpy.asarray(arrays[k]) for k in wanted", "jax.numpy.asarray(t) for t in wanted.values()"),
    Mistake("checkpoint: history truncated on save", "train/epochs.py",
            '{"epoch": epoch, "history": history, "config"', '{"epoch": epoch, "history": history[-1:], "config"'),
    Mistake("checkpoint: shapes not compared", "train/checkpoint.py", "(arrays[k].shape != t.shape or arrays[k].dtype != t.dtype)",
            "(arrays[k].dtype != t.dtype)"),
    # data parallelism and the graph engine
    Mistake("data parallel: local means summed, not weighted", "parallel.py", "weight = m_local / m", "weight = 1.0"),
    Mistake("graph: mul's gradient takes the wrong operand", "graph.py", "_unbroadcast(g * b, jnp.shape(a))", "_unbroadcast(g * a, jnp.shape(a))"),
    Mistake("graph: matmul dB not transposed", "graph.py", "db = _unbroadcast(jnp.swapaxes(a2, -1, -2) @ g2, b2.shape)",
            "db = _unbroadcast(jnp.swapaxes(g2, -1, -2) @ a2, b2.shape)"),
    # the checker itself
    Mistake("checker: NaN read as no error", "check/numerics.py",
            "if x.shape != y.shape or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or not np.isfinite(floor):",
            "if x.shape != y.shape:"),
    Mistake("checker: any kink excuses", "check/verdicts.py",
            "excused[sample.index[k.kink & (h >= k.low - margin) & (h <= k.high + margin)]] = True",
            "excused[sample.index[k.kink]] = True"),
    Mistake("checker: parameters checked at their initial values", "check/verify.py",
            "return move_off_special_values(key, as_dtype(drawn, dtype)), (MOVED_NOTE,)", "return as_dtype(drawn, dtype), (MOVED_NOTE,)"),
    # the memory savers
    Mistake("chunked head: the overlapping last slice of W added twice", "losses.py",
            "dz_k = jnp.where(fresh, jax.lax.dynamic_slice_in_dim(dz, start, width, axis=1), 0.0)",
            "dz_k = jax.lax.dynamic_slice_in_dim(dz, start, width, axis=1)"),
    Mistake("chunked head: dW accumulated as one (V x d) product", "losses.py", "width = min(vocab_chunk, V)", "width = V"),
    Mistake("recompute_norm: ln_2 recomputed with ln_1's parameters", "models/gpt.py",
            'c_fc, c_ln2 = L["ln"].forward(p["ln_2"], x_ln2)', 'c_fc, c_ln2 = L["ln"].forward(p["ln_1"], x_ln2)'),
    # the exercises' grader
    Mistake("exercises: the slips are not consulted", "exercises/grading.py", "slips=_slip_gradients(exercise, extra))", "slips=None)"),
    Mistake("exercises: a changed forward goes unnoticed", "exercises/grading.py", "if not err <= FORWARD_TOL:", "if err > 1e9:"),
    Mistake("diagnosis: transposed shapes not recognised", "check/diagnosis.py",
            "if hand.ndim >= 2 and hand.shape == auto.shape[:-2] + auto.shape[:-3:-1]", "if False"),
]


def readme_test_args() -> list[str]:
    """The arguments after `python -m pytest` in the README's test command."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- ci:test-command -->\s*```bash\n(.*?)\n```", text, re.S).group(1)
    pytest_part = block.split("-m pytest", 1)[1]
    return shlex.split(pytest_part)


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)


def plant(dest: Path, mistake: Mistake) -> None:
    path = dest / "src" / "fnbackprop" / mistake.file
    text = path.read_text()
    if text.count(mistake.old) != 1:
        raise SystemExit(f"{mistake.name}: the text to replace occurs {text.count(mistake.old)} times in {mistake.file}, not once")
    path.write_text(text.replace(mistake.old, mistake.new))


def run_suite(dest: Path, args: list[str], timeout: float) -> tuple[bool, float, str]:
    """(red, seconds, last line) of the test command in `dest`, importing the copy's package."""
    env = {**os.environ, "PYTHONPATH": str(dest / "src")}
    where = subprocess.run([sys.executable, "-c", "import fnbackprop; print(fnbackprop.__file__)"], cwd=dest, env=env,
                           capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(dest)):
        raise SystemExit(f"the mutated copy is not the package imported ({where}); install the project non-editable or fix PYTHONPATH")
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=dest, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return True, time.perf_counter() - start, "timed out (counted as red: the suite did not pass)"
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    first_red = next((line.split(" - ")[0] for line in lines if line.startswith(("FAILED", "ERROR"))), "")
    summary = lines[-1] if lines else done.stderr[-200:]
    return done.returncode != 0, time.perf_counter() - start, f"{summary}; first: {first_red}" if first_red else summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="stop each run at its first failure (pytest -x)")
    parser.add_argument("--only", default=None, help="run only the mistakes whose name contains this text")
    parser.add_argument("--list", action="store_true", help="list the mistakes and exit")
    parser.add_argument("--control", action="store_true", help="also run the unmutated copy (it must pass)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    opts = parser.parse_args()
    chosen = [m for m in MISTAKES if opts.only is None or opts.only in m.name]
    if opts.list:
        print("\n".join(f"{m.file:16} {m.name}" for m in chosen))
        return 0
    args = readme_test_args() + (["-x"] if opts.fast else []) + ["-p", "no:cacheprovider"]
    results, started = [], time.perf_counter()
    runs = ([None] if opts.control else []) + chosen
    for i, mistake in enumerate(runs, 1):
        with tempfile.TemporaryDirectory(prefix="teeth-", dir=ROOT.parent) as tmp:
            dest = Path(tmp)
            copy_tree(dest)
            if mistake is not None:
                plant(dest, mistake)
            red, seconds, last = run_suite(dest, args, opts.timeout)
        name = "control (no mistake)" if mistake is None else mistake.name
        ok = (not red) if mistake is None else red
        results.append({"mistake": name, "file": None if mistake is None else mistake.file, "suite_red": red,
                        "as_expected": ok, "seconds": round(seconds, 1), "last_line": last})
        print(f"[{i}/{len(runs)}] {'caught ' if red else 'SURVIVED' if mistake else 'green  '} {seconds:6.0f} s  {name}: {last}",
              flush=True)
    caught = sum(r["suite_red"] for r in results if r["file"])
    total = sum(1 for r in results if r["file"])
    minutes = (time.perf_counter() - started) / 60
    print(f"score: {caught}/{total} planted mistakes turn the suite red ({minutes:.1f} min)")
    if opts.out:
        Path(opts.out).write_text(json.dumps({"score": f"{caught}/{total}", "minutes": round(minutes, 1), "fast": opts.fast,
                                              "results": results}, indent=1))
    return 0 if all(r["as_expected"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
