"""The matrix products read from a traced program (`fnbackprop.bench.products`): shapes and FLOPs written out by hand."""

import jax
import jax.numpy as jnp

from fnbackprop.bench.products import dot_flops, jaxpr_dots


def test_the_products_counted_are_every_product_the_program_runs():
    """jaxpr_dots finds products inside a jitted inner function and counts a scan's body once per iteration:
    x @ w once, the inner einsum once, the scan's product 3 times. FLOPs: 2 x 4 x 5 x 6 = 240 for x @ w,
    2 x 2 x 5 x 5 x 5 = 500 for the batched einsum, 3 x 2 x 4 x 6 x 6 = 864 for the scan."""
    def program(x, w, a):
        inner = jax.jit(lambda a: jnp.einsum("bij,bjk->bik", a, a))
        y = jax.lax.scan(lambda c, _: (c @ jnp.ones((6, 6)), None), x @ w, None, length=3)[0]
        return y, inner(a)

    dots = jaxpr_dots(jax.make_jaxpr(program)(jnp.ones((4, 5)), jnp.ones((5, 6)), jnp.ones((2, 5, 5))).jaxpr)
    assert sorted((tuple(lhs.shape), tuple(rhs.shape)) for lhs, rhs, _ in dots) == [
        ((2, 5, 5), (2, 5, 5)), ((4, 5), (5, 6)), ((4, 6), (6, 6)), ((4, 6), (6, 6)), ((4, 6), (6, 6))]
    assert dot_flops(dots) == 240 + 500 + 864
