"""optax over the hand-coded gradients, the scanned epoch, checkpoints, resume and divergence."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnbackprop as fb
from fnbackprop.train import checkpoint
from fnbackprop.train.data import load_digits
from fnbackprop.check.numerics import rel_err
from fnbackprop.train.epochs import (OPTIMIZERS, TrainingDiverged, compact_features, epoch_order, fit, gather_chunk,
                              gradient_function, make_epoch, make_optimizer,
                              make_schedule)


@pytest.fixture
def problem(x64):
    """A float64 problem: the step and epoch equations are compared at float64 rounding."""
    net = fb.mlp([6, 5, 4], hidden="tanh", output="softmax", loss="cross_entropy")
    kp, kx = jax.random.split(jax.random.PRNGKey(0))
    params = net.init(kp, jnp.float64)
    x = jax.random.normal(kx, (10, 6), jnp.float64)
    return net, params, x, jnp.arange(10) % 4


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_one_optax_step_on_hand_gradients_equals_the_step_on_jax_grad(problem, name):
    net, params, x, y = problem
    opt = make_optimizer(name, optax.constant_schedule(0.1), l2=0.5, n_train=100)
    state = opt.init(params)
    stepped = []
    for source in ("hand", "autodiff"):
        _, grads = gradient_function(net, source)(params, x, y)
        updates, _ = opt.update(grads, state, params)
        stepped.append(optax.apply_updates(params, updates))
    assert rel_err(stepped[0], stepped[1]) <= 1e-12
    assert rel_err(stepped[0], params) > 1e-4  # the step moved something


def test_l2_is_dongs_rule_on_weights_only(problem):
    """W <- W - (eta lambda / n) W - eta dC/dW; b <- b - eta dC/db, written out from the tutorial."""
    net, params, x, y = problem
    eta, lam, n = 0.3, 5.0, 50
    opt = make_optimizer("sgd", optax.constant_schedule(eta), l2=lam, n_train=n)
    _, grads = net.value_and_grad(params, x, y)
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    for p, g, q in zip(params, grads, new):
        np.testing.assert_allclose(q["W"], p["W"] - eta * lam / n * p["W"] - eta * g["W"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(q["b"], p["b"] - eta * g["b"], rtol=1e-12, atol=1e-15)


def test_schedules_take_their_stated_values():
    lr, spe = 0.8, 10  # 10 steps per epoch; decay x0.5 every 2 epochs = 20 steps
    assert float(make_schedule("constant", lr, spe, 5)(37)) == pytest.approx(lr)
    assert float(make_schedule("exponential", lr, spe, 5, 0.5, 2)(20)) == pytest.approx(0.4)
    assert float(make_schedule("exponential", lr, spe, 5, 0.5, 2)(10)) == pytest.approx(lr * 0.5**0.5)
    assert float(make_schedule("step", lr, spe, 5, 0.5, 2)(19)) == pytest.approx(lr)
    assert float(make_schedule("step", lr, spe, 5, 0.5, 2)(20)) == pytest.approx(0.4)
    assert float(make_schedule("cosine", lr, spe, 5)(25)) == pytest.approx(0.4)
    assert float(make_schedule("cosine", lr, spe, 5)(50)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("warmup", lr, spe, 5)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lbfgs9", optax.constant_schedule(lr))


def _python_loop_epoch(net, opt, params, x, y, order, batch_size):
    """The epoch written out: consecutive batches of `order`, the last one partial. (params, sum of m_b C_b)."""
    p, s, weighted_cost = params, opt.init(params), 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        cost, g = net.value_and_grad(p, x[idx], y[idx])
        u, s = opt.update(g, s, p)
        p, weighted_cost = optax.apply_updates(p, u), weighted_cost + float(cost) * len(idx)
    return p, weighted_cost


def test_scanned_epoch_equals_a_python_loop_including_the_partial_batch(problem):
    """n = 10, batch 4: steps on examples [0:4], [4:8] of the permutation, then the 2 left over."""
    net, params, x, y = problem
    opt = make_optimizer("momentum", optax.constant_schedule(0.1))
    key = jax.random.PRNGKey(7)
    scanned, _, stats = make_epoch(net, opt, 4, 10)(params, opt.init(params), key, x, y)
    order = epoch_order(key, 10)  # the epoch's key draws the order (step keys only feed dropout)
    looped, weighted_cost = _python_loop_epoch(net, opt, params, x, y, order, 4)
    assert rel_err(scanned, looped) <= 1e-12
    assert float(stats.mean_batch_cost) == pytest.approx(weighted_cost / 10, rel=1e-12)


def test_gather_chunk_is_the_largest_divisor_within_the_row_budget():
    assert gather_chunk(5000, 10, rows=512) == 50
    assert gather_chunk(12, 2, rows=6) == 3
    assert gather_chunk(13, 2, rows=6) == 1  # prime: one batch per gather
    assert gather_chunk(3, 10, rows=1000) == 3
    assert gather_chunk(0, 10) == 1


def test_chunked_gather_of_integer_codes_equals_a_python_loop_on_the_floats(problem, monkeypatch):
    """24 examples, batch 2, 6 rows per gather: 4 chunks of 3 steps, on uint8 codes k with x = k/256."""
    net, params, _, _ = problem
    monkeypatch.setattr("fnbackprop.train.epochs.GATHER_ROWS", 6)
    x = np.asarray(jax.random.randint(jax.random.PRNGKey(3), (24, 6), 0, 256), np.float64) / 256
    y = np.arange(24) % 4
    codes, denominator = compact_features(x)
    assert codes.dtype == np.uint8 and denominator == 256
    opt = make_optimizer("momentum", optax.constant_schedule(0.1))
    key = jax.random.PRNGKey(5)
    scanned, _, _ = make_epoch(net, opt, 2, 24, x_denominator=denominator)(params, opt.init(params), key, codes, y)
    looped, _ = _python_loop_epoch(net, opt, params, x, y, np.asarray(epoch_order(key, 24)), 2)
    assert rel_err(scanned, looped) <= 1e-12


def test_compact_features_only_when_exact():
    x = np.arange(256, dtype=np.float32) / 256
    codes, d = compact_features(x)
    assert d == 256 and np.array_equal(codes.astype(np.float32) / 256, x)
    assert compact_features(np.arange(5.0))[1] == 1
    for inexact in (x + np.float32(1e-4), np.array([0.5, np.nan]), np.array([300.0]), np.array([-1.0])):
        assert compact_features(inexact)[1] is None


def test_epoch_order_is_a_permutation():
    order = np.asarray(epoch_order(jax.random.PRNGKey(0), 1000))
    assert sorted(order) == list(range(1000)) and not np.array_equal(order, np.arange(1000))


def test_second_epoch_does_not_recompile(problem):
    net, params, x, y = problem
    opt = make_optimizer("adam", optax.constant_schedule(0.01))
    epoch = make_epoch(net, opt, 3, 10)
    p, s, _ = epoch(params, opt.init(params), jax.random.PRNGKey(0), x, y)
    epoch(p, s, jax.random.PRNGKey(1), x, y)
    assert epoch._cache_size() == 1


@pytest.fixture(scope="module")
def digits():
    return load_digits()


DIGITS_NET = fb.mlp([64, 32, 10], hidden="relu", output="softmax", loss="cross_entropy", init="he")


def _fit(ds, **kw):
    kw.setdefault("optimizer", make_optimizer("momentum", optax.constant_schedule(0.05)))
    return fit(DIGITS_NET, ds, batch_size=32, key=jax.random.PRNGKey(0), **kw)


def test_hand_and_autodiff_sources_give_the_same_trajectory(digits):
    hand = _fit(digits, epochs=1, grad_source="hand")
    auto = _fit(digits, epochs=1, grad_source="autodiff")
    assert rel_err(hand.params, auto.params) <= 5e-6  # 45 float32 steps; measured 3.4e-7: rounding only
    assert hand.history[0]["test_accuracy"] == pytest.approx(auto.history[0]["test_accuracy"], abs=1 / 360)


def test_metrics_per_epoch(digits):
    history = _fit(digits, epochs=2).history
    assert [h["epoch"] for h in history] == [1, 2]
    for key in ("train_cost", "test_cost", "train_accuracy", "test_accuracy", "mean_batch_cost", "seconds"):
        assert np.isfinite(history[-1][key])
    assert [set(layer) for layer in history[0]["grad_norms"]] == [{"W", "b"}, {"W", "b"}]
    assert history[1]["train_cost"] < history[0]["train_cost"]


def test_leaving_the_training_split_out_of_the_metrics_changes_nothing_else(digits):
    """Evaluating a split never touches the parameters: the same trajectory, the same test metrics."""
    full = _fit(digits, epochs=2)
    lean = _fit(digits, epochs=2, evaluate_train=False)
    assert not any(key.startswith("train_") for key in lean.history[-1])
    assert [h["test_accuracy"] for h in lean.history] == [h["test_accuracy"] for h in full.history]
    for a, b in zip(jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(lean.params)):
        np.testing.assert_array_equal(a, b)


def test_every_epoch_draws_its_own_shuffle_from_fold_in_of_the_key(digits, monkeypatch):
    """The documented contract: epoch e runs with fold_in(shuffle_key, e), shuffle_key = split(key)[1]."""
    import fnbackprop.train.epochs as train

    keys, real_make_epoch = [], train.make_epoch

    def recording_make_epoch(*args, **kwargs):
        epoch = real_make_epoch(*args, **kwargs)
        return lambda params, state, key, x, y: (keys.append(np.asarray(key)), epoch(params, state, key, x, y))[1]

    monkeypatch.setattr(train, "make_epoch", recording_make_epoch)
    _fit(digits, epochs=2)
    shuffle_key = jax.random.split(jax.random.PRNGKey(0))[1]
    assert [k.tolist() for k in keys] == [np.asarray(jax.random.fold_in(shuffle_key, e)).tolist() for e in (1, 2)]
    orders = [np.asarray(epoch_order(jnp.asarray(k), 100)) for k in keys]
    assert not np.array_equal(*orders)  # two different shuffles


def test_interrupt_and_resume_gives_the_uninterrupted_parameters(digits, tmp_path):
    straight = _fit(digits, epochs=4)
    _fit(digits, epochs=2, out_dir=tmp_path)  # "interrupted" after epoch 2
    resumed = _fit(digits, epochs=4, out_dir=tmp_path, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(jax.tree_util.tree_leaves(straight.params), jax.tree_util.tree_leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_is_plain_npz_keyed_by_pytree_path(digits, tmp_path):
    result = _fit(digits, epochs=1, out_dir=tmp_path)
    with np.load(tmp_path / "checkpoint.npz") as stored:
        np.testing.assert_array_equal(stored["[0][0]['W']"], result.params[0]["W"])
        assert json.loads(str(stored["__meta__"]))["epoch"] == 1


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    tree = {"W": np.arange(3.0)}
    checkpoint.save(tmp_path / "c.npz", tree, {"epoch": 1})

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path / "c.npz", {"W": np.zeros(3)}, {"epoch": 2})
    monkeypatch.undo()
    restored, meta = checkpoint.load(tmp_path / "c.npz", tree)
    np.testing.assert_array_equal(restored["W"], np.arange(3.0))
    assert meta["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_divergence_stops_with_the_epoch_and_last_good_checkpoint(digits, tmp_path):
    _fit(digits, epochs=2, out_dir=tmp_path)
    blow_up = make_optimizer("momentum", optax.constant_schedule(1e9))
    with pytest.raises(TrainingDiverged, match=r"epoch 3.*checkpoint of epoch 2"):
        _fit(digits, epochs=4, out_dir=tmp_path, resume=True, optimizer=blow_up)
    kept = json.loads((tmp_path / "results.json").read_text())
    assert [h["epoch"] for h in kept["epochs"]] == [1, 2]
    with np.load(tmp_path / "checkpoint.npz") as stored:
        assert json.loads(str(stored["__meta__"]))["epoch"] == 2


def test_divergence_is_caught_without_the_training_split_metrics(digits):
    poisoned = optax.sgd(float("nan"))  # every step writes NaN into the parameters
    with pytest.raises(TrainingDiverged, match=r"epoch 1: the cost is nan"):
        _fit(digits, epochs=2, optimizer=poisoned, evaluate_train=False)


def test_resuming_a_checkpoint_trained_past_the_asked_epochs_is_refused(digits, tmp_path):
    """Otherwise a 1-epoch run resumed from a 2-epoch checkpoint would return the 2-epoch network as its own."""
    _fit(digits, epochs=2, out_dir=tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="has trained 2 epochs, more than the 1 this run asks for"):
        _fit(digits, epochs=1, out_dir=tmp_path, resume=True)


def test_resume_without_a_checkpoint_is_a_clear_error(digits, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        _fit(digits, epochs=1, out_dir=tmp_path, resume=True)


def test_bce_and_mse_tasks_train(tmp_path):
    from fnbackprop.train.data import load_breast_cancer, load_diabetes

    bc = load_breast_cancer()
    net = fb.mlp([30, 16, 1], hidden="tanh", output="sigmoid", loss="bce")
    h = fit(net, bc, optimizer=make_optimizer("adam", optax.constant_schedule(0.01)), epochs=10, batch_size=32,
            key=jax.random.PRNGKey(0)).history
    assert h[-1]["test_accuracy"] >= 0.93  # a linear model reaches ~96% on this set
    db = load_diabetes()
    net = fb.mlp([10, 16, 1], hidden="tanh", output="identity", loss="mse")
    h = fit(net, db, optimizer=make_optimizer("adam", optax.constant_schedule(0.01)), epochs=10, batch_size=32,
            key=jax.random.PRNGKey(0)).history
    assert h[-1]["test_cost"] < 0.7  # standardised target: predicting the mean scores 1.0


def test_a_split_is_evaluated_in_chunks_with_the_same_cost_and_accuracy(monkeypatch):
    from fnbackprop.train import epochs as train_module

    net = fb.mlp([5, 7, 3], hidden="tanh", output="softmax", loss="cross_entropy")
    params = net.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (25, 5))
    y = jax.random.randint(jax.random.PRNGKey(2), (25,), 0, 3)
    expected_cost = float(net.loss(params, x, y))
    expected_accuracy = float(jnp.mean(jnp.argmax(net.apply(params, x), -1) == y))
    monkeypatch.setattr(train_module, "EVAL_CHUNK", 4)  # 25 rows: six chunks of 4 and a padded seventh
    got = jax.jit(lambda p, x, y: train_module.evaluate(net, "classification", p, x, y))(params, x, y)
    assert abs(float(got["cost"]) - expected_cost) <= 1e-6 * expected_cost and float(got["accuracy"]) == expected_accuracy
