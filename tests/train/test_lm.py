"""Character-level language modelling: data, batches, the schedule, weight decay, training, resume, sampling, CLI.

Everything here runs on small texts made in the tests; the Tiny Shakespeare run is experiments/gpt_shakespeare.py."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnbackprop.train import lm
from fnbackprop.cli import main

TINY = lm.LMConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=8, max_iters=60, lr=1e-2, min_lr=1e-3,
                   warmup_iters=5, lr_decay_iters=60, eval_interval=20, eval_iters=4)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """A text with a strict period of 7 characters: a model that learns it predicts the next one for sure."""
    path = tmp_path_factory.mktemp("text") / "input.txt"
    path.write_text("abcdefg" * 400)
    return path


@pytest.fixture(scope="module")
def data(text_file):
    return lm.load_chars(text_file)


def test_the_text_is_split_90_10_with_the_sorted_characters_as_vocabulary(data):
    assert data.chars == "abcdefg" and len(data.train) == 2520 and len(data.val) == 280
    assert data.decode(data.encode("gab")) == "gab" and list(data.encode("gab")) == [6, 0, 1]
    with pytest.raises(ValueError, match="not in the vocabulary: 'z'"):
        data.encode("az")


def test_missing_or_tiny_texts_are_refused_with_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="give a text file with --data-path"):
        lm.load_chars(tmp_path / "absent.txt")
    (tmp_path / "short.txt").write_text("ab" * 10)
    with pytest.raises(ValueError, match="too little to model"):
        lm.load_chars(tmp_path / "short.txt")


def test_a_batch_is_random_windows_and_the_targets_are_the_next_characters():
    tokens = jnp.arange(50)
    x, y = lm.get_batch(jax.random.PRNGKey(0), tokens, 64, 8)
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == y.shape == (64, 8)
    np.testing.assert_array_equal(x, x[:, :1] + np.arange(8))  # consecutive characters
    np.testing.assert_array_equal(y, x + 1)  # shifted by one
    assert x[:, 0].min() >= 0 and x[:, 0].max() <= 50 - 8 - 1 and len(set(x[:, 0])) > 10


def test_the_schedule_is_nanogpt_get_lr():
    config = lm.PRESETS["shakespeare-char-cpu"]
    schedule = lm.learning_rate(config)
    # nanoGPT's get_lr(it) for warmup_iters 100, lr_decay_iters 2000, lr 1e-3, min_lr 1e-4, written out.
    # 1e-5 relative: the schedule is float32 arithmetic; lr it / 100, the off-by-one, is 1% off at it = 50.
    assert math.isclose(float(schedule(0)), 1e-3 / 101, rel_tol=1e-5)  # the first update moves
    assert math.isclose(float(schedule(50)), 1e-3 * 51 / 101, rel_tol=1e-5)
    assert math.isclose(float(schedule(99)), 1e-3 * 100 / 101, rel_tol=1e-5)
    for it in (100, 400, 1000, 1700, 2000):
        ratio = (it - 100) / (2000 - 100)
        expected = 1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)
        assert math.isclose(float(schedule(it)), expected, rel_tol=1e-5), it


def test_weight_decay_shrinks_matrices_and_embeddings_only():
    config = lm.LMConfig(n_layer=1, n_head=1, n_embd=4, block_size=4, bias=True, warmup_iters=0, lr=0.1)
    model = lm.model_of(config, 5)
    params = model.init(jax.random.PRNGKey(0))
    optimizer = lm.make_optimizer(config)
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = jax.jit(optimizer.update)(zero, optimizer.init(params), params)
    for path, p in jax.tree_util.tree_leaves_with_path(params):
        u = dict(jax.tree_util.tree_leaves_with_path(updates))[path]
        expected = -config.lr * config.weight_decay * p if p.ndim >= 2 else jnp.zeros_like(p)  # AdamW: -lr wd p, no gradient
        np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-12, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return lm.train_lm(TINY, data, out, final_batches=10), out


def test_training_learns_a_periodic_text_and_writes_its_results(trained, data):
    result, out = trained
    assert result.history[0]["val_loss"] > 1.5  # about log(7) = 1.95 at the start
    assert result.final_val_loss < 0.2  # the period is learnable: far below the start
    assert [h["iteration"] for h in result.history] == [0, 20, 40, 60]
    path = lm.write_results(result, data, out)
    saved = json.loads(path.read_text())
    assert saved["final_val_loss"] == result.final_val_loss and saved["config"]["n_embd"] == 16
    assert (out / "loss.png").stat().st_size > 1000


def test_iteration_0_is_evaluated_on_the_initial_parameters(trained, data):
    """The iteration-0 record is taken while the first chunk runs, on a copy of the parameters that chunk takes
    over: it must be the initial parameters' loss (seed's first key), not the chunk's result."""
    result, _ = trained
    model = lm.model_of(TINY, data.vocab_size)
    k_init, _, k_eval = jax.random.split(jax.random.PRNGKey(TINY.seed), 3)
    estimate = lm.make_estimate(model, TINY, 10, group=lm.estimate_group(TINY, 10))
    train = jnp.asarray(data.train)  # the longer split: its padding is none
    expected = float(estimate(model.init(k_init), train, len(data.train), jax.random.fold_in(k_eval, 0), TINY.eval_iters))
    assert abs(result.history[0]["train_loss"] - expected) <= 1e-6 * expected
    assert result.history[1]["train_loss"] < expected - 0.1  # 20 iterations later the loss is well below it


