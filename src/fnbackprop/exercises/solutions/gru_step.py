"""Exercise `gru_step`: one step of a GRU (Cho et al. 2014 as PyTorch's nn.GRUCell computes it).

Notation
    m, C, H      examples, input features, hidden units
    x            (m, C + H): the step's input x_t and the previous hidden state h_{t-1}, side by side
    W_ih, W_hh   (3H, C) and (3H, H): the gates' weights stacked r, z, n (PyTorch's order)
    b_ih, b_hh   (3H,) each
    h_t          the new hidden state (m, H): the step's output
    dy           dC/dh_t, (m, H)
    dW_ih, dW_hh, db_ih, db_hh, dxh   what backward returns; dxh = [dC/dx_t, dC/dh_{t-1}], shaped like x

Forward
    gi = x_t W_ih^T + b_ih,  gh = h_{t-1} W_hh^T + b_hh,  each split into its r, z, n thirds
    r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z)
    n = tanh(gi_n + r * gh_n)                  the reset gate scales W_hn h_{t-1} + b_hn, after the product
    h_t = (1 - z) * n + z * h_{t-1}

h_{t-1} reaches h_t three ways: directly (through z * h_{t-1}), and through gh into r, z and n.
Then run:  fnbackprop exercise check gru_step.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "gru_step"
HIDDEN = 3


def init(key, in_shape):
    """PyTorch's init: every entry U(-1/sqrt(H), 1/sqrt(H))."""
    C, H = in_shape[-1] - HIDDEN, HIDDEN
    k = jax.random.split(key, 4)
    u = lambda kk, shape: jax.random.uniform(kk, shape, minval=-H ** -0.5, maxval=H ** -0.5)  # noqa: E731
    return {"W_ih": u(k[0], (3 * H, C)), "W_hh": u(k[1], (3 * H, H)), "b_ih": u(k[2], (3 * H,)), "b_hh": u(k[3], (3 * H,))}


def forward(params, x):
    x_t, h_prev = x[:, :-HIDDEN], x[:, -HIDDEN:]
    gi_r, gi_z, gi_n = jnp.split(x_t @ params["W_ih"].T + params["b_ih"], 3, axis=-1)
    gh_r, gh_z, gh_n = jnp.split(h_prev @ params["W_hh"].T + params["b_hh"], 3, axis=-1)
    r, z = jax.nn.sigmoid(gi_r + gh_r), jax.nn.sigmoid(gi_z + gh_z)
    n = jnp.tanh(gi_n + r * gh_n)
    h = (1 - z) * n + z * h_prev
    return h, (x_t, h_prev, r, z, n, gh_n)


def backward(params, cache, dy):
    """Return ({"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db_ih, "b_hh": db_hh}, dxh)."""
    x_t, h_prev, r, z, n, gh_n = cache
    # BEGIN SOLUTION
    dn = dy * (1 - z)
    dz = dy * (h_prev - n)
    da_n = dn * (1 - n ** 2)
    dr = da_n * gh_n
    da_r = dr * r * (1 - r)
    da_z = dz * z * (1 - z)
    dgi = jnp.concatenate([da_r, da_z, da_n], axis=-1)
    dgh = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)
    dW_ih, db_ih = dgi.T @ x_t, jnp.sum(dgi, axis=0)
    dW_hh, db_hh = dgh.T @ h_prev, jnp.sum(dgh, axis=0)
    dx_t = dgi @ params["W_ih"]
    dh_prev = dy * z + dgh @ params["W_hh"]
    # END SOLUTION
    return {"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db_ih, "b_hh": db_hh}, jnp.concatenate([dx_t, dh_prev], axis=-1)
