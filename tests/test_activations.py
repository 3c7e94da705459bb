"""Each hand-written derivative against jax.grad of its own function, kinks included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnbackprop.activations import ACTIVATIONS, get_activation, softmax_vjp

FLOAT64 = True  # conftest: the module runs with jax_enable_x64 (float64 references at 1e-10)

ELEMENTWISE = [name for name, act in ACTIVATIONS.items() if act.derivative is not None]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_derivative_matches_autodiff(name, key):
    act = ACTIVATIONS[name]
    z = 3 * jax.random.normal(key, (200,), jnp.float64)
    z = z[jnp.abs(jnp.abs(z) - 1) > 1e-3]  # keep clear of huber's joins at +-1
    z = z[jnp.abs(z) > 1e-3]  # and of the ReLU-type kink at 0
    expected = jax.vmap(jax.grad(act.fn))(z)
    # atol 1e-14: a few float64 roundings of a derivative of order 1. In GELU's left tail 1 + tanh(u) cancels
    # to about 1e-13 in both forms, so their difference there is rounding (2e-15 measured), not a mistake.
    np.testing.assert_allclose(act.derivative(z, act.fn(z)), expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_derivative_at_kinks_follows_jax_convention(name):
    """At z = 0 and z = +-1 the hand derivative takes the value jax.grad takes (relu: 0, leaky: 1)."""
    act = ACTIVATIONS[name]
    z = jnp.array([-1.0, 0.0, 1.0], jnp.float64)
    np.testing.assert_allclose(act.derivative(z, act.fn(z)), jax.vmap(jax.grad(act.fn))(z), rtol=1e-13)


def test_relu_derivative_is_zero_at_zero():
    relu = ACTIVATIONS["relu"]
    assert float(relu.derivative(jnp.zeros(1), jnp.zeros(1))[0]) == 0.0


def test_softmax_backward_is_the_jacobian_vector_product(key):
    z, da = jax.random.normal(key, (2, 4, 6), jnp.float64)
    a, vjp = jax.vjp(lambda t: jax.nn.softmax(t, axis=-1), z)
    np.testing.assert_allclose(softmax_vjp(a, da), vjp(da)[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ACTIVATIONS["softmax"].backward(z, a, da), vjp(da)[0], rtol=1e-12, atol=1e-15)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="unknown activation 'relu6'.*sigmoid"):
        get_activation("relu6", hidden=True)


def test_softmax_is_output_only():
    with pytest.raises(ValueError, match="output layer"):
        get_activation("softmax", hidden=True)
    assert get_activation("softmax", hidden=False).name == "softmax"