def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_does(trained, data, tmp_path):
    result, _ = trained
    lm.train_lm(lm.replace(TINY, max_iters=40), data, tmp_path, final_batches=2)
    resumed = lm.train_lm(TINY, data, tmp_path, resume=True, final_batches=10)
    for a, b in zip(jax.tree_util.tree_leaves(result.params), jax.tree_util.tree_leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="other settings \\(n_embd\\)"):
        lm.train_lm(lm.replace(TINY, n_embd=8, max_iters=80), data, tmp_path, resume=True)


def test_a_checkpoint_saved_before_matmul_dtype_existed_resumes_as_the_float32_run_it_was(tmp_path):
    state = {"w": jnp.zeros(3)}
    older = {k: v for k, v in vars(lm.replace(TINY, max_iters=20)).items() if k != "matmul_dtype"}
    lm.checkpoint.save(tmp_path / lm.CHECKPOINT_NAME, state, {"iteration": 20, "history": [], "config": older})

    def resume(dtype: str):
        config = vars(lm.replace(TINY, matmul_dtype=dtype))
        return lm.checkpoint.resume(tmp_path, lm.CHECKPOINT_NAME, state, config, "max_iters", 60, "--max-iters", lm.OLDER_CHECKPOINTS)

    assert resume("float32")[1]["iteration"] == 20
    with pytest.raises(ValueError, match="other settings \\(matmul_dtype\\)"):
        resume("bfloat16")


FLAGS = "flags\t\t: fpu vme sse sse2 avx2 avx512f avx512bw"  # a /proc/cpuinfo line, as Linux writes it


@pytest.mark.parametrize("cpuinfo,native", [
    (f"processor\t: 0\n{FLAGS} avx512_bf16 avx512_vnni\n", True),  # AMD Zen 4, Intel Cooper Lake on
    (f"processor\t: 0\n{FLAGS} amx_bf16 amx_tile\n", True),  # Intel Sapphire Rapids on
    (f"processor\t: 0\n{FLAGS} avx512_vnni\n", False),  # Cascade Lake: no bfloat16 instruction
    ("processor\t: 0\nFeatures\t: fp asimd bf16\n", False),  # an Arm CPU: not measured, so not chosen
    ("", False)])
