"""Exercise `lstm`: backpropagation through time in an LSTM (Hochreiter and Schmidhuber; PyTorch's nn.LSTM).

Notation
    m, T, C, H   examples, time steps, input features, hidden units; x has shape (m, T, C)
    W_ih, W_hh   (4H, C) and (4H, H): the gates' weights, stacked i, f, g, o (PyTorch's order)
    b_ih, b_hh   (4H,) each
    h_t, c_t     the hidden and cell states after step t, (m, H); h_{-1} = c_{-1} = 0
    dy           dC/dh_t for every t, (m, T, H): the gradient arriving from the layer above
    dW_ih, dW_hh, db_ih, db_hh, dx   what backward returns

Forward, at each step t
    a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (m, 4H), split into a_i, a_f, a_g, a_o
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

h_t is used twice (the output y_t, and the next step), and so is c_t (h_t, and the next step): the
gradient entering each is the sum of both uses. Go through time backwards. Then run:
    fnbackprop exercise check lstm.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "lstm"
HIDDEN = 3


def init(key, in_shape):
    C, H = in_shape[-1], HIDDEN
    k = jax.random.split(key, 4)
    u = lambda kk, shape: jax.random.uniform(kk, shape, minval=-H ** -0.5, maxval=H ** -0.5)  # noqa: E731
    return {"W_ih": u(k[0], (4 * H, C)), "W_hh": u(k[1], (4 * H, H)), "b_ih": u(k[2], (4 * H,)), "b_hh": u(k[3], (4 * H,))}


def forward(params, x):
    m, T, _ = x.shape
    h = c = jnp.zeros((m, HIDDEN), x.dtype)
    hs, steps = [], []
    for t in range(T):
        a = x[:, t] @ params["W_ih"].T + params["b_ih"] + h @ params["W_hh"].T + params["b_hh"]
        a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)
        steps.append((x[:, t], h, c, i, f, g, o))
        c = f * c + i * g
        h = o * jnp.tanh(c)
        hs.append(h)
    return jnp.stack(hs, axis=1), (steps, hs)


def backward(params, cache, dy):
    """Return ({"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db_ih, "b_hh": db_hh}, dx)."""
    steps, hs = cache
    grads = {name: jnp.zeros_like(value) for name, value in params.items()}
    dxs = [None] * len(steps)
    dh_next = dc_next = jnp.zeros_like(hs[0])
    for t in reversed(range(len(steps))):
        x_t, h_prev, c_prev, i, f, g, o = steps[t]
        c = f * c_prev + i * g
        # BEGIN SOLUTION
        dh = dy[:, t] + dh_next
        dc = dc_next + dh * o * (1 - jnp.tanh(c) ** 2)
        do = dh * jnp.tanh(c)
        di, df, dg = dc * g, dc * c_prev, dc * i
        da = jnp.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=-1)
        grads["W_ih"] = grads["W_ih"] + da.T @ x_t
        grads["W_hh"] = grads["W_hh"] + da.T @ h_prev
        grads["b_ih"] = grads["b_ih"] + jnp.sum(da, axis=0)
        grads["b_hh"] = grads["b_hh"] + jnp.sum(da, axis=0)
        dxs[t] = da @ params["W_ih"]
        dh_next = da @ params["W_hh"]
        dc_next = dc * f
        # END SOLUTION
    return grads, jnp.stack(dxs, axis=1)
