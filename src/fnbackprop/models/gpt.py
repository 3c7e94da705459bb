"""A GPT-2-style language model whose whole backward pass is written by hand (llm.c's `gpt2_backward`).

    idx (m, T) -> x0 = wte[idx] + wpe[:T]                              embedding (+ dropout)
    for each block l:  x <- x + attn(ln_1(x));  x <- x + mlp(ln_2(x))   pre-layer-norm residual blocks
                       mlp(h) = dropout(c_proj(gelu(c_fc(h)))), c_fc 4C wide
    logits = ln_f(x) wte^T                                              the head tied to the embedding
    C = -(1 / (m T)) sum_{n,t} log softmax(logits[n, t])[targets[n, t]]

The backward runs the same steps in reverse: dlogits = (softmax - onehot) / (m T) (the fused rule of
`fnbackprop.losses`), then ln_f, then the blocks from last to first, each residual connection adding
its branch's gradient to the stream's (dx <- dx + ln^T branch^T dx), then the embedding. wte is used
twice (embedding and head), so by the fan-out rule its gradient is the sum of both uses' gradients.

    model = fb.gpt(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    params = model.init(jax.random.PRNGKey(0))
    loss, grads = model.value_and_grad(params, idx, targets)     # the hand-written backward
    jax.grad(model.loss)(params, idx, targets)                   # autodiff of the same forward
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..activations import ACTIVATIONS
from ..layers import activation, dense, dropout as dropout_layer, layer_norm
from ..layers.attention import GPT2_STD, positive_integer, attention_backward, attention_forward, embedding
from ..losses import LOSSES, Head, chunked_softmax_cross_entropy

Array = jax.Array
Params = Any

HEAD = Head(ACTIVATIONS["softmax"], LOSSES["cross_entropy"])
MATMUL_DTYPES = (None, "float32", "bfloat16")  # what `GPT.matmul_dtype` may be


@dataclass(frozen=True)
class Trace:
    """One hand-written forward and backward: the loss, the parameter gradients, and the intermediates
    the checker compares with autodiff: dC/dx entering each block and ln_f (`residual`, n_layer + 1 of
    them) and dC/dP of each block's attention probabilities (`probs`)."""

    loss: Array
    grads: Params
    residual: list
    probs: list