def test_auto_multiplies_in_bfloat16_only_on_a_cpu_with_native_bfloat16_instructions(cpuinfo, native, monkeypatch):
    assert lm.native_bfloat16(cpuinfo) is native
    monkeypatch.setattr(lm, "native_bfloat16", lambda cpuinfo=None: native)
    auto = lm.replace(TINY, matmul_dtype="auto")
    assert lm.matmul_dtype(auto, backend="cpu") == ("bfloat16" if native else "float32")
    assert lm.matmul_dtype(auto, backend="gpu") == "float32"  # XLA chooses a GPU's products' precision itself
    for given in ("float32", "bfloat16"):  # what is asked for is what runs
        assert lm.matmul_dtype(lm.replace(TINY, matmul_dtype=given), backend="gpu") == given
    assert lm.model_of(lm.replace(TINY, matmul_dtype="float32"), 7).matmul_dtype is None  # the operands' own dtype
    assert lm.model_of(lm.replace(TINY, matmul_dtype="bfloat16"), 7).matmul_dtype == "bfloat16"
    with pytest.raises(ValueError, match="matmul_dtype must be one of auto, float32, bfloat16"):
        lm.replace(TINY, matmul_dtype="float16")


def test_one_estimate_program_serves_both_splits_and_every_count_of_batches(trained, data):
    """The estimate of n batches of a split (padded to the longer split's length, the loop's length an argument),
    one batch or two at a time, equals the mean of model.loss over the windows a direct loop draws with
    jax.random.split(key, n)."""
    result, _ = trained
    model = lm.model_of(TINY, data.vocab_size)
    key = jax.random.PRNGKey(3)
    val = jnp.asarray(data.val)
    padded = jnp.pad(val, (0, len(data.train) - len(data.val)))
    loss = jax.jit(model.loss)
    direct = {n: np.mean([float(loss(result.params, *lm.get_batch(k, val, TINY.batch_size, TINY.block_size)))
                          for k in jax.random.split(key, n)]) for n in (4, 50)}
    for group in (1, 2):
        estimate = lm.make_estimate(model, TINY, 50, group=group)
        for n in (4, 50):
            got = float(estimate(result.params, padded, len(data.val), key, n))
            assert abs(got - direct[n]) < 1e-5 * max(1.0, abs(direct[n])), (group, n, got, direct[n])  # sums in another order


def test_an_estimate_takes_as_many_batches_at_once_as_divide_both_counts_within_the_token_budget():
    cpu, gpu = lm.PRESETS["shakespeare-char-cpu"], lm.PRESETS["shakespeare-char-gpu"]
    assert lm.estimate_group(cpu, 200) == 4  # 20 and 200 batches of 12 x 64: 4 x 768 = 3,072 tokens
    assert lm.estimate_group(gpu, 200) == 1  # one batch of 64 x 256 is already over the budget
    assert lm.estimate_group(lm.replace(cpu, eval_iters=7), 200) == 1  # 7 and 200 share no divisor but 1
    assert lm.estimate_group(lm.replace(cpu, eval_iters=6), 200) == 2
    assert lm.estimate_group(TINY, 10) == 2  # gcd(4, 10)


def test_a_chunk_draws_iteration_its_batch_and_dropout_key_from_fold_in_of_its_number():
    """Drawn for a whole chunk at once (vmapped), iteration it's windows are get_batch with the first key of
    split(fold_in(key, it)) and its dropout key the second: the numbers of one iteration at a time."""
    key, tokens = jax.random.PRNGKey(5), jnp.arange(100)
    its = jnp.arange(3, 7)
    starts, drop_keys = jax.jit(jax.vmap(lambda it: lm.iteration_draws(key, it, 100, TINY)))(its)
    for row, it in enumerate(its):
        k_batch, k_drop = jax.random.split(jax.random.fold_in(key, it))
        x, y = lm.get_batch(k_batch, tokens, TINY.batch_size, TINY.block_size)
        xs, ys = lm.windows(tokens, starts[row], TINY.block_size)
        np.testing.assert_array_equal(xs, x)
        np.testing.assert_array_equal(ys, y)
        np.testing.assert_array_equal(drop_keys[row], k_drop)


