"""The memory-saving backward passes: blockwise attention and the chunked cross-entropy head equal the plain
forward's autodiff to float64 rounding (1e-10, the project's tolerance), and the blockwise step stores no T x T array."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb
from fnbackprop.bench.memory import cross_check_process_peak
from fnbackprop.models.gpt import HEAD
from fnbackprop.layers.attention import blockwise_attention, blockwise_attention_backward
from fnbackprop.losses import chunked_softmax_cross_entropy
from fnbackprop.check.numerics import rel_err

FLOAT64 = True  # conftest: the module runs with jax_enable_x64
TOL = 1e-10


def naive_attention(q, k, v):
    """softmax(mask(Q K^T / sqrt(hs))) V, written here from the definition."""
    T, hs = q.shape[2], q.shape[3]
    scores = jnp.einsum("bhtd,bhsd->bhts", q, k) / np.sqrt(hs)
    later = np.triu(np.ones((T, T), bool), 1)
    return jax.nn.softmax(jnp.where(later, -jnp.inf, scores), axis=-1) @ v


# seeds 0, 1, 2 and 5 draw T not a multiple of the block, a block of 1, a block larger than T and T = 1;
# 3 and 4 repeat those cases on other shapes and run with the slow tests (suite time)
@pytest.mark.parametrize("seed", [0, 1, 2, 5, pytest.param(3, marks=pytest.mark.slow), pytest.param(4, marks=pytest.mark.slow)])
def test_blockwise_attention_and_its_backward_equal_autodiff_of_the_naive_one(seed):
    """Random (m, heads, T, hs) and block sizes, including a block larger than T, a block of 1 and T not a multiple."""
    rng = np.random.default_rng(seed)
    m, nh, T, hs = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 13)), int(rng.integers(1, 5))
    block = int(rng.choice([1, 2, 3, 5, 16]))
    q, k, v, do = (jnp.asarray(rng.standard_normal((m, nh, T, hs))) for _ in range(4))
    o, lse = blockwise_attention(q, k, v, block)
    assert rel_err(o, naive_attention(q, k, v)) < TOL
    hand = blockwise_attention_backward(q, k, v, o, lse, do, block)
    for h, a in zip(hand, jax.vjp(naive_attention, q, k, v)[1](do)):
        # floor 1 (the inputs are unit normals): at T = 1 dQ and dK are exactly 0 in autodiff, while the hand
        # form computes dP - D = 0 with a rounding of 1e-18
        assert rel_err(h, a, floor=1.0) < TOL, (m, nh, T, hs, block)


# vocab_chunk: 3 of V 11 and 4 of V 7 leave a last slice overlapping the one before; 5 of 5 divides; 8 > V 3
@pytest.mark.parametrize("N,V,chunk,vocab_chunk", [(13, 11, 4, 3), (8, 5, 8, 5), (3, 7, 16, 4), (10, 3, 1, 8)])
def test_the_chunked_head_equals_autodiff_of_the_plain_one(N, V, chunk, vocab_chunk):
    rng = np.random.default_rng(N)
    h, W = jnp.asarray(rng.standard_normal((N, 6))), jnp.asarray(rng.standard_normal((V, 6)))
    t = jnp.asarray(rng.integers(0, V, N))

    def plain(h, W):
        return HEAD.cost(h @ W.T, jax.nn.one_hot(t, V, dtype=h.dtype))

    loss, dh, dW = chunked_softmax_cross_entropy(h, W, t, chunk, vocab_chunk)
    assert rel_err(loss, plain(h, W)) < TOL
    ref = jax.grad(plain, argnums=(0, 1))(h, W)
    assert rel_err(dh, ref[0]) < TOL and rel_err(dW, ref[1]) < TOL


@pytest.mark.slow  # a whole GPT or a child process: kept out of the quick suite's 6 minutes
def test_a_gpt_with_all_memory_savers_has_the_plain_gpts_gradients():
    saving = fb.gpt(vocab_size=9, block_size=7, n_layer=2, n_head=2, n_embd=8, bias=True, attention_block=3, head_chunk=5,
                    recompute_gelu=True, recompute_norm=True)
    plain = fb.gpt(vocab_size=9, block_size=7, n_layer=2, n_head=2, n_embd=8, bias=True)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape), plain.init(jax.random.PRNGKey(0), jnp.float64))
    idx, targets = jnp.asarray(rng.integers(0, 9, (3, 7))), jnp.asarray(rng.integers(0, 9, (3, 7)))
    loss, grads = jax.jit(saving.value_and_grad)(params, idx, targets)
    ref_loss, ref = jax.jit(jax.value_and_grad(plain.loss))(params, idx, targets)
    assert rel_err(loss, ref_loss) < TOL and rel_err(grads, ref) < TOL


@pytest.mark.slow  # compiles a GPT step per saver
@pytest.mark.parametrize("saver,kept_fewer", [
    ("recompute_norm", lambda m, T, C: 2 * m * T * C + 2 * m * T),  # per block: xhat, 1/std, h of two norms, for x
    ("recompute_gelu", lambda m, T, C: 2 * m * T * 4 * C),          # per block: GELU's input z and output a
])
def test_recomputation_keeps_fewer_arrays_for_the_backward(saver, kept_fewer):
    """What the forward keeps for the hand-written backward (its caches, each array counted once): each layer
    norm's input x instead of its normalised values xhat, its 1/std and its output h (the next map's input);
    and no GELU input or output. XLA's CPU pipeline merges the recomputation back (README), so this is counted
    on the caches, as an accelerator's compiler that keeps the barrier would store them."""
    n_layer, m, T, C = 2, 3, 5, 8
    plain = fb.gpt(vocab_size=7, block_size=T, n_layer=n_layer, n_head=2, n_embd=C)
    saving = fb.gpt(vocab_size=7, block_size=T, n_layer=n_layer, n_head=2, n_embd=C, **{saver: True})
    params = plain.init(jax.random.PRNGKey(0), jnp.float64)
    idx = jnp.asarray(np.random.default_rng(0).integers(0, 7, (m, T)))

    def kept(model):
        leaves = jax.tree_util.tree_leaves(model._forward(params, idx, None)[1])
        return sum(a.size for a in {id(a): a for a in leaves if isinstance(a, jax.Array) and a.dtype == jnp.float64}.values())

    assert kept(plain) - kept(saving) == n_layer * kept_fewer(m, T, C)


