"""Exercise `rnn_step`: one step of a vanilla RNN (cs231n's rnn_step_forward and rnn_step_backward; PyTorch's
nn.RNNCell with tanh).

Notation
    m, C, H      examples, input features, hidden units
    x            (m, C + H): the step's input x_t and the previous hidden state h_{t-1}, side by side
    W_ih, W_hh   (H, C) and (H, H); b_ih, b_hh (H,) each
    h_t          the new hidden state (m, H): the step's output
    dy           dC/dh_t, (m, H), arriving from above and from the next step
    dW_ih, dW_hh, db_ih, db_hh, dxh   what backward returns; dxh = [dC/dx_t, dC/dh_{t-1}], shaped like x

Forward
    a   = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (m, H)
    h_t = tanh(a)

The step's backward is the whole of backpropagation through time but for the sum over steps: the
`bptt` exercise repeats it. Then run:  fnbackprop exercise check rnn_step.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "rnn_step"
HIDDEN = 3


def init(key, in_shape):
    """PyTorch's init: every entry U(-1/sqrt(H), 1/sqrt(H))."""
    C, H = in_shape[-1] - HIDDEN, HIDDEN
    k = jax.random.split(key, 4)
    u = lambda kk, shape: jax.random.uniform(kk, shape, minval=-H ** -0.5, maxval=H ** -0.5)  # noqa: E731
    return {"W_ih": u(k[0], (H, C)), "W_hh": u(k[1], (H, H)), "b_ih": u(k[2], (H,)), "b_hh": u(k[3], (H,))}


def forward(params, x):
    x_t, h_prev = x[:, :-HIDDEN], x[:, -HIDDEN:]
    a = x_t @ params["W_ih"].T + params["b_ih"] + h_prev @ params["W_hh"].T + params["b_hh"]
    h = jnp.tanh(a)
    return h, (x_t, h_prev, h)


def backward(params, cache, dy):
    """Return ({"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db_ih, "b_hh": db_hh}, dxh)."""
    x_t, h_prev, h = cache
    # BEGIN SOLUTION
    da = dy * (1 - h ** 2)
    dW_ih = da.T @ x_t
    dW_hh = da.T @ h_prev
    db = jnp.sum(da, axis=0)
    dx_t = da @ params["W_ih"]
    dh_prev = da @ params["W_hh"]
    # END SOLUTION
    return {"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db, "b_hh": db}, jnp.concatenate([dx_t, dh_prev], axis=-1)