def test_a_failing_check_during_the_first_chunk_stops_the_run_before_anything_is_saved(data, tmp_path):
    class Failed(Exception):
        pass

    def check():
        raise Failed()

    with pytest.raises(Failed):
        lm.train_lm(TINY, data, tmp_path, check_meanwhile=check, final_batches=2)
    assert not (tmp_path / lm.CHECKPOINT_NAME).exists()


def test_greedy_generation_equals_a_naive_loop_over_the_cropped_context(trained, data):
    result, _ = trained
    model = lm.model_of(TINY, data.vocab_size)
    prompt = data.encode("cdefgabcdefgab")  # longer than the block: the context is cropped to the last 8
    out = lm.generate(model, result.params, prompt, 12, jax.random.PRNGKey(0), top_k=1)
    context = list(prompt)
    for _ in range(12):
        logits = model.apply(result.params, jnp.array([context[-TINY.block_size:]]))[0, -1]
        context.append(int(jnp.argmax(logits)))
    assert list(out) == context
    assert data.decode(out[len(prompt):]) == "cdefgabcdefg"  # the period, learnt


@pytest.mark.slow  # 13 s; train_lm and generate are tested directly in the quick suite
def test_the_cli_trains_and_samples_and_refuses_bad_input_in_one_line(text_file, tmp_path, capsys):
    args = ["train", "--model", "gpt", "--data-path", str(text_file), "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--block-size", "8", "--batch-size", "8", "--lr", "1e-2", "--min-lr", "1e-3", "--warmup-iters", "5",
            "--lr-decay-iters", "60", "--max-iters", "20", "--eval-interval", "20", "--eval-iters", "4", "--out", str(tmp_path),
            "--matmul-dtype", "bfloat16"]
    assert main(args) == 0  # the gradient check, run in float32, passes (in bfloat16 it parts hand and autodiff by 1e-3)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"] == {**vars(TINY), "max_iters": 20, "matmul_dtype": "bfloat16"} and saved["final_val_loss"] < 2.5
    capsys.readouterr()
    assert main(["sample", "--out", str(tmp_path), "--prompt", "abc", "--tokens", "30"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("abc") and len(printed.rstrip("\n")) == 33
    for bad in (["sample", "--out", str(tmp_path), "--prompt", "xyz"], ["train", "--model", "gpt", "--n-head", "3"],
                ["train", "--model", "gpt", "--data-path", str(tmp_path / "absent.txt"), "--out", str(tmp_path / "new")]):
        assert main(bad) == 2
        err = capsys.readouterr().out
        assert err.startswith(f"fnbackprop {bad[0]}: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_unset_options_take_the_preset_and_max_iters_alone_sets_the_decay_length():
    from fnbackprop.cli import build_parser
    from fnbackprop.cli.gpt import gpt_config

    config = gpt_config(build_parser().parse_args(["train", "--model", "gpt", "--max-iters", "500", "--n-embd", "64"]))
    assert config == lm.replace(lm.PRESETS["shakespeare-char-cpu"], max_iters=500, lr_decay_iters=500, n_embd=64)
    gpu = gpt_config(build_parser().parse_args(["train", "--model", "gpt", "--preset", "shakespeare-char-gpu", "--lr", "5e-4"]))
    assert (gpu.n_layer, gpu.n_embd, gpu.block_size, gpu.dropout, gpu.lr) == (6, 384, 256, 0.2, 5e-4)


def test_the_memory_savers_reach_the_model_from_the_command_line():
    from fnbackprop.cli import build_parser
    from fnbackprop.cli.gpt import gpt_config

    argv = ["train", "--model", "gpt", "--attention-block", "32", "--head-chunk", "256", "--recompute-gelu", "--recompute-norm"]
    model = lm.model_of(gpt_config(build_parser().parse_args(argv)), vocab_size=65)
    assert (model.attention_block, model.head_chunk, model.recompute_gelu, model.recompute_norm) == (32, 256, True, True)
    plain = lm.model_of(gpt_config(build_parser().parse_args(["train", "--model", "gpt"])), vocab_size=65)
    assert (plain.attention_block, plain.head_chunk, plain.recompute_gelu, plain.recompute_norm) == (None, None, False, False)