@dataclass(frozen=True)
class GPT:
    """GPT-2 with nanoGPT's options: `bias` in the linear maps and layer norms, `dropout` on the
    embedding, the attention probabilities and each residual branch's output (training only, with a key).

    Memory savers of the hand-written backward (the forward's function is unchanged): `attention_block`
    runs attention over key blocks and recomputes its probabilities in the backward (no (T x T) array;
    `Trace.probs` is then empty), `head_chunk` computes the head's logits, loss and gradients that many
    rows at a time (no (m T x vocab) array; `fnbackprop.losses.chunked_softmax_cross_entropy`), and
    `recompute_gelu` keeps neither GELU's input nor its output (two (m, T, 4C) arrays per block) for the
    backward, which computes them again from the MLP's input, as llm.c's `-r 1` does. `recompute_norm` keeps
    each layer norm's input (the residual stream) instead of its normalised values xhat and its output h, the
    next linear map's input (llm.c's `-r 2`): the backward computes xhat = (x - mu) / sqrt(var + eps) and
    h = gamma xhat + beta again, one (m, T, C) array kept per layer norm instead of two.

    On XLA's CPU backend the two recomputations save nothing: optimisation barriers are expanded before
    common-subexpression elimination, which merges the recomputation back into the forward (the same
    happens to `jax.checkpoint` there). Measured at 4 x 128, context 1,024, batch 8: 902 MiB of temporaries
    plain and with recompute_norm, 966 with recompute_gelu; 380 with attention_block 32 and head_chunk 256.

    `matmul_dtype` "bfloat16" is mixed precision: the products of each block's four linear maps (c_attn, attention's
    c_proj, c_fc, the MLP's c_proj), forward and for dx, take their operands rounded to bfloat16 and sum them in
    the parameters' dtype (`fnbackprop.layers.dense.matmul`); their dW products (`dense_backward`: no bfloat16
    kernel on XLA's CPU backend for them), the parameters, the optimizer, the element-wise
    steps, attention's core and the tied head stay as they are. None (the default) multiplies in the operands' own
    dtype. The equations are the same; only their operands are rounded."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    bias: bool = False
    dropout: float = 0.0
    attention_block: int | None = None
    head_chunk: int | None = None
    recompute_gelu: bool = False
    recompute_norm: bool = False
    matmul_dtype: str | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            positive_integer(getattr(self, name), f"gpt: {name}")
        if self.n_embd % self.n_head:
            raise ValueError(f"gpt: n_head={self.n_head} must divide n_embd={self.n_embd}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"gpt: dropout must lie in [0, 1), got {self.dropout}")
        for name in ("attention_block", "head_chunk"):
            if getattr(self, name) is not None:
                positive_integer(getattr(self, name), f"gpt: {name}")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"gpt: matmul_dtype must be one of {', '.join(map(str, MATMUL_DTYPES))}, got {self.matmul_dtype!r}")
        if self.attention_block is not None and self.dropout > 0:
            raise ValueError("gpt: blockwise attention (attention_block) stores no probabilities to drop out: use dropout=0")

    # ----- the layers, each with its forward beside its backward in `fnbackprop.layers` -------------------
    @functools.cached_property
    def _layers(self) -> dict:
        C = self.n_embd
        return {"embedding": embedding(self.vocab_size, self.block_size, C), "ln": layer_norm(bias=self.bias),
                "c_fc": dense(4 * C, bias=self.bias, dtype=self.matmul_dtype), "gelu": activation("gelu"),
                "c_proj": dense(C, bias=self.bias, dtype=self.matmul_dtype),
                "dropout": dropout_layer(self.dropout)}

    def init(self, key: Array, dtype: Any = jnp.float32) -> Params:
        """GPT-2's init: every weight N(0, 0.02^2), the residual branches' output projections (attn and
        mlp c_proj) N(0, (0.02 / sqrt(2 n_layer))^2), biases 0, layer norms' gain 1. Compiled as one
        function (drawn op by op, each weight's shape would compile its own random kernel)."""
        return jax.jit(self._init, static_argnums=1)(key, jnp.dtype(dtype))

    def _init(self, key: Array, dtype: Any) -> Params:
        L, C = self._layers, self.n_embd
        k_emb, *k_blocks = jax.random.split(key, self.n_layer + 1)
        proj_std = GPT2_STD / math.sqrt(2 * self.n_layer)

        def linear(k: Array, n_out: int, n_in: int, std: float) -> dict:
            return {"W": std * jax.random.normal(k, (n_out, n_in), jnp.float32), **({"b": jnp.zeros((n_out,))} if self.bias else {})}

        def block(k: Array) -> dict:
            k1, k2, k3, k4 = jax.random.split(k, 4)
            return {"ln_1": L["ln"].init(k, (C,)),
                    "attn": {"c_attn": linear(k1, 3 * C, C, GPT2_STD), "c_proj": linear(k2, C, C, proj_std)},
                    "ln_2": L["ln"].init(k, (C,)),
                    "mlp": {"c_fc": linear(k3, 4 * C, C, GPT2_STD), "c_proj": linear(k4, C, 4 * C, proj_std)}}

        params = {**L["embedding"].init(k_emb), "h": [block(k) for k in k_blocks], "ln_f": L["ln"].init(key, (C,))}
        return jax.tree_util.tree_map(lambda a: a.astype(dtype), params)

    def n_params(self, params: Params, embeddings: bool = False) -> int:
        """Parameters, without the position embedding unless `embeddings` (nanoGPT's count)."""
        total = sum(a.size for a in jax.tree_util.tree_leaves(params))
        return total if embeddings else total - params["wpe"].size

    # ----- forward ----------------------------------------------------------------------------------------
    def _keys(self, key: Array | None) -> tuple:
        """One key for the embedding's dropout, then (attention, mlp) per block; all None without a key."""
        if key is None or self.dropout == 0:
            return None, [(None, None)] * self.n_layer
        keys = jax.random.split(key, 2 * self.n_layer + 1)
        return keys[0], [(keys[1 + 2 * i], keys[2 + 2 * i]) for i in range(self.n_layer)]

    def _forward(self, params: Params, idx: Array, key: Array | None, probes: dict | None = None) -> tuple[Array, dict]:
        """h_f = ln_f(x) (the head's input, logits = h_f wte^T) and every cache; `probes` (zeros added to each block's input stream, ln_f's input and each
        attention's P) let autodiff report the intermediates `trace` computes by hand."""
        L = self._layers
        idx = self._check_idx(idx)
        k_emb, k_blocks = self._keys(key)
        x, c_emb = L["embedding"].forward({"wte": params["wte"], "wpe": params["wpe"]}, idx)
        x, c_drop = L["dropout"].forward({}, x, k_emb)
        caches = {"embedding": c_emb, "dropout": c_drop, "h": []}
        for i, (p, (k_attn, k_mlp)) in enumerate(zip(params["h"], k_blocks)):
            if probes is not None:
                x = x + probes["residual"][i]
            x_ln1 = x
            h, c_ln1 = L["ln"].forward(p["ln_1"], x)
            a, c_attn = attention_forward(p["attn"], h, self.n_head, self.dropout, k_attn,
                                          None if probes is None else probes["probs"][i], self.attention_block,
                                          dtype=self.matmul_dtype)
            x = x + a
            x_ln2 = x
            h, c_ln2 = L["ln"].forward(p["ln_2"], x)
            f, c_fc = L["c_fc"].forward(p["mlp"]["c_fc"], h)
            f, c_gelu = L["gelu"].forward({}, f)
            f, c_proj = L["c_proj"].forward(p["mlp"]["c_proj"], f)
            f, c_mdrop = L["dropout"].forward({}, f, k_mlp)
            x = x + f
            if self.recompute_gelu:  # c_fc's cache (the MLP's input) is enough to compute them again
                c_gelu = c_proj = None
            if self.recompute_norm:  # each layer norm's input stands for its cache and the next map's input
                c_ln1, c_attn, c_ln2, c_fc = x_ln1, (None, *c_attn[1:]), x_ln2, None
            caches["h"].append((c_ln1, c_attn, c_ln2, c_fc, c_gelu, c_proj, c_mdrop))
        if probes is not None:
            x = x + probes["residual"][self.n_layer]
        h, caches["ln_f"] = L["ln"].forward(params["ln_f"], x)
        return h, caches

    def apply(self, params: Params, idx: Array, key: Array | None = None) -> Array:
        """The logits (m, T, vocab_size) for tokens idx (m, T); dropout only with a key."""
        return self._forward(params, idx, key)[0] @ params["wte"].T

    def loss(self, params: Params, idx: Array, targets: Array, key: Array | None = None) -> Array:
        """The mean cross-entropy over all m x T positions (differentiate this with jax.grad)."""
        logits = self.apply(params, idx, key)
        return HEAD.cost(logits.reshape(-1, self.vocab_size), self._onehot(targets, idx, logits.dtype))

    def probed_loss(self, params: Params, idx: Array, targets: Array, probes: dict, key: Array | None = None) -> Array:
        """`loss` with zero probes added: d/dprobes is autodiff's version of `Trace.residual` and `Trace.probs`."""
        logits = self._forward(params, idx, key, probes)[0] @ params["wte"].T
        return HEAD.cost(logits.reshape(-1, self.vocab_size), self._onehot(targets, idx, logits.dtype))

    def zero_probes(self, idx: Array, dtype: Any = jnp.float32) -> dict:
        m, T = idx.shape
        return {"residual": [jnp.zeros((m, T, self.n_embd), dtype) for _ in range(self.n_layer + 1)],
                "probs": [jnp.zeros((m, self.n_head, T, T), dtype) for _ in range(self.n_layer)]}

    # ----- backward: the forward's steps in reverse ---------------------------------------------------------
    def trace(self, params: Params, idx: Array, targets: Array, key: Array | None = None) -> Trace:
        """The hand-written forward and backward, with the intermediates (see `Trace`)."""
        L = self._layers
        h_f, caches = self._forward(params, idx, key)
        loss, dh_f, dwte_head = self._head(params["wte"], h_f, targets, idx)
        g_lnf, dx = L["ln"].backward(params["ln_f"], caches["ln_f"], dh_f)
        residual, probs, g_blocks = [dx], [], []
        for p, (c_ln1, c_attn, c_ln2, c_fc, c_gelu, c_proj, c_mdrop) in zip(reversed(params["h"]), reversed(caches["h"])):
            if self.recompute_norm:  # h = ln_2(x) again from the stored x, tied to dx like GELU's recomputation
                x_ln2, dx = jax.lax.optimization_barrier((c_ln2, dx))
                c_fc, c_ln2 = L["ln"].forward(p["ln_2"], x_ln2)  # c_fc's cache is its input, h
            if c_gelu is None:  # recompute_gelu: z = c_fc(h) and a = gelu(z) again. The barrier ties h to dx, so XLA
                h_again, dx = jax.lax.optimization_barrier((c_fc, dx))  # neither merges this with the forward's
                # computation nor runs it before the backward reaches this block (jax.checkpoint does the same)
                _, c_gelu = L["gelu"].forward({}, L["c_fc"].forward(p["mlp"]["c_fc"], h_again)[0])
                c_proj = c_gelu[1]  # c_proj's cache is its input, a
            _, df = L["dropout"].backward({}, c_mdrop, dx)  # x <- x + mlp(ln_2(x)): the branch's gradient adds to dx
            g_proj, df = L["c_proj"].backward(p["mlp"]["c_proj"], c_proj, df)
            _, df = L["gelu"].backward({}, c_gelu, df)
            g_fc, df = L["c_fc"].backward(p["mlp"]["c_fc"], c_fc, df)
            g_ln2, dh = L["ln"].backward(p["ln_2"], c_ln2, df)
            dx = dx + dh
            if self.recompute_norm:  # h = ln_1(x) again, c_attn's input
                x_ln1, dx = jax.lax.optimization_barrier((c_ln1, dx))
                h, c_ln1 = L["ln"].forward(p["ln_1"], x_ln1)
                c_attn = (h, *c_attn[1:])
            g_attn, da, dP = attention_backward(p["attn"], c_attn, dx, self.attention_block, self.matmul_dtype)  # x <- x + attn(ln_1(x))
            g_ln1, dh = L["ln"].backward(p["ln_1"], c_ln1, da)
            dx = dx + dh
            g_blocks.append({"ln_1": g_ln1, "attn": g_attn, "ln_2": g_ln2, "mlp": {"c_fc": g_fc, "c_proj": g_proj}})
            residual.append(dx)
            if dP is not None:
                probs.append(dP)
        _, dx = L["dropout"].backward({}, caches["dropout"], dx)
        g_emb, _ = L["embedding"].backward({"wte": params["wte"], "wpe": params["wpe"]}, caches["embedding"], dx)
        grads = {"wte": tied_sum(g_emb["wte"], dwte_head),
                 "wpe": g_emb["wpe"], "h": g_blocks[::-1], "ln_f": g_lnf}
        return Trace(loss, grads, residual[::-1], probs[::-1])

    def _head(self, wte: Array, h_f: Array, targets: Array, idx: Array) -> tuple[Array, Array, Array]:
        """(C, dC/dh_f, the head's share of dC/dwte) for logits = h_f wte^T: the fused rule
        dlogits = (softmax - onehot) / (m T), dh_f = dlogits wte, dwte = dlogits^T h_f; chunked with head_chunk."""
        rows = h_f.reshape(-1, self.n_embd)
        if self.head_chunk is not None:
            self._check_targets(targets, idx)
            loss, dh, dwte = chunked_softmax_cross_entropy(rows, wte, targets.reshape(-1), self.head_chunk)
            return loss, dh.reshape(h_f.shape), dwte
        z, Y = rows @ wte.T, self._onehot(targets, idx, h_f.dtype)
        dz = HEAD.backward(z, Y)
        return HEAD.cost(z, Y), (dz @ wte).reshape(h_f.shape), dz.T @ rows

    def value_and_grad(self, params: Params, idx: Array, targets: Array, key: Array | None = None) -> tuple[Array, Params]:
        """(C, dC/dparams) by the hand-written backward."""
        t = self.trace(params, idx, targets, key)
        return t.loss, t.grads

    @functools.cached_property
    def hand_loss(self):
        """C(params, idx, targets, key) as a `jax.custom_vjp` whose backward is the hand-written one."""

        @jax.custom_vjp
        def hand_loss(params: Params, idx: Array, targets: Array, key: Array | None = None) -> Array:
            return self.loss(params, idx, targets, key)

        def fwd(params, idx, targets, key=None):
            loss, grads = self.value_and_grad(params, idx, targets, key)
            return loss, (grads, idx, targets, key)

        def bwd(res, g):
            grads, idx, targets, key = res
            zero = (None if key is None else _float0(key))
            return jax.tree_util.tree_map(lambda a: g * a, grads), _float0(idx), _float0(targets), zero

        hand_loss.defvjp(fwd, bwd)
        return hand_loss

    # ----- inputs -----------------------------------------------------------------------------------------
    def _check_idx(self, idx: Array) -> Array:
        if idx.ndim != 2:
            raise ValueError(f"gpt: tokens must be (m, T) integers, got shape {tuple(idx.shape)}")
        if not jnp.issubdtype(idx.dtype, jnp.integer):
            raise ValueError(f"gpt: tokens must be integers, got {idx.dtype}")
        if idx.shape[1] > self.block_size:
            raise ValueError(f"gpt: a sequence of {idx.shape[1]} tokens is longer than block_size={self.block_size}")
        return idx

    def _check_targets(self, targets: Array, idx: Array) -> None:
        if targets.shape != idx.shape:
            raise ValueError(f"gpt: targets {tuple(targets.shape)} must have the tokens' shape {tuple(idx.shape)}")

    def _onehot(self, targets: Array, idx: Array, dtype: Any) -> Array:
        self._check_targets(targets, idx)
        return jax.nn.one_hot(targets.reshape(-1), self.vocab_size, dtype=dtype)


def tied_sum(*uses: Array) -> Array:
    """The gradient of a parameter used in several places: the sum of each use's gradient (the fan-out
    rule of Lei's notes); here wte's as the embedding table and as the head's weight."""
    return functools.reduce(jnp.add, uses)


def _float0(a: Array) -> Any:
    """The cotangent of an integer input (tokens, targets, a PRNG key): float0 zeros."""
    return np.zeros(np.shape(a), dtype=jax.dtypes.float0)


def gpt(vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, bias: bool = False,
        dropout: float = 0.0, attention_block: int | None = None, head_chunk: int | None = None,
        recompute_gelu: bool = False, recompute_norm: bool = False, matmul_dtype: str | None = None) -> GPT:
    """A GPT-2-style model with a hand-written backward (`GPT`)."""
    return GPT(vocab_size, block_size, n_layer, n_head, n_embd, bias, dropout, attention_block, head_chunk, recompute_gelu,
               recompute_norm, matmul_dtype)
