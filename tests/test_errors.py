"""Bad input gets a ValueError/TypeError naming the problem, never a deep JAX trace."""

import jax
import jax.numpy as jnp
import pytest

import fnbackprop as fb


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(sizes=[4]), "at least two entries"),
        (dict(sizes=[4, 0, 2]), "positive integer"),
        (dict(sizes=[4, -3]), "positive integer"),
        (dict(sizes=[4, 2.5]), "positive integer"),
        (dict(sizes=[4, 3, 2], hidden="swish7"), "unknown activation 'swish7'"),
        (dict(sizes=[4, 3, 2], hidden="softmax"), "output layer"),
        (dict(sizes=[4, 3, 3, 2], hidden=["relu"]), "1 activations for 2 hidden layers"),
        (dict(sizes=[4, 2], loss="hinge"), "unknown loss 'hinge'"),
        (dict(sizes=[4, 2], output="relu", loss="cross_entropy"), "needs output activation 'softmax'"),
        (dict(sizes=[4, 2], output="softmax", loss="bce"), "needs output activation 'sigmoid'"),
        (dict(sizes=[4, 2], init="xavier9"), "unknown init scheme"),
    ],
)
def test_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fb.mlp(**kwargs)


@pytest.fixture(scope="module")
def classifier():
    net = fb.mlp([4, 3, 3], output="softmax", loss="cross_entropy")
    return net, net.init(jax.random.PRNGKey(0))


def test_x_of_the_wrong_width_names_the_expected_shape(classifier):
    net, params = classifier
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\), got \(2, 5\)"):
        net.apply(params, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        jax.jit(net.value_and_grad)(params, jnp.ones((2, 5)), jnp.array([0, 1]))  # at trace time


def test_x_must_be_floating_and_finite(classifier):
    net, params = classifier
    with pytest.raises(TypeError, match="floating-point"):
        net.apply(params, jnp.ones((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        net.loss(params, jnp.array([[0.0, jnp.nan, 0, 0]]), jnp.array([0]))


def test_targets_of_the_wrong_shape(classifier):
    net, params = classifier
    x = jnp.ones((2, 4))
    with pytest.raises(ValueError, match=r"y must have shape \(2, 3\), got \(2, 2\)"):
        net.loss(params, x, jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        net.loss(params, x, jnp.array([0, 1, 2]))


def test_labels_out_of_range(classifier):
    net, params = classifier
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values from 0 to 3"):
        net.value_and_grad(params, jnp.ones((2, 4)), jnp.array([0, 3]))


def test_integer_labels_need_two_classes():
    net = fb.mlp([4, 1])
    with pytest.raises(ValueError, match="integer labels need an output width of at least 2"):
        net.loss(net.init(jax.random.PRNGKey(0)), jnp.ones((2, 4)), jnp.array([0, 1]))


def test_target_values_checked_where_concrete(classifier):
    net, params = classifier
    with pytest.raises(ValueError, match="summing to 1"):
        net.loss(params, jnp.ones((1, 4)), jnp.array([[1.0, 1.0, 0.0]]))
    bce = fb.mlp([4, 2], output="sigmoid", loss="bce")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        bce.loss(bce.init(jax.random.PRNGKey(0)), jnp.ones((1, 4)), jnp.array([[2.0, 0.0]]))


def test_params_of_another_network(classifier):
    net, params = classifier
    with pytest.raises(ValueError, match="params has 1 entries; this network has 2"):
        net.apply(params[:1], jnp.ones((1, 4)))
    with pytest.raises(TypeError, match="list returned by net.init"):
        net.apply({"W": 1}, jnp.ones((1, 4)))
