"""The recurrent language models' training: streams, char-rnn's schedule and updates, carried states,
validation on every character, exact resume, sampling and the command line.

Everything runs on small texts made here; the Tiny Shakespeare runs are experiments/char_rnn.py."""

import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fnbackprop.cli import main
from fnbackprop.train import lm, rnn_lm

TINY = rnn_lm.RNNConfig(hidden=8, n_layer=2, seq_length=6, batch_size=4, max_epochs=3, lr=1e-2, eval_interval=10)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """A text of period 7: what comes next is certain once a character is seen."""
    path = tmp_path_factory.mktemp("text") / "input.txt"
    path.write_text("abcdefg" * 100)
    return path


@pytest.fixture(scope="module")
def data(text_file):
    return lm.load_chars(text_file)  # 630 training, 70 validation characters


def test_streams_are_consecutive_runs_of_the_text_and_targets_the_next_characters():
    x, y = rnn_lm.streams(np.arange(23), 4)  # L = 22 // 4 = 5
    np.testing.assert_array_equal(x, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]])
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ValueError, match="cannot make 4 streams"):
        rnn_lm.streams(np.arange(4), 4)


def test_the_schedule_is_char_rnns_decay_at_the_end_of_each_epoch_from_lr_decay_after():
    """char-rnn's train.lua: after update i (1-based) with i % ntrain == 0 and epoch i / ntrain >= after,
    lr *= decay. With ntrain = 3, after = 2: updates 1-6 at lr, 7-9 at lr d, 10-12 at lr d^2."""
    config = replace(TINY, lr=1.0, lr_decay=0.5, lr_decay_after=2)
    schedule = rnn_lm.learning_rate(config, 3)
    got = [float(schedule(u)) for u in range(12)]  # u = i - 1
    assert got == [1.0] * 6 + [0.5] * 3 + [0.25] * 3


def test_rmsprop_with_elementwise_clipping_is_char_rnns_update():
    """optim.rmsprop: m = a m + (1 - a) g^2, x -= lr g / (sqrt(m) + eps), after grad:clamp(-5, 5)."""
    config = replace(TINY, lr=0.1, decay_rate=0.95, grad_clip=5.0)
    opt = rnn_lm.make_optimizer(config, 10)
    g = jnp.array([-7.0, 0.5, 3.0])
    updates, _ = opt.update(g, opt.init(jnp.zeros(3)))
    clamped = np.array([-5.0, 0.5, 3.0])
    expected = -0.1 * clamped / (np.sqrt(0.05 * clamped ** 2) + 1e-8)
    np.testing.assert_allclose(updates, expected, rtol=1e-6)


def test_min_char_rnn_clipping_the_mean_at_0_2_is_its_clipping_of_the_sum_at_5():
    """min-char-rnn's Adagrad on the sum over 25 positions, clipped at 5, makes the same updates as ours on
    the mean, clipped at 5 / 25 (Adagrad's update does not see the gradient's scale)."""
    config = rnn_lm.PRESETS["min-char-rnn"]
    ours = rnn_lm.make_optimizer(config, 10)
    theirs = optax.chain(optax.clip(5.0), optax.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-8))
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    s_ours, s_theirs = ours.init(jnp.zeros(50)), theirs.init(jnp.zeros(50))
    for k in keys:  # several steps, some entries beyond the clip
        g_mean = 0.3 * jax.random.normal(k, (50,))
        u_ours, s_ours = ours.update(g_mean, s_ours)
        u_theirs, s_theirs = theirs.update(25 * g_mean, s_theirs)
        # equal but for eps = 1e-8 inside the square root, against accumulated squares of the mean's gradient
        # >= 3.5e-4 for these draws (625 times larger for the sum's): a relative effect under 1e-8 / 3.5e-4 / 2 = 1.4e-5
        np.testing.assert_allclose(u_ours, u_theirs, rtol=3e-5)
    assert float(jnp.max(jnp.abs(25 * g_mean))) > 5  # the clip did act


