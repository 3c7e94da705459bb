"""The measurements the experiment scripts make, checked on small random problems (no MNIST needed)."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from ch5_unstable_gradients import hidden_speeds, spec  # noqa: E402
from ch6_beyond import expand, majority_vote  # noqa: E402
from hand_vs_autodiff import global_rel_diff  # noqa: E402
from optimizers import epochs_to  # noqa: E402
from step_floor import products_program, run_length  # noqa: E402
from fnbackprop.bench.products import dot_flops, jaxpr_dots  # noqa: E402

from _common import build, spread, train_all  # noqa: E402


def test_speed_of_learning_is_the_norm_of_jax_grad_wrt_each_hidden_bias(x64):
    """||dC/db[l]|| from the hand-coded dZ equals the norm of jax.grad's dC/db[l] (float64: 1e-10)."""
    net = build({**spec(3, 0, 1), "sizes": [12, 6, 6, 6, 10]})
    params = net.init(jax.random.PRNGKey(0), jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(1), (40, 12), jnp.float64)
    y = jnp.arange(40) % 10
    grads = jax.grad(net.loss)(params, x, y)
    expected = np.array([np.linalg.norm(g["b"]) for g in grads[:-1]])
    speeds = jax.jit(lambda p: hidden_speeds(net, p, x, y))(params)  # one compile: faster than op by op
    np.testing.assert_allclose(speeds, expected, rtol=1e-10)


def test_global_relative_difference():
    a = [{"W": jnp.array([3.0, 0.0]), "b": jnp.array([0.0])}]
    b = [{"W": jnp.array([3.0, 4.0]), "b": jnp.array([0.0])}]
    assert float(global_rel_diff(a, b)) == np.float32(0.8)  # ||(0, -4, 0)|| / ||(3, 4, 0)||
    assert float(global_rel_diff(b, b)) == 0.0


def test_epochs_to_target_and_spread():
    assert epochs_to([90.0, 96.9, 97.0, 98.0], 97.0) == 3
    assert epochs_to([90.0, 96.9], 97.0) is None
    s = spread([95.0, 96.0, 97.0])
    assert (s["mean"], s["std"], s["min"], s["max"], s["n"]) == (96.0, 1.0, 95.0, 97.0, 3)


def test_expanded_mnist_is_each_image_then_its_four_one_pixel_shifts():
    """Nielsen's expand_mnist.py: the image, then shifted down, up, right, left by one pixel, zeros
    where nothing moved in. A single lit pixel at (row 3, column 5) must land at (4, 5), (2, 5),
    (3, 6), (3, 4); one on the border at (0, 27) falls off the image when shifted up or right."""
    image = np.zeros((2, 28, 28), np.float32)
    image[0, 3, 5] = 1.0
    image[1, 0, 27] = 0.5
    x, y = expand(image.reshape(2, 784), np.array([7, 2]))
    assert x.shape == (10, 784)
    np.testing.assert_array_equal(y, [7, 7, 7, 7, 7, 2, 2, 2, 2, 2])
    lit = [tuple(np.argwhere(v.reshape(28, 28))[0]) if v.any() else None for v in x]
    assert lit[:5] == [(3, 5), (4, 5), (2, 5), (3, 6), (3, 4)]
    assert lit[5:] == [(0, 27), (1, 27), None, None, (0, 26)]
    assert all(v.sum() == 1.0 for v in x[:5])  # a shift moves the pixel, it never copies or wraps it


def test_majority_vote_takes_the_most_frequent_class_and_breaks_ties_to_the_smaller():
    predictions = [[1, 4, 3, 0], [1, 5, 3, 9], [2, 5, 7, 8], [2, 4, 7, 6], [1, 6, 3, 5]]
    # image 0: 1 x3, 2 x2 -> 1; image 1: 4 x2, 5 x2, 6 -> tie 4; image 2: 3 x3 -> 3; image 3: all differ -> 0
    np.testing.assert_array_equal(majority_vote(predictions), [1, 4, 3, 0])


def test_a_run_cut_short_continues_from_its_checkpoint_to_the_uninterrupted_end(tmp_path):
    """ch6_beyond's runs last hours: one stopped after epoch 1 and run again for 3 epochs must reach the
    accuracies and costs of a run never stopped, and report its earlier epoch to `on_epoch` too."""
    from fnbackprop.train.data import load_digits

    data = load_digits()
    data = data._replace(x_val=data.x_test, y_val=data.y_test)
    run = {"sizes": [64, 16, 10], "hidden": "relu", "output": "softmax", "loss": "cross_entropy", "init": "he",
           "eta": 0.1, "batch": 32, "epochs": 3, "split": "val", "seed": 0, "evaluate_train": False}
    straight = train_all([run], data, "straight")[0]
    train_all([{**run, "epochs": 1}], data, "cut short", checkpoint_dir=lambda r: tmp_path)
    seen: list[int] = []
    resumed = train_all([run], data, "resumed", checkpoint_dir=lambda r: tmp_path,
                        on_epoch=lambda r, history: seen.append(len(history)))[0]
    assert seen == [2, 3] and resumed["resumed"]
    assert resumed["accuracy"] == straight["accuracy"] and resumed["cost"] == straight["cost"]


def test_the_gpt_steps_products_are_three_forwards_and_the_replay_computes_them():
    """The hand-written step of a small GPT runs three times its forward's products (each product's
    backward is two of the same size), and the forward's are nanoGPT's count written out: per block
    c_attn, c_proj, c_fc, mlp c_proj and attention's two T x T products, then the tied head. The replay
    returns each product of its operands (float32: 1e-5)."""
    from fnbackprop.train.lm import model_of, PRESETS
    from dataclasses import replace

    config = replace(PRESETS["shakespeare-char-cpu"], n_layer=2, n_head=2, n_embd=16, block_size=8, batch_size=3,
                     matmul_dtype="float32")  # as step_floor.py runs it
    model, (m, T, C, L, V) = model_of(config, 11), (3, 8, 16, 2, 11)
    params = model.init(jax.random.PRNGKey(0))
    x = jnp.zeros((m, T), jnp.int32)
    forward = jaxpr_dots(jax.make_jaxpr(model.loss)(params, x, x).jaxpr)
    step = jaxpr_dots(jax.make_jaxpr(model.value_and_grad)(params, x, x).jaxpr)
    per_block = 2 * m * T * (C * 3 * C + C * C + C * 4 * C + 4 * C * C) + 2 * (2 * m * T * T * C)
    assert dot_flops(forward) == L * per_block + 2 * m * T * C * V
    assert dot_flops(step) == 3 * dot_flops(forward) and len(step) == 3 * len(forward)
    replay, operands = products_program(forward, repeats=2)
    for (a, b), (_, _, params_), product in zip(operands, forward, replay(operands)):
        np.testing.assert_allclose(product, jax.lax.dot_general(a, b, **params_), rtol=1e-5, atol=1e-5)


def test_a_whole_preset_run_is_two_thousand_steps_and_five_hundred_and_sixty_forward_batches():
    """nanoGPT's CPU preset evaluates at iterations 0, 250, ..., 2000 (9 times, 20 batches of each split) and the
    trainer then scores 200 validation batches: 9 x 40 + 200 = 560. Resumed at 250, a run of 600 iterations by 250
    evaluates at 500 and 600."""
    from dataclasses import replace

    from fnbackprop.train.lm import PRESETS, evaluation_stops

    preset = PRESETS["shakespeare-char-cpu"]
    assert run_length(preset) == (2000, 560)
    assert evaluation_stops(replace(preset, max_iters=600), start=250) == [500, 600]
