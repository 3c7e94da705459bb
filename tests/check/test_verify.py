"""The per-tensor checker: built-in layers, a user's layer, kinks, the mutation catalogue and its controls."""

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnbackprop as fb
from fnbackprop import cli
from fnbackprop.check.battery import valid_heads
from fnbackprop.activations import ACTIVATIONS
from fnbackprop.train.data import load_digits
from fnbackprop.layers import activation, dense
from fnbackprop.losses import LOSSES, Head
from fnbackprop.check.mutations import MUTATIONS, catalogue_score, drop_one_over_m, reference_network
from fnbackprop.train.epochs import fit, make_optimizer
from fnbackprop.check.verify import TensorRow, check_layer, check_loss, check_network, finite_differences_at  # noqa: F401 (TensorRow: a CLI target below)


class Scale(NamedTuple):
    """A user's layer, no subclassing: y = x * s + t."""

    def init(self, key, in_shape):
        return {"s": 1 + 0.1 * jax.random.normal(key, in_shape), "t": jnp.zeros(in_shape)}

    def forward(self, params, x):
        return x * params["s"] + params["t"], x

    def backward(self, params, x, dy):
        return {"s": jnp.sum(dy * x, 0), "t": jnp.sum(dy, 0)}, dy * params["s"]


class ScaleWithBug(Scale):
    def backward(self, params, x, dy):
        return {"s": jnp.sum(dy * x, 0), "t": jnp.mean(dy, 0)}, dy * params["s"]  # mean where the sum belongs


@pytest.mark.parametrize(
    "layer",
    [dense(5), activation("tanh"), activation("relu"), fb.softmax(), fb.dropout(0.3), fb.batch_norm(), fb.layer_norm(),
     fb.residual(dense(6), activation("tanh"), dense(6)), fb.residual(dense(6), fb.dropout(0.5), dense(6))],
    ids=lambda layer: layer.name,
)
def test_builtin_layers_pass(layer, key):
    report = check_layer(layer, key, in_shape=(6,))
    assert report.passed, report.failing()
    assert all(r.rel_err <= 1e-10 and r.fd_rel_err <= 1e-6 for r in report.rows)


def test_a_users_layer_is_checked_and_the_wrong_parameter_named(key):
    assert check_layer(Scale(), key, in_shape=(6,)).passed
    report = check_layer(ScaleWithBug(), key, in_shape=(6,), batch=4)
    assert not report.passed
    (bad,) = report.failing()
    assert bad.name == "params['t']" and bad.verdict == "backward wrong"
    assert bad.ratio == pytest.approx(0.25)  # mean over m = 4 where the sum belongs: "x 1/m"
    assert bad.fd_rel_err <= 1e-6  # autodiff and finite differences agree: the backward is at fault


@pytest.mark.slow  # trains a network: kept out of the quick suite's 6 minutes
def test_a_users_layer_composes_trains_and_checks_in_a_network(key):
    net = fb.network([dense(16), Scale(), activation("tanh"), dense(10)], (64,), output="softmax", loss="cross_entropy")
    assert check_network(net, key).passed
    history = fit(net, load_digits(), optimizer=make_optimizer("adam", optax.constant_schedule(0.01)), epochs=2,
                  batch_size=64, key=key).history
    assert history[-1]["test_accuracy"] > 0.85


def test_mlp_with_batch_norm_and_dropout_trains_and_both_sources_agree(key):
    net = fb.network([dense(32), fb.batch_norm(), activation("relu"), fb.dropout(0.2), dense(10)], (64,),
                     output="softmax", loss="cross_entropy")  # each of its layers passes check_layer above
    run = lambda source: fit(net, load_digits(), optimizer=make_optimizer("momentum", optax.constant_schedule(0.05)),  # noqa: E731
                             epochs=2, batch_size=32, key=key, grad_source=source)
    hand, auto = run("hand"), run("autodiff")
    assert hand.history[-1]["test_accuracy"] > 0.9
    # Same dropout masks, so every parameter follows the same trajectory to float32 rounding, except
    # the bias of the dense layer before batch norm: its true gradient is 0 (batch norm removes the
    # mean), so it only ever receives rounding noise, which differs between the sources but stays tiny.
    hand_leaves, auto_leaves = ({jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(r.params)}
                                for r in (hand, auto))
    noise_only = "[0]['b']"
    for name in hand_leaves:
        if name != noise_only:
            assert fb.check.numerics.rel_err(hand_leaves[name], auto_leaves[name]) < 1e-5, name
    assert float(jnp.max(jnp.abs(hand_leaves[noise_only]))) < 1e-5 * float(jnp.max(jnp.abs(hand_leaves["[0]['W']"])))


def test_inputs_exactly_at_the_relu_kink_are_kinks_not_failures(key):
    net = fb.network([activation("relu"), dense(3)], (4,), output="identity", loss="mse")
    x = jnp.array([[0.0, 1.0, -2.0, 0.0], [0.5, 0.0, 0.0, -1.0]])
    report = check_network(net, key, x=x)
    assert report.passed
    (dx,) = [r for r in report.rows if r.name == "dx"]
    assert dx.verdict == "kink" and dx.kinks == 4


