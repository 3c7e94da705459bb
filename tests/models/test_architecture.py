"""`--layers`: a conv network from a one-line spec, built, trained, resumed and refused with one-line errors."""

import json

import jax
import jax.numpy as jnp
import pytest

import fnbackprop as fb
from fnbackprop import cli
from fnbackprop.models.architecture import layers_from_spec

NIELSEN_CH6 = "conv(20,5) maxpool(2) conv(40,5) maxpool(2) dense(100) relu"


def test_nielsens_two_conv_pool_network_has_the_shapes_worked_out_by_hand():
    layers = layers_from_spec(NIELSEN_CH6, 10, (28, 28, 1), 784)
    net = fb.network(layers, (784,), output="softmax", loss="cross_entropy")
    shapes = [jax.tree_util.tree_map(jnp.shape, p) for p in net.init(jax.random.PRNGKey(0)) if p]
    # 28 - 5 + 1 = 24, pooled 12; 12 - 5 + 1 = 8, pooled 4; 4 x 4 x 40 = 640 features into dense(100)
    assert shapes == [{"W": (5, 5, 1, 20), "b": (20,)}, {"W": (5, 5, 20, 40), "b": (40,)}, {"W": (100, 640), "b": (100,)},
                      {"W": (10, 100), "b": (10,)}]
    assert [layer.name.split("(")[0] for layer in layers] == ["reshape", "conv2d", "max_pool", "conv2d", "max_pool", "flatten",
                                                              "dense", "relu", "dense"]


@pytest.mark.parametrize("spec,image,message", [
    ("convv(8,3)", (8, 8, 1), "unknown layer 'convv'"),
    ("conv 8", (8, 8, 1), "conv needs its arguments in parentheses"),
    ("relu(2)", (8, 8, 1), "relu takes no arguments"),
    ("conv(8,3,1,middle)", (8, 8, 1), "cannot read the arguments of conv(8,3,1,middle)"),
    ("dense(8) maxpool(2)", (8, 8, 1), "maxpool cannot follow a dense or flatten layer"),
    ("conv(8,3)", None, "conv needs image inputs"),
    ("conv(8,9)", (8, 8, 1), "does not fit its input shape (8, 8, 1)"),
])
def test_a_spec_that_cannot_be_built_is_refused_in_words(spec, image, message):
    with pytest.raises(ValueError) as err:
        layers_from_spec(spec, 10, image, 64)
    assert message in str(err.value)


@pytest.mark.slow  # 13 s: two conv training runs (suite time)
def test_train_a_conv_net_from_the_command_line_and_resume_it(tmp_path, capfd):
    argv = ["train", "--dataset", "digits", "--layers", "conv(4,3) relu maxpool(2) dense(16) relu", "--out", str(tmp_path)]
    assert cli.main([*argv, "--epochs", "1"]) == 0
    assert cli.main([*argv, "--epochs", "2", "--resume"]) == 0
    out = capfd.readouterr().out
    assert "reshape(8, 8, 1) conv2d(4, 3x3) relu max_pool(2x2) flatten dense(16) relu dense(10)" in out
    assert "gradient check: hand-coded backward agrees with jax.grad" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert [e["epoch"] for e in results["epochs"]] == [1, 2] and results["config"]["layers"].startswith("conv(4,3)")
    assert results["epochs"][1]["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert cli.main(["train", "--dataset", "digits", "--layers", "conv(4,30)"]) == 2
    assert "does not fit its input shape" in "".join(capfd.readouterr())