def test_lstm_forget_gate_biases_start_at_forget_bias_and_nothing_else_moves():
    model = rnn_lm.model_of(TINY, 7)
    plain = model.init(jax.random.PRNGKey(3))
    params = rnn_lm.initial_params(model, replace(TINY, forget_bias=1.0), jax.random.PRNGKey(3))
    H = TINY.hidden
    for got, base in zip(params["layers"], plain["layers"]):
        np.testing.assert_array_equal(got["b_ih"][H:2 * H], 1.0)  # PyTorch's order i, f, g, o: f is the second block
        np.testing.assert_array_equal(np.delete(np.asarray(got["b_ih"]), np.s_[H:2 * H]),
                                      np.delete(np.asarray(base["b_ih"]), np.s_[H:2 * H]))
        np.testing.assert_array_equal(got["W_hh"], base["W_hh"])


@pytest.mark.parametrize("batching", ["carry", "random"])
def test_validation_scores_every_character_and_equals_one_pass_over_the_whole_text(data, batching):
    """Chunked with the state carried (carry) or window by window (random), the validation loss equals a
    direct computation: each whole stream (or every window) in one forward pass, every character once."""
    config = replace(TINY, batching=batching)
    model = rnn_lm.model_of(config, data.vocab_size)
    params = rnn_lm.initial_params(model, config, jax.random.PRNGKey(1))
    windows = [jnp.asarray(a) for a in rnn_lm.validation_windows(config, data.val)]
    got = float(rnn_lm.make_validation(model, config)(params, *windows))
    if batching == "carry":
        x, y = rnn_lm.streams(data.val, config.batch_size)  # 4 streams of 17 (69 // 4), not a multiple of 6
        assert float(windows[2].sum()) == x.size == 68
    else:
        n = (len(data.val) - 1) // config.seq_length  # 11 windows, not a multiple of the batch of 4
        x, y = data.val[: n * 6].reshape(n, 6), data.val[1: n * 6 + 1].reshape(n, 6)
        assert float(windows[2].sum()) == x.size == 66
    want = float(model.loss(params, jnp.asarray(x), jnp.asarray(y)))
    assert abs(got - want) < 1e-5  # float32 sums in another order
    assert got == float(rnn_lm.make_validation(model, config)(params, *windows))  # deterministic


def manual_training(config, data, iterations):
    """An independent loop: chunk k = it % per_epoch of the streams, the state carried and reset at chunk 0,
    the model's own value_and_grad, the optimizer applied eagerly."""
    per_epoch = rnn_lm.batches_per_epoch(config, len(data.train))
    model = rnn_lm.model_of(config, data.vocab_size)
    opt = rnn_lm.make_optimizer(config, per_epoch)
    params = rnn_lm.initial_params(model, config, jax.random.split(jax.random.PRNGKey(config.seed))[0])
    state, xs, ys = opt.init(params), *rnn_lm.streams(data.train, config.batch_size)
    T, states = config.seq_length, None
    for it in range(iterations):
        k = it % per_epoch
        if k == 0:
            states = model.zero_states(config.batch_size)
        _, grads, states = model.value_and_grad(params, jnp.asarray(xs[:, k * T:(k + 1) * T]),
                                                jnp.asarray(ys[:, k * T:(k + 1) * T]), states)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return rnn_lm.train_rnn(TINY, data, out), out


def test_training_carries_the_state_between_chunks_and_resets_it_each_epoch(data, trained):
    """26 chunks per epoch (629 // 4 // 6): 30 iterations cross an epoch's end."""
    result, _ = trained
    assert rnn_lm.batches_per_epoch(TINY, len(data.train)) == 26
    config = replace(TINY, max_epochs=30 / 26)
    got = rnn_lm.train_rnn(config, data, max_iterations=30).params
    want = manual_training(config, data, 30)
    err = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), got, want)
    assert max(jax.tree_util.tree_leaves(err)) < 1e-5, err  # scanned and compiled vs eager: float32 rounding


