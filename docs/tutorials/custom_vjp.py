# %% [markdown]
# # Check your own `jax.custom_vjp`
#
# A numerically stable softplus, $s(x) = \log(1 + e^{x})$, with a hand-written derivative
# $s'(x) = \sigma(x) = 1 / (1 + e^{-x})$. We write the rule once with a classic slip, let
# `fb.check_vjp` find and name it, then fix it.

# %%
import jax
import jax.numpy as jnp

import fnbackprop as fb
from fnbackprop.testing import report_text


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


def softplus_fwd(x):
    y = softplus(x)
    return y, (x, y)


def softplus_bwd_wrong(residuals, dy):
    x, y = residuals
    return (dy * y,)  # the function's value where its derivative belongs


softplus.defvjp(softplus_fwd, softplus_bwd_wrong)
x = jnp.linspace(-3.0, 3.0, 7)
report = fb.check_vjp(softplus, x)
print(report_text(report))

# %% [markdown]
# The rule fails in float64 and under every transform, and the diagnosis says what kind of mistake:
# the hand gradient equals $dy \cdot s(x)$, the activation where its derivative belongs. The
# checker finds this by rebuilding the forward with each textbook slip applied to its elementwise
# steps and comparing. The fix multiplies by $\sigma(x)$:

# %%
def softplus_bwd(residuals, dy):
    x, _ = residuals
    return (dy * jax.nn.sigmoid(x),)


softplus.defvjp(softplus_fwd, softplus_bwd)
fixed = fb.check_vjp(softplus, x)
print(report_text(fixed))
assert fixed.passed and not report.passed

# %% [markdown]
# In a test suite, `fnbackprop.testing.assert_vjp_correct(softplus, x)` raises with this report when
# a rule is wrong. From the shell, `fnbackprop check my_module.py:softplus --args "f64[7]"` prints the
# same table.