def test_the_blockwise_layer_step_stores_no_t_by_t_array():
    """XLA's memory analysis of the compiled forward + backward at T = 2048, 2 heads: the blockwise step's
    temporaries are below the size of the probabilities P (2 x T x T float32, 32 MiB); the plain hand-written
    step's are above it (it keeps P). Measured: about 14 and 100 MiB."""
    T, C = 2048, 64
    x = jnp.zeros((1, T, C), jnp.float32)

    def step_memory(layer):
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), layer.init(jax.random.PRNGKey(0), (T, C)))

        def step(params, x):
            y, cache = layer.forward(params, x)
            return layer.backward(params, cache, jnp.ones_like(y))

        return jax.jit(step).lower(params, x).compile().memory_analysis().temp_size_in_bytes

    probabilities = 2 * T * T * 4
    assert step_memory(fb.causal_self_attention(2, block=128)) < probabilities < step_memory(fb.causal_self_attention(2))


def test_the_chunked_head_step_stores_neither_the_logits_nor_a_second_dW():
    """XLA's memory analysis at N 1,024, V 8,192, d 512, float32: the chunked head's temporaries (chunks of 64
    rows, slices of 2,048 rows of W) are below the size of W (16 MiB), so neither the (N x V) logits (32 MiB)
    nor a whole (V x d) product beside dW is held; jax.grad's are above the logits. Measured: 6.8 and 64 MiB
    (18 MiB when dW is accumulated in one (V x d) product, vocab_chunk = V)."""
    N, V, d = 1024, 8192, 512
    args = (jax.ShapeDtypeStruct((N, d), jnp.float32), jax.ShapeDtypeStruct((V, d), jnp.float32),
            jax.ShapeDtypeStruct((N,), jnp.int32))

    def temporaries(fn):
        return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes

    def plain(h, W, t):
        z = h @ W.T
        return jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, t[:, None], -1)[:, 0])

    chunked = temporaries(lambda h, W, t: chunked_softmax_cross_entropy(h, W, t, 64, 2048)[1:])
    assert chunked < V * d * 4 < N * V * 4 < temporaries(jax.grad(plain, argnums=(0, 1)))


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="the resident-set probe reads Linux's /proc")
@pytest.mark.slow  # a whole GPT or a child process: kept out of the quick suite's 6 minutes
def test_the_process_peak_probe_sees_what_xla_plans(monkeypatch):
    """The probe runs the step once, lets its buffers go, then resets the high-water mark and measures the
    second run, so what it measures is the step. jax.grad's head at N 64, V 65,536, d 512 plans 144 MiB of
    temporaries and outputs (dW is 128 MiB) and measured 160 MiB: between 0.9x and 1.5x the plan (the
    allocator's rounding and the thread pools' scratch add a little). Drawing W at random peaks higher than
    the step, so a probe that kept the set-up's high-water mark reads 387 MiB, 2.7x (planted and watched
    fail). Without the first run, the set-up's buffers, freed asynchronously during the step, were reused
    unseen: it read 0 MiB under load."""
    monkeypatch.setenv("XLA_FLAGS", "")  # XLA's defaults, as the benchmark runs; the quick suite's -O0 allocates up front
    check = cross_check_process_peak(64, 65536, 512, names=("jax.grad",))["jax.grad"]
    assert 0.9 * check["xla_temp_plus_out_mib"] < check["measured_mib"] < 1.5 * check["xla_temp_plus_out_mib"]


