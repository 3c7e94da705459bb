# %% [markdown]
# # Derive and check a dense layer's backward
#
# From Andrew Ng's equations to a passing report. Ng writes one layer as
#
# $$ Z^{[l]} = W^{[l]} A^{[l-1]} + b^{[l]} $$
#
# with examples as **columns**, and derives
#
# $$ dW^{[l]} = \frac{1}{m}\, dZ^{[l]} A^{[l-1]\top}, \qquad db^{[l]} = \frac{1}{m} \sum_i dZ^{[l]\,(i)}, \qquad
#    dA^{[l-1]} = W^{[l]\top} dZ^{[l]}. $$
#
# fnbackprop keeps examples as **rows**, $Y = X W^\top + b$, and its layers receive
# $dY = \partial C / \partial Y$, the gradient of the *averaged* cost: the $1/m$ is already in it.
# So we transpose Ng's equations into rows, and leave the $1/m$ out. First, the literal transcription,
# to see what the checker says about it.

# %%
import jax
import jax.numpy as jnp

import fnbackprop as fb
from fnbackprop.testing import report_text


def init(key, in_shape):
    return {"W": jax.random.normal(key, (4, in_shape[-1])) / jnp.sqrt(in_shape[-1]), "b": jnp.zeros(4)}


def forward(params, x):
    return x @ params["W"].T + params["b"], x


def backward_with_ng_1_over_m(params, x, dy):
    m = x.shape[0]
    return {"W": dy.T @ x / m, "b": jnp.sum(dy, axis=0) / m}, dy @ params["W"]


key = jax.random.PRNGKey(0)
report = fb.check_layer(fb.Layer(init, forward, backward_with_ng_1_over_m, "dense, Ng's 1/m"), key, in_shape=(6,), batch=8)
print(report_text(report))

# %% [markdown]
# `dW` and `db` fail with the diagnosis **scale x0.125**: the hand gradient is exactly 1/8 of the
# true one at a batch of m = 8. The $1/m$ is counted twice: once in the cost's gradient arriving as
# `dy`, once in Ng's formula. `dx` passes: Ng's $dA^{[l-1]}$ has no $1/m$.
#
# Now the rows version with the $1/m$ where fnbackprop keeps it:
#
# $$ dW = dY^\top X, \qquad db = \sum_i dY_i, \qquad dX = dY\, W. $$

# %%
def backward(params, x, dy):
    return {"W": dy.T @ x, "b": jnp.sum(dy, axis=0)}, dy @ params["W"]


report = fb.check_layer(fb.Layer(init, forward, backward, "dense"), key, in_shape=(6,), batch=8)
print(report_text(report))
assert report.passed

# %% [markdown]
# Every tensor passes: the hand gradient equals `jax.vjp` of the forward to 1e-10 in float64, and
# autodiff equals central finite differences. The same check runs on the package's own layer,
# `fb.dense(4)`, whose backward is `fnbackprop.layers.dense.dense_backward`:

# %%
import matplotlib.pyplot as plt

errors = {row.name: row.rel_err for row in fb.check_layer(fb.dense(4), key, in_shape=(6,), batch=8).rows}
plt.figure(figsize=(5, 2.5))
plt.bar(list(errors), [max(e, 1e-18) for e in errors.values()])
plt.yscale("log")
plt.axhline(1e-10, color="red", linestyle="--", label="tolerance (float64)")
plt.ylabel("relative error, hand vs autodiff")
plt.legend()
plt.tight_layout()
plt.show()
