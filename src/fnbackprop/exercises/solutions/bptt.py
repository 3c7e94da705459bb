"""Exercise `bptt`: backpropagation through time in a vanilla RNN over a whole sequence (cs231n's rnn_forward
and rnn_backward; Karpathy's min-char-rnn; PyTorch's nn.RNN with tanh, one layer).

Notation
    m, T, C, H   examples, time steps, input features, hidden units; x has shape (m, T, C)
    W_ih, W_hh   (H, C) and (H, H); b_ih, b_hh (H,) each
    h_t          the hidden state after step t, (m, H); h_{-1} = 0; the layer's output is every h_t, (m, T, H)
    dy           dC/dh_t for every t, (m, T, H): the gradient arriving from the layer above only
    dW_ih, dW_hh, db_ih, db_hh, dx   what backward returns

Forward, at each step t
    a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    h_t = tanh(a_t)

h_t is used twice: as the output y_t and as the next step's h_{t-1}. The gradient entering it is the sum
of both uses, so step t's backward needs step t + 1's first. Each weight is used at every step: its
gradient is the sum of the steps' shares (Lei's fan-out rule). Then run:  fnbackprop exercise check bptt.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "bptt"
HIDDEN = 3


def init(key, in_shape):
    """PyTorch's init: every entry U(-1/sqrt(H), 1/sqrt(H))."""
    C, H = in_shape[-1], HIDDEN
    k = jax.random.split(key, 4)
    u = lambda kk, shape: jax.random.uniform(kk, shape, minval=-H ** -0.5, maxval=H ** -0.5)  # noqa: E731
    return {"W_ih": u(k[0], (H, C)), "W_hh": u(k[1], (H, H)), "b_ih": u(k[2], (H,)), "b_hh": u(k[3], (H,))}


def forward(params, x):
    m, T, _ = x.shape
    h = jnp.zeros((m, HIDDEN), x.dtype)
    hs, h_prevs = [], []
    for t in range(T):
        h_prevs.append(h)
        h = jnp.tanh(x[:, t] @ params["W_ih"].T + params["b_ih"] + h @ params["W_hh"].T + params["b_hh"])
        hs.append(h)
    return jnp.stack(hs, axis=1), (x, h_prevs, hs)


def backward(params, cache, dy):
    """Return ({"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db_ih, "b_hh": db_hh}, dx)."""
    x, h_prevs, hs = cache
    T = x.shape[1]
    grads = {name: jnp.zeros_like(value) for name, value in params.items()}
    dxs = [None] * T
    dh_next = jnp.zeros_like(hs[0])
    # BEGIN SOLUTION
    for t in reversed(range(T)):
        dh = dy[:, t] + dh_next
        da = dh * (1 - hs[t] ** 2)
        grads["W_ih"] = grads["W_ih"] + da.T @ x[:, t]
        grads["W_hh"] = grads["W_hh"] + da.T @ h_prevs[t]
        grads["b_ih"] = grads["b_ih"] + jnp.sum(da, axis=0)
        grads["b_hh"] = grads["b_hh"] + jnp.sum(da, axis=0)
        dxs[t] = da @ params["W_ih"]
        dh_next = da @ params["W_hh"]
    # END SOLUTION
    return grads, jnp.stack(dxs, axis=1)
