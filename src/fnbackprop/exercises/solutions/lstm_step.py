"""Exercise `lstm_step`: one step of an LSTM (cs231n's lstm_step_forward and lstm_step_backward; PyTorch's
nn.LSTMCell).

Notation
    m, C, H      examples, input features, hidden units
    x            (m, C + 2H): the step's input x_t, and the previous states h_{t-1} and c_{t-1}, side by side
    W_ih, W_hh   (4H, C) and (4H, H): the gates' weights stacked i, f, g, o (PyTorch's order)
    b_ih, b_hh   (4H,) each
    y            (m, 2H): the new states h_t and c_t, side by side
    dy           [dC/dh_t, dC/dc_t], (m, 2H): what the layer above and the next step send back
    dW_ih, dW_hh, db_ih, db_hh, dxhc   what backward returns; dxhc = [dC/dx_t, dC/dh_{t-1}, dC/dc_{t-1}]

Forward
    a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (m, 4H), split into a_i, a_f, a_g, a_o
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

c_t is an output and also feeds h_t: the gradient entering it is the sum of both. Then run:
    fnbackprop exercise check lstm_step.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "lstm_step"
HIDDEN = 3


def init(key, in_shape):
    """PyTorch's init: every entry U(-1/sqrt(H), 1/sqrt(H))."""
    C, H = in_shape[-1] - 2 * HIDDEN, HIDDEN
    k = jax.random.split(key, 4)
    u = lambda kk, shape: jax.random.uniform(kk, shape, minval=-H ** -0.5, maxval=H ** -0.5)  # noqa: E731
    return {"W_ih": u(k[0], (4 * H, C)), "W_hh": u(k[1], (4 * H, H)), "b_ih": u(k[2], (4 * H,)), "b_hh": u(k[3], (4 * H,))}


def forward(params, x):
    H = HIDDEN
    x_t, h_prev, c_prev = x[:, :-2 * H], x[:, -2 * H:-H], x[:, -H:]
    a = x_t @ params["W_ih"].T + params["b_ih"] + h_prev @ params["W_hh"].T + params["b_hh"]
    a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)
    c = f * c_prev + i * g
    h = o * jnp.tanh(c)
    return jnp.concatenate([h, c], axis=-1), (x_t, h_prev, c_prev, i, f, g, o, c)


def backward(params, cache, dy):
    """Return ({"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db_ih, "b_hh": db_hh}, dxhc)."""
    x_t, h_prev, c_prev, i, f, g, o, c = cache
    dh, dc_out = dy[:, :HIDDEN], dy[:, HIDDEN:]
    # BEGIN SOLUTION
    dc = dc_out + dh * o * (1 - jnp.tanh(c) ** 2)
    do = dh * jnp.tanh(c)
    di, df, dg = dc * g, dc * c_prev, dc * i
    da = jnp.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=-1)
    dW_ih, dW_hh, db = da.T @ x_t, da.T @ h_prev, jnp.sum(da, axis=0)
    dx_t = da @ params["W_ih"]
    dh_prev = da @ params["W_hh"]
    dc_prev = dc * f
    # END SOLUTION
    return ({"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db, "b_hh": db},
            jnp.concatenate([dx_t, dh_prev, dc_prev], axis=-1))
