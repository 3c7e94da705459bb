"""char-rnn's model (one-hot characters, stacked recurrent layers, a linear head): the hand-written backward
of the whole model equals `jax.grad` of its loss in float64 to 1e-10, from zero states and from given
ones (truncated BPTT), for each cell."""

import jax
import jax.numpy as jnp
import pytest

from fnbackprop.check.numerics import rel_err
from fnbackprop.models import char_rnn

FLOAT64 = True


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_whole_backward_equals_autodiff(cell):
    model = char_rnn(7, hidden=5, n_layer=2, cell=cell)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(0)))
    idx = jax.random.randint(jax.random.PRNGKey(1), (3, 6), 0, 7)
    targets = jnp.roll(idx, -1, axis=1)
    loss, grads = model.value_and_grad(params, idx, targets)
    assert abs(float(loss - model.loss(params, idx, targets))) < 1e-12
    assert rel_err(grads, jax.grad(model.loss)(params, idx, targets)) < 1e-10

    states = jax.tree_util.tree_map(lambda s: jax.random.normal(jax.random.PRNGKey(2), s.shape, jnp.float64),
                                    model.zero_states(3, jnp.float64))
    loss, grads, finals = model.value_and_grad(params, idx, targets, states)
    assert rel_err(grads, jax.grad(model.loss)(params, idx, targets, states)) < 1e-10
    assert rel_err(loss, model.loss(params, idx, targets, states)) < 1e-12
    # the final states carry a sequence on: the second half from the first half's finals is the whole's second half
    _, _, mid = model.value_and_grad(params, idx[:, :3], targets[:, :3], states)
    whole = model.forward(params, idx, states)[0]
    assert rel_err(model.forward(params, idx[:, 3:], mid)[0], whole[:, 3:]) < 1e-14
    assert rel_err(mid, finals) > 1e-3  # and they are the states after 3 steps, not after 6


def test_a_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="cell"):
        char_rnn(10, cell="transformer")
    with pytest.raises(ValueError, match="n_layer"):
        char_rnn(10, n_layer=0)
