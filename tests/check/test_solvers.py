"""Rules over solvers: custom_vjp rules around lax.while_loop (a fixed point by implicit differentiation, a
Newton root, an iterative linear solve), written here, each correct and with one planted mistake. Reverse
mode refuses the primal's loop, so the reference is forward mode (jax.jacfwd through the iterations) and
float64 finite differences; correct rules pass, wrong ones fail, and the report says which reference it
used."""

import jax
import jax.numpy as jnp
import pytest

import fnbackprop as fb

FLOAT64 = True


def fixed_point_rule(mistake=False):
    """x = tanh(W x + theta), iterated to |x_k+1 - x_k| < 1e-13. Implicit function theorem: with D = 1 - x^2,
    (I - D W) dx = D (dW x + dtheta), so u = (I - D W)^-T ct, dtheta = D u, dW = (D u) x^T. The mistake solves
    with (I - D W) where its transpose belongs."""
    def solve(W, theta):
        def step(carry):
            x, _, k = carry
            return jnp.tanh(W @ x + theta), x, k + 1

        def going(carry):
            x, previous, k = carry
            return (jnp.max(jnp.abs(x - previous)) > 1e-13) & (k < 500)

        return jax.lax.while_loop(going, step, step((jnp.zeros_like(theta), theta, 0)))[0]

    @jax.custom_vjp
    def fixed_point(W, theta):
        return solve(W, theta)

    def fwd(W, theta):
        x = solve(W, theta)
        return x, (W, x)

    def bwd(residuals, ct):
        W, x = residuals
        D = 1 - x ** 2
        A = jnp.eye(x.shape[0]) - D[:, None] * W
        u = jnp.linalg.solve(A if mistake else A.T, ct)
        return jnp.outer(D * u, x), D * u

    fixed_point.defvjp(fwd, bwd)
    return fixed_point


def newton_rule(mistake=False):
    """The root of x^3 + a x - b = 0, entry by entry, by Newton's method. dx/db = 1 / (3x^2 + a),
    dx/da = -x / (3x^2 + a). The mistake drops the minus sign of dx/da."""
    def solve(a, b):
        def step(carry):
            x, k = carry
            return x - (x ** 3 + a * x - b) / (3 * x ** 2 + a), k + 1

        def going(carry):
            x, k = carry
            return (jnp.max(jnp.abs(x ** 3 + a * x - b)) > 1e-14) & (k < 100)

        return jax.lax.while_loop(going, step, (b / a, 0))[0]

    @jax.custom_vjp
    def root(a, b):
        return solve(a, b)

    def fwd(a, b):
        x = solve(a, b)
        return x, (a, x)

    def bwd(residuals, ct):
        a, x = residuals
        inverse = 1 / (3 * x ** 2 + a)
        return ((x if mistake else -x) * inverse * ct, inverse * ct)

    root.defvjp(fwd, bwd)
    return root


def jacobi_rule(mistake=False):
    """A x = b by Jacobi iterations (A diagonally dominant). u = A^-T ct (the same solver on A^T), db = u,
    dA = -u x^T. The mistake returns -x u^T."""
    def solve(A, b):
        D = jnp.diag(A)
        R = A - jnp.diag(D)

        def step(carry):
            x, _, k = carry
            return (b - R @ x) / D, x, k + 1

        def going(carry):
            x, previous, k = carry
            return (jnp.max(jnp.abs(x - previous)) > 1e-14) & (k < 1000)

        return jax.lax.while_loop(going, step, step((jnp.zeros_like(b), b, 0)))[0]

    @jax.custom_vjp
    def linear_solve(A, b):
        return solve(A, b)

    def fwd(A, b):
        x = solve(A, b)
        return x, (A, x)

    def bwd(residuals, ct):
        A, x = residuals
        u = solve(A.T, ct)
        return (-jnp.outer(x, u) if mistake else -jnp.outer(u, x)), u

    linear_solve.defvjp(fwd, bwd)
    return linear_solve


def points():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    return {"fixed point": (fixed_point_rule, (0.3 * jax.random.normal(k[0], (4, 4)), jax.random.normal(k[1], (4,)))),
            "newton": (newton_rule, (1 + jax.random.uniform(k[2], (3,)), jax.random.normal(k[3], (3,)))),
            "jacobi": (jacobi_rule, (5 * jnp.eye(4) + 0.5 * jax.random.normal(k[0], (4, 4)), jax.random.normal(k[1], (4,))))}


@pytest.mark.parametrize("name", ["fixed point", "newton", "jacobi"])
def test_a_rule_over_a_while_loop_is_judged_by_forward_mode(name):
    make, args = points()[name]
    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work"):
        jax.grad(lambda *a: jnp.sum(make().fun(*a)))(*args)  # what made every such check `raised` before
    right = fb.check_vjp(make(), *args)
    assert right.passed, right
    assert any(note.startswith("reference: forward mode") for note in right.notes)
    wrong = fb.check_vjp(make(mistake=True), *args)
    assert not wrong.passed and {r.verdict for r in wrong.failing()} == {"backward wrong"}, wrong


def test_the_planted_transpose_in_the_solver_rule_is_named():
    make, args = points()["jacobi"]
    report = fb.check_vjp(make(mistake=True), *args, transforms=())
    (row,) = report.failing()
    assert row.name == "args[0]" and row.diagnosis.startswith("transpose")


def test_past_the_size_of_jacfwd_the_dot_product_test_judges():
    """10,000 input entries: forward mode by jax.jacfwd would take 10,000 passes; the dot-product test along
    random directions per leaf takes 6 each, and still tells the right rule from the wrong one."""
    make, _ = points()["newton"]
    a, b = jnp.full((5000,), 2.0), jnp.linspace(-2.0, 2.0, 5000)
    right = fb.check_vjp(make(), a, b, transforms=())
    assert right.passed and "dot-product test" in right.notes[0], right
    wrong = fb.check_vjp(make(mistake=True), a, b, transforms=())
    assert [r.name for r in wrong.failing()] == ["args[0]"] and wrong.failing()[0].verdict == "backward wrong"