def test_blockwise_attention_refuses_dropout():
    with pytest.raises(ValueError, match="use dropout=0"):
        fb.gpt(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4, dropout=0.1, attention_block=2)
    with pytest.raises(ValueError, match="attention_block must be a positive integer"):
        fb.gpt(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4, attention_block=0)



@pytest.mark.slow  # about a minute: every contender compiled at the quick sizes
def test_the_memory_benchmark_reports_what_the_savers_save(tmp_path, monkeypatch):
    """`fnbackprop bench --memory --quick`: the JSON and the plot are written, and the measured figures show
    the savers' effect at the quick sizes: the blockwise attention step's peak below jax.grad's at T 1,024
    (measured 3.6 against 33.9 MiB), the chunked head's temporaries below 0.3 of jax.grad's (16.5 against
    64), the GPT step with both savers below half of jax.grad's (387 against 1,995), and the process's own
    measurement of jax.grad's head step within 0.9-1.5x of XLA's plan (74 against 73)."""
    import json

    from fnbackprop.cli import main

    monkeypatch.setenv("XLA_FLAGS", "")  # the process probe runs with XLA's defaults (see the probe's test)
    assert main(["bench", "--memory", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "bench-quick-memory.json").read_text())["memory"]
    assert (tmp_path / "bench-memory-quick.png").stat().st_size > 10_000
    at_1024 = next(r for r in results["attention"] if r["T"] == 1024)["peak_mib"]
    assert at_1024["hand blockwise"] < 0.2 * at_1024["jax.grad"]
    head = results["head"]
    assert head["temp_mib"]["hand chunked"] < 0.3 * head["temp_mib"]["jax.grad"]  # the plain hand head: 0.5
    probe = head["process_peak"]["jax.grad"]
    assert 0.9 * probe["xla_temp_plus_out_mib"] < probe["measured_mib"] < 1.5 * probe["xla_temp_plus_out_mib"]
    step = results["gpt_step"]["peak_mib"]
    assert step["hand blockwise + chunked"] < 0.5 * step["jax.grad"]