def test_a_different_kink_convention_is_a_kink_not_a_wrong_backward(key):
    relu_one_at_zero = fb.Activation("relu", jax.nn.relu, lambda z, a: (z >= 0).astype(z.dtype), "1[z >= 0]")
    x = jnp.array([[0.0, 1.0, -2.0, 0.0]])
    report = check_layer(activation(relu_one_at_zero), key, x)
    assert report.passed and report.rows[0].verdict == "kink"


def test_mutation_catalogue_is_caught_completely(key):
    verdicts = {}

    def passes(net):
        report = check_network(net, key)
        verdicts[id(net)] = {r.verdict for r in report.failing()}
        return report.passed

    score = catalogue_score(passes)
    assert score == {name: True for name in MUTATIONS}  # 100%
    assert all(v == {"backward wrong"} for v in verdicts.values())  # blamed on the backward, not the references


def test_control_jax_grad_as_the_hand_backward_passes(key):
    inner = fb.batch_norm()

    def autodiff_backward(params, x, dy):
        _, vjp = jax.vjp(lambda p, inp: inner.forward(p, inp)[0], params, x)
        return vjp(dy)

    layer = fb.Layer(inner.init, lambda p, x: (inner.forward(p, x)[0], x), autodiff_backward, "autodiff-backed")
    assert check_layer(layer, key, in_shape=(5,)).passed


def test_control_a_broken_finite_difference_routine_is_caught(key):
    def broken(f, tree, k, indices):  # every difference quotient doubled
        return [s._replace(slopes=2 * s.slopes) for s in finite_differences_at(f, tree, k, indices)]

    report = check_layer(dense(4), key, in_shape=(3,), finite_differences=broken)
    assert not report.passed and {r.verdict for r in report.rows} == {"references disagree"}


def test_an_impure_backward_is_caught_by_eager_vs_jit(key):
    draws = iter(np.linspace(1.0, 2.0, 10))

    def backward(params, x, dy):  # reads Python state: eager and traced calls see different numbers
        return {}, dy * float(next(draws))

    layer = fb.Layer(lambda k, s: {}, lambda p, x: (x, None), backward, "impure")
    report = check_layer(layer, key, in_shape=(3,))
    assert not report.passed and report.jit_rel_err > 1e-3


def test_float32_at_float64_tolerance_warns(key):
    with pytest.warns(UserWarning, match="judging float32 at tolerance 1e-10"):
        report = check_layer(dense(3), key, in_shape=(3,), dtype=jnp.float32, tol=1e-10)
    assert report.warnings


@pytest.mark.parametrize("output,loss", list(valid_heads())[::3] + [("softmax", "cross_entropy")])
def test_loss_heads_pass(output, loss, key):
    assert check_loss(Head(ACTIVATIONS[output], LOSSES[loss]), key).passed


def test_a_wrong_loss_head_fails(key):
    head = drop_one_over_m(reference_network()).head
    report = check_loss(head, key, shape=(4, 5))
    assert not report.passed and report.rows[0].ratio == pytest.approx(4.0)  # "x m"


THIS_FILE = __file__  # the CLI loads the layers defined above straight from this file


def test_cli_check_target_exit_codes(capsys):
    assert cli.main(["check", f"{THIS_FILE}:Scale", "--shape", "5"]) == 0  # a class: instantiated
    assert cli.main(["check", f"{THIS_FILE}:ScaleWithBug", "--shape", "5"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: params['t']" in out and "backward wrong" in out and "x0.25" in out  # mean for sum at batch 4
    assert cli.main(["check", f"{THIS_FILE}:ScaleWithBug", "--shape", "5", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["passed"] and [r["name"] for r in report["rows"] if r["verdict"] != "ok"] == ["params['t']"]


@pytest.mark.parametrize("target,message", [("no_such_module:x", "cannot import"), ("{f}:missing", "has no attribute"),
                                            ("{f}:json", "not a layer"), ("{f}:Scale", "needs --shape"),
                                            ("{f}:TensorRow", "needs arguments to build"),
                                            ("just_a_name", "module:attribute")])
def test_cli_check_target_usage_errors(capsys, target, message):
    assert cli.main(["check", target.format(f=THIS_FILE)]) == 2
    assert message in capsys.readouterr().err


def test_inverted_dropout_scales_the_kept_units_and_is_the_identity_at_inference():
    """y = x * mask / (1 - rate): kept units are x / (1 - rate), dropped ones 0, and E[y] = x."""
    layer, x = fb.dropout(0.25), jnp.ones((200, 50))
    y, _ = layer.forward({}, x, jax.random.PRNGKey(3))
    kept = np.asarray(y) != 0
    assert np.allclose(np.asarray(y)[kept], 1 / 0.75) and abs(kept.mean() - 0.75) < 0.01  # 10,000 draws: sd 0.004
    assert abs(float(jnp.mean(y)) - 1.0) < 0.02
    assert (layer.forward({}, x, None)[0] == x).all()
