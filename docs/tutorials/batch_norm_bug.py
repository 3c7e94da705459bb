# %% [markdown]
# # Find the bug in a broken batch-norm backward
#
# Batch normalisation over a batch of m examples:
#
# $$ \mu = \frac{1}{m}\sum_i x_i, \quad \sigma^2 = \frac{1}{m}\sum_i (x_i - \mu)^2, \quad
#    \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad y = \gamma \hat x + \beta. $$
#
# Below is a backward with one mistake in it. We let the checker find which tensor is wrong, then
# look at *how* it is wrong.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import fnbackprop as fb
from fnbackprop.testing import report_text

EPS = 1e-5


def init(key, in_shape):
    return {"gamma": jnp.ones(in_shape[-1]), "beta": jnp.zeros(in_shape[-1])}


def forward(params, x):
    mu = x.mean(0)
    inv_std = 1 / jnp.sqrt(((x - mu) ** 2).mean(0) + EPS)
    xhat = (x - mu) * inv_std
    return params["gamma"] * xhat + params["beta"], (xhat, inv_std)


def broken_backward(params, cache, dy):
    xhat, inv_std = cache
    m = dy.shape[0]
    dxhat = dy * params["gamma"]
    dx = inv_std / m * (m * dxhat - xhat * jnp.sum(dxhat * xhat, axis=0))
    return {"gamma": jnp.sum(dy * xhat, 0), "beta": jnp.sum(dy, 0)}, dx


key = jax.random.PRNGKey(0)
layer = fb.Layer(init, forward, broken_backward, "batch norm (broken)")
report = fb.check_layer(layer, key, in_shape=(5,), batch=8)
print(report_text(report))

# %% [markdown]
# `dgamma` and `dbeta` pass; `dx` fails with no simple pattern (not a scale, not a sign, not a
# transpose). So the mistake is inside the `dx` line. Compare the broken `dx` with autodiff's at the
# same point, entry by entry:

# %%
with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 5), jnp.float64)
    params = {"gamma": jnp.linspace(0.5, 1.5, 5), "beta": jnp.zeros(5)}
    dy = jax.random.normal(jax.random.PRNGKey(2), (8, 5), jnp.float64)
    y, cache = forward(params, x)
    hand = broken_backward(params, cache, dy)[1]
    auto = jax.vjp(lambda v: forward(params, v)[0], x)[1](dy)[0]
difference = np.asarray(hand - auto)

plt.figure(figsize=(5, 3))
plt.imshow(difference, cmap="coolwarm")
plt.colorbar(label="hand dx - autodiff dx")
plt.xlabel("feature")
plt.ylabel("example")
plt.tight_layout()
plt.show()
print("spread of the difference down each column:", np.ptp(difference, axis=0).round(12))

# %% [markdown]
# The difference is **the same for every example of a feature**: a constant per column. A term that
# does not depend on $i$ and sums over the batch is missing: the path through the mean $\mu$,
# $-\frac{1}{m}\sqrt{\sigma^2+\epsilon}^{\,-1} \sum_i d\hat x_i$. The exercise grader names it directly
# (`fnbackprop exercise check` on the `batch_norm` exercise says "your dx leaves out the path through
# the mean"). Put the term back:

# %%
def backward(params, cache, dy):
    xhat, inv_std = cache
    m = dy.shape[0]
    dxhat = dy * params["gamma"]
    dx = inv_std / m * (m * dxhat - jnp.sum(dxhat, axis=0) - xhat * jnp.sum(dxhat * xhat, axis=0))
    return {"gamma": jnp.sum(dy * xhat, 0), "beta": jnp.sum(dy, 0)}, dx


fixed = fb.check_layer(fb.Layer(init, forward, backward, "batch norm"), key, in_shape=(5,), batch=8)
print(report_text(fixed))
assert fixed.passed and not report.passed
