"""The exercises: for each, the reference forward built from the package's own layers and losses (what
a student's forward must compute), progressive hints, and the typical slips the grader names.

A slip is an edit of the reference solution's source (`solutions/NAME.py`): the grader runs the edited
backward at the check's point, and a student gradient equal to it gets the slip's words. The slips
complete the checker's generic kinds (scale, sign, transpose, broadcast-sum, swapped, a missing or
wrong g', ...), which need no listing here.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


from ..layers import (activation, batch_norm, causal_self_attention, conv2d, dense_forward, dropout, embedding, gru, layer_norm,
                      lstm, max_pool, rnn, softmax)
from ..activations import ACTIVATIONS
from ..losses import LOSSES, Head

#: examples per batch in every check (the number a student's missing or extra 1/m shows as)
BATCH = 8
#: the `embedding` exercise's vocabulary, block size and width (solutions/embedding.py has the same)
VOCAB, BLOCK_SIZE, N_EMBD = 5, 4, 3


class Slip(NamedTuple):
    """A typical mistake: `old` replaced by `new` in the reference solution's source."""

    kind: str
    words: str
    old: str
    new: str


class Exercise(NamedTuple):
    """One derive-it-yourself exercise.

    `inputs`: "layer" (forward(params, x)), "cost" (forward(params, x, y), targets drawn by the
    grader), "stochastic" (forward(params, x, key)) or "tokens" (forward(params, idx), integers).
    `reference(params, x, extra)`: the output the file's forward must reproduce (extra: the targets,
    the key or the tokens). `input_gradient`: what the exercise calls the gradient of its input."""

    name: str
    title: str
    in_shape: tuple
    reference: Callable[[Any, Any, Any], Any]
    hints: tuple
    slips: tuple = ()
    inputs: str = "layer"
    input_gradient: str = "dx"


def _layer_output(layer: Any) -> Callable:
    return lambda params, x, extra: layer.forward(params, x)[0]


#: the recurrent exercises' hidden units (solutions/rnn_step.py, gru_step.py, lstm_step.py, bptt.py, lstm.py have the same)
HIDDEN = 3


def _step_reference(layer: Any, states: int) -> Callable:
    """One step of the package's recurrent `layer` on x = [x_t, h_{t-1}] (states = 1) or [x_t, h_{t-1}, c_{t-1}]
    (states = 2, the LSTM, whose output is then [h_t, c_t])."""
    def reference(params: Any, x: Any, extra: Any) -> Any:
        import jax.numpy as jnp

        C = x.shape[-1] - states * HIDDEN
        parts = [x[:, C + k * HIDDEN: C + (k + 1) * HIDDEN] for k in range(states)]
        _, final, _ = layer.scan(params, x[:, None, :C], tuple(parts) if states == 2 else parts[0])
        return jnp.concatenate(final, axis=-1) if states == 2 else final
    return reference


def _residual_reference(params: dict, x: Any, extra: Any) -> Any:
    """y = x + dense2(tanh(dense1(x))), from the package's dense_forward and tanh."""
    z1, _ = dense_forward({"W": params["W1"], "b": params["b1"]}, x)
    h, _ = activation("tanh").forward({}, z1)
    return x + dense_forward({"W": params["W2"], "b": params["b2"]}, h)[0]


_UPSTREAM = ("your {grad} leaves out {up}, the gradient arriving from above: the chain rule multiplies this step's local "
             "derivative by it")
_SEED = "your {grad} leaves out dC, the seed the backward is called with: every gradient of C is multiplied by it"
_NORM_SIGN = "your dx has the sign of the path through the {what} flipped: that path is subtracted"
_NORM_MEAN = ("your dx takes a mean where the path through the {what} has a sum (the 1/{n} is already in front): "
              "it is {n} times too small")
_AT_OUTPUT = "your dz evaluates the derivative at the output a, which is already g(z): the derivative belongs at the input z"
_CHAIN = "The chain rule: each gradient is the upstream gradient times this step's local derivative."
_NORM_SLIPS = {
    "mean term": "your dx leaves out the path through the mean mu: mu is computed from every x_i, so each x_i also moves "
                 "every output through mu",
    "variance term": "your dx leaves out the path through the variance: var is computed from every x_i, so each x_i also "
                     "moves every output through var",
    "constants": "your dx treats the mean and the variance as constants: they are computed from x, and a gradient flows "
                 "through both",
}

EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    Exercise("dense", "a fully connected layer: dW, db and dx", (6,), lambda p, x, extra: dense_forward(p, x)[0], (
        "Write down the shapes first: dW has W's shape (n_out, n_in), db has b's shape (n_out,), dx has x's shape (m, n_in).",
        "Work with one example and one entry: y_k = sum_j W_kj x_j + b_k. What is dy_k/dW_kj? Then sum over the examples.",
        "dy already carries the cost's 1/m: the sums over the batch in this layer need no other factor.",
        "Every gradient here is a product of dy with one of the forward's other factors; the shapes tell you the order.")),
    Exercise("sigmoid", "the logistic activation: dz", (6,), _layer_output(activation("sigmoid")), (
        "dz has the shape of z; the step is elementwise, so dz_ij depends on da_ij and z_ij only.",
        "Differentiate 1 / (1 + e^-z) with the quotient (or chain) rule.",
        "Write sigma'(z) in terms of sigma(z) itself: the forward caches a = sigma(z)."),
        (Slip("derivative at the output", _AT_OUTPUT, "a * (1 - a)", "(1 / (1 + jnp.exp(-a))) * (1 - 1 / (1 + jnp.exp(-a)))"),
         Slip("upstream gradient left out", _UPSTREAM.format(grad="dz", up="da"), "dz = da * a * (1 - a)", "dz = a * (1 - a)")), input_gradient="dz"),
    Exercise("tanh", "the hyperbolic tangent activation: dz", (6,), _layer_output(activation("tanh")), (
        "dz has the shape of z; the step is elementwise.",
        "tanh = sinh / cosh: differentiate with the quotient rule and use cosh^2 - sinh^2 = 1.",
        "Write tanh'(z) in terms of tanh(z): the forward caches a = tanh(z)."),
        (Slip("derivative at the output", _AT_OUTPUT, "(1 - a ** 2)", "(1 - jnp.tanh(a) ** 2)"),
         Slip("derivative in terms of the wrong variable",
              "your dz writes the derivative's formula in terms of z where that formula takes the output a", "(1 - a ** 2)",
              "(1 - z ** 2)"),
         Slip("upstream gradient left out", _UPSTREAM.format(grad="dz", up="da"), "dz = da * (1 - a ** 2)", "dz = 1 - a ** 2")), input_gradient="dz"),
    Exercise("relu", "the rectified linear unit: dz", (6,), _layer_output(activation("relu")), (
        "relu has two pieces: z > 0 and z < 0. What is the slope of each?",
        "The gradient passes through where the unit is active and stops where it is not."),
        (Slip("wrong mask", "your dz lets the gradient through where z < 0: relu passes it only where the unit is active (z > 0)",
              "(z > 0)", "(z < 0)"),
         Slip("upstream gradient left out", _UPSTREAM.format(grad="dz", up="da"), "dz = da * (z > 0)", "dz = 1.0 * (z > 0)")), input_gradient="dz"),
    Exercise("softmax", "softmax on its own: dz", (5,), _layer_output(softmax()), (
        "Each a_k depends on every z_j of its row: dz_j = sum_k da_k da_k/dz_j, a sum over the whole row.",
        "Derive da_k/dz_j in two cases, j = k and j != k; both are products of a's.",
        "Put the two cases together with the indicator 1[j = k], then carry out the sum over k."),
        (Slip("diagonal only", "your dz keeps only the diagonal of the softmax Jacobian (da_j/dz_j): every a_k of the row "
              "depends on z_j too", "a * (da - jnp.sum(da * a, axis=-1, keepdims=True))", "a * (1 - a) * da"),
         Slip("diagonal only", "your dz keeps only the diagonal of the softmax Jacobian, and only its first factor: every "
              "a_k of the row depends on z_j", "a * (da - jnp.sum(da * a, axis=-1, keepdims=True))", "a * da"),
         Slip("sign of a term", "your dz adds the term that couples the row where it is subtracted: check the sign of "
              "da_k/dz_j for j != k", "(da - jnp.sum(", "(da + jnp.sum("),
         Slip("sum over the wrong axis", "your dz sums over the examples (axis 0): softmax couples the entries of one row, "
              "so the sum runs over the row", "jnp.sum(da * a, axis=-1, keepdims=True)", "jnp.sum(da * a, axis=0, keepdims=True)")), input_gradient="dz"),
    Exercise("softmax_cross_entropy", "softmax with the cross-entropy cost: dz", (5,),
             lambda p, x, y: Head(ACTIVATIONS["softmax"], LOSSES["cross_entropy"]).cost(x, y), (
        "Differentiate C with respect to z directly, through the softmax: the combination is simpler than either part.",
        "log a_ij = z_ij - log sum_k exp(z_ik): differentiate that with respect to z_ij and z_il.",
        "Use sum_j y_ij = 1 (one-hot rows).",
        "C averages over the batch: where does its 1/m go? dC is the seed, a scalar multiplying everything."),
        (Slip("missing derivative", "your dz is dC/da, the gradient with respect to the softmax's output a: the softmax's "
              "own derivative is missing (dz needs the path through a = softmax(z))", "dC * (a - y) / m", "dC * (-y / a) / m"),
         Slip("seed left out", _SEED.format(grad="dz"), "dz = dC * (a - y) / m", "dz = (a - y) / m")),
        inputs="cost", input_gradient="dz"),
    Exercise("quadratic_cost", "Nielsen's quadratic cost: da", (5,), lambda p, a, y: LOSSES["quadratic"].cost(a, y), (
        "Differentiate one example's term (1/2) ||a_i - y_i||^2 with respect to a_i first.",
        "Then the constants: the 1/2 and the derivative of the square; and the 1/m of the average.",
        "dC is the seed, a scalar multiplying everything."),
        (Slip("seed left out", _SEED.format(grad="da"), "da = dC * (a - y) / m", "da = (a - y) / m"),), inputs="cost", input_gradient="da"),
    Exercise("dropout", "inverted dropout: dx", (6,), lambda p, x, key: dropout(0.5).forward(p, x, key)[0], (
        "The mask is a constant once drawn: y is x times a fixed number per entry.",
        "Which number multiplies x_ij in the forward? The same one multiplies dy_ij in the backward."),
        (Slip("missing scale", "your dx drops the right units but leaves out the 1/(1 - rate) the forward multiplied by",
              "dy * mask / (1 - RATE)", "dy * mask"),),
        inputs="stochastic"),
    Exercise("batch_norm", "batch normalisation: dgamma, dbeta and dx", (5,), _layer_output(batch_norm()), (
        "dgamma and dbeta come first and are short: y = gamma xhat + beta, summed over the examples (gamma is shared).",
        "Then dxhat = dC/dxhat. x reaches xhat directly, through mu and through var: three paths.",
        "Compute dvar = dC/dvar and dmu = dC/dmu as sums over the batch (the m examples), then add the three paths.",
        "Simplify with sum_i xhat_i = 0 and (1/m) sum_i xhat_i^2 = var / (var + eps)."),
        (Slip("missing term", _NORM_SLIPS["mean term"], " - jnp.sum(dxhat, axis=0) - ", " - "),
         Slip("missing term", _NORM_SLIPS["variance term"], " - xhat * jnp.sum(dxhat * xhat, axis=0))", ")"),
         Slip("missing term", _NORM_SLIPS["constants"], "dx = inv_std / m * (m * dxhat - jnp.sum(dxhat, axis=0) - xhat * "
              "jnp.sum(dxhat * xhat, axis=0))", "dx = inv_std * dxhat"),
         Slip("missing gamma", "your dx leaves gamma out of dC/dxhat: y = gamma xhat + beta, so dxhat is dy times gamma",
              "dxhat = dy * params[\"gamma\"]", "dxhat = dy"),
         Slip("sign of a term", _NORM_SIGN.format(what="mean"), "- jnp.sum(dxhat, axis=0) -", "+ jnp.sum(dxhat, axis=0) -"),
         Slip("sign of a term", _NORM_SIGN.format(what="variance"), "- xhat * jnp.sum(dxhat * xhat, axis=0))",
              "+ xhat * jnp.sum(dxhat * xhat, axis=0))"),
         Slip("mean where a sum belongs", _NORM_MEAN.format(what="mean", n="m"), "- jnp.sum(dxhat, axis=0) -", "- jnp.mean(dxhat, axis=0) -"),
         Slip("mean where a sum belongs", _NORM_MEAN.format(what="variance", n="m"), "- xhat * jnp.sum(dxhat * xhat, axis=0))",
              "- xhat * jnp.mean(dxhat * xhat, axis=0))"),
         Slip("sum over the wrong axis", "your dx sums over the features (axis 1) where the batch statistics sum over the "
              "examples (axis 0)", "dx = inv_std / m * (m * dxhat - jnp.sum(dxhat, axis=0) - xhat * jnp.sum(dxhat * xhat, axis=0))",
              "dx = inv_std / m * (m * dxhat - jnp.sum(dxhat, axis=1, keepdims=True) - xhat * jnp.sum(dxhat * xhat, axis=1, "
              "keepdims=True))"))),
    Exercise("layer_norm", "layer normalisation: dgamma, dbeta and dx", (5,), _layer_output(layer_norm()), (
        "dgamma and dbeta: gamma and beta are shared by every example, so their gradients sum over the examples.",
        "dx: batch norm's derivation with the roles of the axes swapped: mu_i and var_i come from example i's n features.",
        "So the sums in dx run over the features (the last axis), one per example, and the factor is 1/n, not 1/m."),
        (Slip("missing term", _NORM_SLIPS["mean term"], " - jnp.sum(dxhat, axis=-1, keepdims=True)\n", "\n"),
         Slip("missing term", _NORM_SLIPS["variance term"], "- xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True))", ")"),
         Slip("sum over the wrong axis", "your dx sums over the examples (axis 0) where layer norm's statistics sum over "
              "each example's features (the last axis)", "jnp.sum(dxhat, axis=-1, keepdims=True)\n                        "
              "- xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True)",
              "jnp.sum(dxhat, axis=0)\n                        - xhat * jnp.sum(dxhat * xhat, axis=0)"),
         Slip("missing gamma", "your dx leaves gamma out of dC/dxhat: y = gamma xhat + beta, so dxhat is dy times gamma",
              "dxhat = dy * params[\"gamma\"]", "dxhat = dy"),
         Slip("sign of a term", _NORM_SIGN.format(what="mean"), "(n * dxhat - jnp.sum(", "(n * dxhat + jnp.sum("),
         Slip("sign of a term", _NORM_SIGN.format(what="variance"), "- xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True))",
              "+ xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True))"),
         Slip("mean where a sum belongs", _NORM_MEAN.format(what="mean", n="n"),
              "(n * dxhat - jnp.sum(dxhat, axis=-1, keepdims=True)", "(n * dxhat - jnp.mean(dxhat, axis=-1, keepdims=True)"),
         Slip("mean where a sum belongs", _NORM_MEAN.format(what="variance", n="n"),
              "- xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True))", "- xhat * jnp.mean(dxhat * xhat, axis=-1, keepdims=True))"))),
    Exercise("residual", "a residual block with a tanh inside: every gradient", (5,), _residual_reference, (
        "Name the intermediates: z1 = x W1^T + b1, h = tanh(z1), f = h W2^T + b2, y = x + f.",
        "Go backwards one step at a time: df = dy, then dW2, db2 and dh as for a dense layer; then dz1 through the tanh.",
        "x is used twice: the gradients of both uses add up."),
        (Slip("missing path", "your dx leaves out the skip path: y = x + f(x), and the x outside f also reaches y",
              "dx = dy + dz1 @ params[\"W1\"]", "dx = dz1 @ params[\"W1\"]"),
         Slip("missing path", "your dx keeps only the skip path: the x inside f(x) reaches y too",
              "dx = dy + dz1 @ params[\"W1\"]", "dx = dy"),
         Slip("sign of a path", "your dx subtracts the path through f: the two paths' gradients add",
              "dx = dy + dz1 @ params[\"W1\"]", "dx = dy - dz1 @ params[\"W1\"]"),
         Slip("sign of a path", "your dx subtracts the skip path: the two paths' gradients add",
              "dx = dy + dz1 @ params[\"W1\"]", "dx = dz1 @ params[\"W1\"] - dy"))),
    Exercise("conv2d", "a 2-D convolution, stride 1, no padding: dW, db and dx", (6, 6, 2), _layer_output(conv2d(3, 3, impl="xla")), (
        "db: the bias is added at every output position of every image.",
        "dW[i, j] is a C x F matrix: the window of x at offset (i, j) meets dz there, summed over the images and positions.",
        "dx: each offset's window of x received dz @ W[i, j]^T; windows overlap, so their contributions add up."),
        (Slip("overwritten sums", "your dx overwrites where it should accumulate: the windows of x at different offsets "
              "overlap, and each pixel sums the gradients of every window it is in",
              "dx = dx.at[:, i:i + ho, j:j + wo, :].add(", "dx = dx.at[:, i:i + ho, j:j + wo, :].set("),)),
    Exercise("max_pool", "2 x 2 max pooling, stride 2: dx", (4, 4, 2), _layer_output(max_pool(2)), (
        "y is one entry of its window: which entry of x moves y when it moves a little?",
        "The other three entries of a window do not change y at all."),
        (Slip("gradient to every entry", "your dx sends dy to every entry of the window: only the entry that made the "
              "maximum affects y", "dwindows = is_max * dy", "dwindows = (is_max | True) * dy"),
         Slip("averaged", "your dx spreads dy evenly over the window, as average pooling would: only the maximum affects y",
              "dwindows = is_max * dy", "dwindows = 0.25 * (is_max | True) * dy"),
         Slip("wrong mask", "your dx sends dy to the entries that are not the maximum: only the maximum affects y",
              "dwindows = is_max * dy", "dwindows = (~is_max) * dy"))),
    Exercise("attention", "single-head causal self-attention: every gradient", (4, 6),
             _layer_output(causal_self_attention(1)), (
        "Work backwards through y = o W_proj^T, o = P v, P = softmax(s), s = q k^T / sqrt(C), [q k v] = x W_attn^T.",
        "The softmax's backward is the `softmax` exercise, row by row. The masked entries have P = 0: what does that make dS there?",
        "The scale 1 / sqrt(C) multiplies the scores, so it multiplies both dq and dk.",
        "dW_attn and dx take dq, dk, dv side by side, in the order the forward split them."),
        (Slip("missing scale", "your dq and dk leave out the 1/sqrt(C) the scores were multiplied by",
              "dq = ds @ k / jnp.sqrt(c)\n    dk = jnp.swapaxes(ds, -1, -2) @ q / jnp.sqrt(c)",
              "dq = ds @ k\n    dk = jnp.swapaxes(ds, -1, -2) @ q"),
         Slip("diagonal only", "your softmax backward keeps only the diagonal of its Jacobian: every P[t, u] of a row depends on "
              "every score of that row", "ds = P * (dP - jnp.sum(dP * P, axis=-1, keepdims=True))", "ds = P * (1 - P) * dP"),
         Slip("missing derivative", "your backward skips the softmax: dS is not dP, the softmax's Jacobian sits between them",
              "ds = P * (dP - jnp.sum(dP * P, axis=-1, keepdims=True))", "ds = dP"),
         Slip("transpose of dS", "your dk uses dS where its transpose belongs: s[t, u] pairs query t with key u, so key u collects "
              "the column u of dS", "dk = jnp.swapaxes(ds, -1, -2) @ q", "dk = ds @ q"),
         Slip("transpose of dS", "your dq uses the transpose of dS: s[t, u] pairs query t with key u, so query t collects the row t "
              "of dS", "dq = ds @ k", "dq = jnp.swapaxes(ds, -1, -2) @ k"),
         Slip("transpose of P", "your dv uses P where its transpose belongs: o[t] = sum_u P[t, u] v[u], so v[u] collects the column "
              "u of P", "dv = jnp.swapaxes(P, -1, -2) @ do", "dv = P @ do"))),
    Exercise("embedding", "token and position embeddings: dwte and dwpe", (1,), lambda p, x, idx: embedding(VOCAB, BLOCK_SIZE, N_EMBD).forward(p, idx)[0], (
        "Row v of wte is used wherever token v appears: every use contributes dx at that position.",
        "A token used twice gets the sum of both positions' gradients: an assignment keeps only one of them.",
        "wpe[t] is used by every sequence of the batch at position t."),
        (Slip("overwritten sums", "your dwte keeps one use of a repeated token: a row used several times gets the sum of the "
              "gradients of all its uses", ".at[idx].add(dx)", ".at[idx].set(dx)"),),
        inputs="tokens"),
    Exercise("lstm", "backpropagation through time in an LSTM: the weights' gradients and dx", (4, 2), _layer_output(lstm(3)), (
        "Start at the last step and go backwards: at step t you need dC/dh_t and dC/dc_t whole.",
        "h_t feeds the output y_t and the next step: dC/dh_t = dy_t + what step t + 1 sends back through W_hh.",
        "c_t feeds h_t = o tanh(c_t) and the next step's c_{t+1} = f c_t + ...: dC/dc_t has both paths.",
        "Each weight is used at every step: its gradient is the sum of the steps' shares."),
        (Slip("recurrent gradient dropped", "your dh_t leaves out the gradient step t + 1 sends back through W_hh: h_t is also "
              "the next step's input", "dh = dy[:, t] + dh_next", "dh = dy[:, t]"),
         Slip("cell path dropped", "your dc_t leaves out the gradient from step t + 1: c_t is also the next step's c_{t-1}, "
              "through the forget gate", "dc = dc_next + dh", "dc = dh"),
         Slip("derivative for function", "your do multiplies dh by tanh'(c_t) where h_t = o tanh(c_t) has tanh(c_t) itself",
              "do = dh * jnp.tanh(c)", "do = dh * (1 - jnp.tanh(c) ** 2)"),
         Slip("wrong gate in a derivative", "your forget gate's derivative uses the input gate: sigmoid'(a_f) = f (1 - f)",
              "df * f * (1 - f)", "df * i * (1 - i)"),
         Slip("last step only", "your weights' gradients keep only one step's share: each weight is used at every step, so "
              "its gradient sums over time", 'grads["W_hh"] = grads["W_hh"] + da.T @ h_prev', 'grads["W_hh"] = da.T @ h_prev'))),
    Exercise("rnn_step", "one step of a vanilla RNN: the weights' gradients, dx_t and dh_{t-1}", (4 + HIDDEN,),
             _step_reference(rnn(HIDDEN), 1), (
        "h_t = tanh(a): start with dC/da, from dy and the derivative of tanh written with h_t.",
        "a is a sum of two affine maps: W_ih meets x_t, W_hh meets h_{t-1}; both biases get the same gradient.",
        "dC/dh_{t-1} comes back through W_hh exactly as dC/dx_t comes back through W_ih."),
        (Slip("previous state's gradient dropped", "your dC/dh_{t-1} is zero: h_{t-1} enters a through W_hh, so its gradient "
              "comes back through W_hh", 'dh_prev = da @ params["W_hh"]', "dh_prev = 0 * da"),),
        input_gradient="dxh"),
    Exercise("lstm_step", "one step of an LSTM: the weights' gradients, dx_t, dh_{t-1} and dc_{t-1}", (4 + 2 * HIDDEN,),
             _step_reference(lstm(HIDDEN), 2), (
        "dy carries two gradients: dC/dh_t and dC/dc_t. c_t also feeds h_t, so dC/dc_t gets a second share through h_t.",
        "h_t = o tanh(c_t): do takes tanh(c_t) itself, dc takes o tanh'(c_t).",
        "c_t = f c_{t-1} + i g: each of f, i, g gets dc times its partner; c_{t-1} gets dc times f.",
        "Then through each gate's nonlinearity to a, and a's two affine maps as in rnn_step."),
        (Slip("cell output path dropped", "your dc_t leaves out the gradient arriving at c_t itself (the second half of dy): "
              "c_t is an output of the step as well as the input of h_t", "dc = dc_out + dh * o", "dc = dh * o"),
         Slip("derivative for function", "your do multiplies dh by tanh'(c_t) where h_t = o tanh(c_t) has tanh(c_t) itself",
              "do = dh * jnp.tanh(c)", "do = dh * (1 - jnp.tanh(c) ** 2)"),
         Slip("wrong gate in a derivative", "your forget gate's derivative uses the input gate: sigmoid'(a_f) = f (1 - f)",
              "df * f * (1 - f)", "df * i * (1 - i)"),
         Slip("forget gate left out of dc_{t-1}", "your dc_{t-1} is dc_t itself: c_t = f c_{t-1} + i g, so c_{t-1} gets dc_t "
              "times f", "dc_prev = dc * f", "dc_prev = dc")),
        input_gradient="dxhc"),
    Exercise("gru_step", "one step of a GRU: the weights' gradients, dx_t and dh_{t-1}", (4 + HIDDEN,),
             _step_reference(gru(HIDDEN), 1), (
        "h_t = (1 - z) n + z h_{t-1}: dn = dy (1 - z), dz = dy (h_{t-1} - n), and h_{t-1} gets dy z directly.",
        "n = tanh(gi_n + r gh_n): the product r gh_n sends the gradient to r times gh_n, and to gh_n times r.",
        "gi and gh differ only in their n third: gh's carries the factor r, gi's does not.",
        "h_{t-1} has two ways back: the direct z h_{t-1}, and through W_hh into all three gates."),
        (Slip("reset gate outside W_hn h", "your gradient through W_hn h_{t-1} + b_hn leaves out the reset gate r that multiplies "
              "it: in PyTorch's GRU n = tanh(W_in x + b_in + r * (W_hn h + b_hn))",
              "dgh = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)", "dgh = jnp.concatenate([da_r, da_z, da_n], axis=-1)"),
         Slip("direct path dropped", "your dh_{t-1} leaves out the direct path: h_t = (1 - z) n + z h_{t-1} uses h_{t-1} itself, "
              "weighted by z", 'dh_prev = dy * z + dgh @ params["W_hh"]', 'dh_prev = dgh @ params["W_hh"]'),
         Slip("update gate's sign", "your dz has the wrong sign: h_t = (1 - z) n + z h_{t-1}, so dh_t/dz = h_{t-1} - n",
              "dz = dy * (h_prev - n)", "dz = dy * (n - h_prev)")),
        input_gradient="dxh"),
    Exercise("bptt", "backpropagation through time in a vanilla RNN over a whole sequence", (4, 2), _layer_output(rnn(HIDDEN)), (
        "Go through time backwards: step t needs the gradient step t + 1 sends back to h_t.",
        "The whole gradient entering h_t is dy_t plus what came back from step t + 1 through W_hh.",
        "tanh' at step t is 1 - h_t^2, with that step's h_t.",
        "Each weight is used at every step: add each step's share to its gradient."),
        (Slip("recurrent gradient dropped", "your dh_t leaves out the gradient step t + 1 sends back through W_hh: h_t is also "
              "the next step's input", "dh = dy[:, t] + dh_next", "dh = dy[:, t]"),
         Slip("time reversed", "your backward walks forward in time: step t needs what step t + 1 sends back, so go from the last "
              "step to the first", "for t in reversed(range(T)):", "for t in range(T):"),
         Slip("last step only", "your weights' gradients keep only one step's share: each weight is used at every step, so its "
              "gradient sums over time", 'grads["W_hh"] = grads["W_hh"] + da.T @ h_prevs[t]', 'grads["W_hh"] = da.T @ h_prevs[t]'),
         Slip("last step only", "your weights' gradients keep only one step's share: each weight is used at every step, so its "
              "gradient sums over time", 'grads["W_ih"] = grads["W_ih"] + da.T @ x[:, t]', 'grads["W_ih"] = da.T @ x[:, t]'),
         Slip("derivative at the wrong step", "your tanh' is taken at h_{t-1}: step t's derivative is 1 - h_t^2, with its own h_t",
              "da = dh * (1 - hs[t] ** 2)", "da = dh * (1 - h_prevs[t] ** 2)"))),
)}