def test_training_learns_the_periodic_text_and_writes_its_results(trained, data):
    result, out = trained
    assert result.iterations == 78 and [h["iteration"] for h in result.history] == [0, 10, 20, 30, 40, 50, 60, 70, 78]
    assert result.history[0]["val_loss"] > 1.8 and result.final_val_loss < 0.5  # from ln 7 = 1.95 towards 0
    path = rnn_lm.write_results(result, data, out)
    saved = json.loads(path.read_text())
    assert saved["final_val_loss"] == result.final_val_loss and saved["config"]["cell"] == "lstm"
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_does(trained, data, tmp_path):
    """The carried states are in the checkpoint: stopping at 40 (mid-epoch) and resuming changes nothing."""
    result, _ = trained
    rnn_lm.train_rnn(replace(TINY, max_epochs=40 / 26), data, tmp_path)
    resumed = rnn_lm.train_rnn(TINY, data, tmp_path, resume=True)
    for a, b in zip(jax.tree_util.tree_leaves(resumed.params), jax.tree_util.tree_leaves(result.params)):
        np.testing.assert_array_equal(a, b)
    assert resumed.final_val_loss == result.final_val_loss
    with pytest.raises(ValueError, match="other settings \\(hidden\\)"):
        rnn_lm.train_rnn(replace(TINY, hidden=9), data, tmp_path, resume=True)


def test_the_hand_backward_and_jax_grad_train_alike(data, trained):
    result, _ = trained
    auto = rnn_lm.train_rnn(replace(TINY, grad_source="autodiff"), data)
    assert abs(auto.final_val_loss - result.final_val_loss) < 1e-3  # float32 rounding over 78 updates


def test_greedy_sampling_continues_the_period(trained, data):
    result, _ = trained
    model = rnn_lm.model_of(TINY, data.vocab_size)
    tokens = rnn_lm.generate(model, result.params, data.encode("abc"), 11, jax.random.PRNGKey(0), temperature=1e-3, top_k=1)
    assert data.decode(tokens) == "abcdefgabcdefg"


def test_the_cli_trains_samples_resumes_and_refuses_what_does_not_apply(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--model", "lstm", "--data-path", str(text_file), "--hidden", "8", "--seq-length", "6",
              "--batch-size", "4", "--eval-interval", "10", "--lr", "0.01"]
    assert main([*common, "--max-epochs", "1", "--out", str(out)]) == 0
    assert main([*common, "--max-epochs", "2", "--out", str(out), "--resume"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["iterations"] == 52 and saved["config"]["hidden"] == 8 and saved["preset"] == "char-rnn"
    capsys.readouterr()
    assert main(["sample", "--out", str(out), "--prompt", "abc", "--tokens", "20"]) == 0
    assert capsys.readouterr().out.startswith("abc")
    refusals = [(["--model", "gru", "--forget-bias", "1"], "--forget-bias does not apply to --model gru"),
                (["--model", "lstm", "--optimizer", "adam", "--rms-decay", "0.9"], "--rms-decay does not apply"),
                (["--model", "lstm", "--n-head", "2"], "--n-head does not apply to --model lstm"),
                (["--model", "gpt", "--hidden", "8"], "--hidden does not apply to --model gpt"),
                (["--hidden", "8"], "--hidden does not apply to --model mlp"),
                (["--model", "rnn", "--preset", "shakespeare-char-cpu"], "not one of --model rnn's"),
                (["--model", "lstm", "--optimizer", "momentum"], "optimizer must be one of rmsprop, adam, adagrad")]
    for argv, said in refusals:
        assert main(["train", *argv, "--data-path", str(text_file), "--out", str(tmp_path / "refused")]) == 2
        assert said in capsys.readouterr().out.replace("\n", " ")
        assert not (tmp_path / "refused").exists()


def test_the_presets_are_the_recipes():
    char_rnn, mini = rnn_lm.PRESETS["char-rnn"], rnn_lm.PRESETS["min-char-rnn"]
    assert (char_rnn.cell, char_rnn.n_layer, char_rnn.hidden, char_rnn.seq_length, char_rnn.batch_size) == ("lstm", 2, 128, 50, 50)
    assert (char_rnn.optimizer, char_rnn.lr, char_rnn.decay_rate, char_rnn.lr_decay, char_rnn.lr_decay_after) == ("rmsprop", 2e-3, 0.95, 0.97, 10)
    assert (char_rnn.clip, char_rnn.grad_clip, char_rnn.forget_bias, char_rnn.batching) == ("elementwise", 5.0, 1.0, "carry")
    assert (mini.cell, mini.n_layer, mini.hidden, mini.seq_length, mini.batch_size) == ("rnn", 1, 100, 25, 1)
    assert (mini.optimizer, mini.lr, mini.clip, mini.grad_clip) == ("adagrad", 0.1, "elementwise", 0.2)
