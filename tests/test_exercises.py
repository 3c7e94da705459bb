"""The exercises: every reference solution passes `fnbackprop exercise check`; typical student mistakes,
written here as edits of the solution independently of the catalogue's slips (other spellings of the
same slips, and mistakes the catalogue does not list because the checker's generic kinds name them),
fail with their kind named and without the solution printed; the template is not graded as right."""

from __future__ import annotations


import pytest

from fnbackprop.cli import main
from fnbackprop.exercises import EXERCISES, grade, solution_source, template_source

#: (exercise, the edit: old -> new in the solution, the kind the grade must name). Written from what
#: students get wrong (cs231n, Karpathy's "backprop ninja"), not from the catalogue.
MISTAKES = [
    ("dense", "dW = dy.T @ x", "dW = x.T @ dy", "transpose"),
    ("dense", 'dx = dy @ params["W"]', 'dx = dy @ params["W"].T', "shapes"),
    ("dense", "db = jnp.sum(dy, axis=0)", "db = jnp.mean(dy, axis=0)", "scale"),
    ("dense", "dW = dy.T @ x", "dW = dy.T @ x / x.shape[0]", "scale"),
    ("dense", 'dx = dy @ params["W"]', 'dx = -dy @ params["W"]', "sign"),
    ("dense", "db = jnp.sum(dy, axis=0)", "db = dy", "broadcast-sum"),
    ("sigmoid", "dz = da * a * (1 - a)", "dz = da", "missing-derivative"),
    ("sigmoid", "dz = da * a * (1 - a)", "dz = da * a", "activation-for-derivative"),
    ("sigmoid", "dz = da * a * (1 - a)", "dz = da * a * (a - 1)", "sign"),
    ("sigmoid", "dz = da * a * (1 - a)", "s = 1 / (1 + jnp.exp(-a))\n    dz = da * s * (1 - s)", "derivative at the output"),
    ("tanh", "dz = da * (1 - a ** 2)", "dz = da * (1 - z * z)", "derivative in terms of the wrong variable"),
    ("tanh", "dz = da * (1 - a ** 2)", "dz = da", "missing-derivative"),
    ("relu", "dz = da * (z > 0)", "dz = da", "missing-derivative"),
    ("relu", "dz = da * (z > 0)", "dz = jnp.where(z <= 0, da, 0.0)", "wrong mask"),
    ("softmax", "dz = a * (da - jnp.sum(da * a, axis=-1, keepdims=True))", "dz = da * a * (1 - a)", "diagonal only"),
    ("softmax", "dz = a * (da - jnp.sum(da * a, axis=-1, keepdims=True))",
     "dz = a * (da - jnp.sum(da * a, axis=0, keepdims=True))", "sum over the wrong axis"),
    ("softmax", "dz = a * (da - jnp.sum(da * a, axis=-1, keepdims=True))", "dz = jnp.sin(da) * a", "not"),  # fits no kind
    ("softmax_cross_entropy", "dz = dC * (a - y) / m", "dz = dC * (a - y)", "scale"),
    ("softmax_cross_entropy", "dz = dC * (a - y) / m", "dz = dC * (y - a) / m", "sign"),
    ("softmax_cross_entropy", "dz = dC * (a - y) / m", "dz = -dC * y / (a * m)", "missing derivative"),
    ("quadratic_cost", "da = dC * (a - y) / m", "da = dC * (a - y)", "scale"),
    ("quadratic_cost", "da = dC * (a - y) / m", "da = dC * 2 * (a - y) / m", "scale"),
    ("dropout", "dx = dy * mask / (1 - RATE)", "dx = dy", "missing-derivative"),
    ("dropout", "dx = dy * mask / (1 - RATE)", "dx = mask * dy", "missing scale"),
    ("batch_norm", "dbeta = jnp.sum(dy, axis=0)", "dbeta = jnp.mean(dy, axis=0)", "scale"),
    ("batch_norm", "dgamma = jnp.sum(dy * xhat, axis=0)", "dgamma = jnp.sum(dy, axis=0)", "swapped"),
    ("batch_norm", "dgamma = jnp.sum(dy * xhat, axis=0)", "dgamma = jnp.sum(dy * xhat, axis=1)", "shapes"),
    ("batch_norm", "(m * dxhat - jnp.sum(dxhat, axis=0) - xhat", "(m * dxhat - xhat", "missing term"),
    ("batch_norm", "- xhat * jnp.sum(dxhat * xhat, axis=0))", ")", "missing term"),
    ("batch_norm", 'dxhat = dy * params["gamma"]', "dxhat = dy", "missing gamma"),
    ("batch_norm", "jnp.sum(dxhat, axis=0) - xhat * jnp.sum(dxhat * xhat, axis=0)",
     "jnp.sum(dxhat, axis=-1, keepdims=True) - xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True)", "sum over the wrong axis"),
    ("layer_norm", "(n * dxhat - jnp.sum(dxhat, axis=-1, keepdims=True)\n", "(n * dxhat\n", "missing term"),
    ("layer_norm", "dbeta = jnp.sum(dy, axis=0)", "dbeta = jnp.sum(dy, axis=0) / dy.shape[0]", "scale"),
    ("residual", "dx = dy + dz1 @ params[\"W1\"]", "dx = dz1 @ params[\"W1\"]", "missing path"),
    ("residual", "dz1 = dh * (1 - h ** 2)", "dz1 = dh", "missing-derivative"),
    ("residual", "dW2 = dy.T @ h", "dW2 = h.T @ dy", "transpose"),
    ("conv2d", "db = jnp.sum(dz, axis=(0, 1, 2))", "db = jnp.sum(dz, axis=0)", "broadcast-sum"),
    ("conv2d", "dz @ w[i, j].T)", "dz @ w[i, j])", "shapes"),
    ("conv2d", ".add(dz @ w[i, j].T)", ".set(dz @ w[i, j].T)", "overwritten sums"),
    ("max_pool", "dwindows = is_max * dy[:, :, None, :, None, :]",
     "dwindows = jnp.broadcast_to(dy[:, :, None, :, None, :], windows.shape)", "gradient to every entry"),
    ("attention", "dq = ds @ k / jnp.sqrt(c)\n    dk = jnp.swapaxes(ds, -1, -2) @ q / jnp.sqrt(c)",
     "dq = ds @ k\n    dk = jnp.swapaxes(ds, -1, -2) @ q", "missing scale"),
    ("attention", "ds = P * (dP - jnp.sum(dP * P, axis=-1, keepdims=True))", "ds = dP", "missing derivative"),
    ("attention", 'dW_proj = jnp.einsum("mtc,mtd->cd", dy, o)', 'dW_proj = -jnp.einsum("mtc,mtd->cd", dy, o)', "sign"),
    ("embedding", "dwte = jnp.zeros_like(params[\"wte\"]).at[idx].add(dx)", "dwte = jnp.zeros_like(params[\"wte\"]).at[idx].set(dx)",
     "overwritten sums"),
    ("embedding", "jnp.sum(dx, axis=0)", "jnp.mean(dx, axis=0)", "scale"),
    ("embedding", "jnp.sum(dx, axis=0)", "jnp.sum(dx, axis=1)", "shapes"),
    ("sigmoid", "dz = da * a * (1 - a)", "dz = a - a * a", "upstream gradient left out"),
    ("relu", "dz = da * (z > 0)", "dz = jnp.where(z > 0, 1.0, 0.0)", "upstream gradient left out"),
    ("quadratic_cost", "da = dC * (a - y) / m", "da = (a - y) / m", "seed left out"),
    ("quadratic_cost", "da = dC * (a - y) / m", "da = dC * (a - y) / (2 * m)", "scale"),
    ("dropout", "dx = dy * mask / (1 - RATE)", "dx = dy * mask * (1 - RATE)", "scale"),
    ("batch_norm", "(m * dxhat - jnp.sum(dxhat, axis=0) - xhat", "(m * dxhat + jnp.sum(dxhat, axis=0) - xhat", "sign of a term"),
    ("batch_norm", "(m * dxhat - jnp.sum(dxhat, axis=0) - xhat", "(m * dxhat - dxhat.mean(0) - xhat", "mean where a sum belongs"),
    ("batch_norm", "dbeta = jnp.sum(dy, axis=0)", "dbeta = jnp.sum(dy)", "shapes"),
    ("batch_norm", "dgamma = jnp.sum(dy * xhat, axis=0)", "dgamma = jnp.sum(dy * xhat, axis=0, keepdims=True)", "broadcast-sum"),
    ("layer_norm", "dgamma = jnp.sum(dy * xhat, axis=0)", "dgamma = jnp.sum(dy * xhat, axis=-1)", "shapes"),
    ("residual", "dx = dy + dz1 @ params[\"W1\"]", "dx = dy + dz1 @ params[\"W1\"].T", "transpose"),
    ("attention", "dk = jnp.swapaxes(ds, -1, -2) @ q / jnp.sqrt(c)", "dk = ds @ q / jnp.sqrt(c)", "transpose of dS"),
    ("attention", "dv = jnp.swapaxes(P, -1, -2) @ do", "dv = P @ do", "transpose of P"),
    ("residual", "dx = dy + dz1 @ params[\"W1\"]", "dx = dy - dz1 @ params[\"W1\"]", "sign of a path"),
    ("layer_norm", "(n * dxhat - jnp.sum(dxhat, axis=-1, keepdims=True)", "(n * dxhat + dxhat.sum(-1, keepdims=True)",
     "sign of a term"),
    ("layer_norm", "dx = inv_std / n * (", "dx = inv_std * (", "scale"),
    ("batch_norm", "dx = inv_std / m * (", "dx = inv_std * (", "scale"),
    ("conv2d", 'jnp.einsum("npqc,npqf->cf", window, dz)', 'jnp.einsum("npqc,npqf->fc", window, dz)', "shapes"),
    ("max_pool", "dwindows = is_max * dy[:, :, None, :, None, :]", "dwindows = jnp.logical_not(is_max) * dy[:, :, None, :, None, :]",
     "wrong mask"),
    ("softmax_cross_entropy", "dz = dC * (a - y) / m", "dz = dC * (a - y) / m / m", "scale"),
    ("lstm", "dh = dy[:, t] + dh_next", "dh = dy[:, t] + 0 * dh_next", "recurrent gradient dropped"),
    ("lstm", "dc_next = dc * f", "dc_next = 0 * dc", "cell path dropped"),
    ("lstm", "do = dh * jnp.tanh(c)", "do = dh * (1.0 - jnp.tanh(c) * jnp.tanh(c))", "derivative for function"),
    ("lstm", "df * f * (1 - f)", "df * i * (1.0 - i)", "wrong gate in a derivative"),
    ("rnn_step", "da = dy * (1 - h ** 2)", "da = dy", "missing-derivative"),
    ("rnn_step", 'dh_prev = da @ params["W_hh"]', "dh_prev = jnp.zeros_like(h_prev)", "previous state's gradient dropped"),
    ("rnn_step", "dW_hh = da.T @ h_prev", "dW_hh = h_prev.T @ da", "transpose"),
    ("lstm_step", "dc = dc_out + dh * o * (1 - jnp.tanh(c) ** 2)", "dc = dh * o * (1 - jnp.tanh(c) ** 2)",
     "cell output path dropped"),
    ("lstm_step", "dc_prev = dc * f", "dc_prev = dc * 1.0", "forget gate left out of dc_{t-1}"),
    ("gru_step", "dgh = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)", "dgh = dgi", "reset gate outside W_hn h"),
    ("gru_step", "dz = dy * (h_prev - n)", "dz = -dy * (h_prev - n)", "update gate's sign"),
    ("gru_step", 'dh_prev = dy * z + dgh @ params["W_hh"]', 'dh_prev = dgh @ params["W_hh"] + 0 * z', "direct path dropped"),
    ("bptt", "for t in reversed(range(T)):", "for t in range(T - 1, -1, -1)[::-1]:", "time reversed"),
    ("bptt", "dh = dy[:, t] + dh_next", "dh = dy[:, t] + 0.0 * dh_next", "recurrent gradient dropped"),
    ("bptt", 'grads["W_ih"] = grads["W_ih"] + da.T @ x[:, t]', 'grads["W_ih"] = da.T @ x[:, t]', "last step only"),
]


# a representative of every kind stays in the quick suite; the whole list runs with the slow checks
QUICK = {"dense: dW = x.T @ dy", "dense: dx = dy @ params[\"W\"].T", "sigmoid: dz = da", "softmax_cross_entropy: dz = dC * (a - y)",
         "batch_norm: dgamma = jnp.sum(dy, axis=0)", "batch_norm: (m * dxhat - xhat", "conv2d: db = jnp.sum(dz, axis=0)",
         'embedding: dwte = jnp.zeros_like(params["wte"]).at[idx].set(dx)', "relu: dz = jnp.where(z <= 0, da, 0.0)",
         "lstm: dc_next = 0 * dc", "bptt: for t in range(T - 1, -1, -1)[::-1]:"}


def solution_lines(name: str) -> list[str]:
    """The lines of the reference backward's solution block: neither the template's backward nor a
    grade may show one of them."""
    body = solution_source(name).split("# BEGIN SOLUTION\n")[1].split("# END SOLUTION")[0]
    return [line.strip() for line in body.splitlines() if line.strip()]


def graded(tmp_path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return grade(path)


@pytest.mark.parametrize("name", list(EXERCISES))
def test_each_reference_solution_passes_and_its_template_does_not(tmp_path, name):
    result = graded(tmp_path, name, solution_source(name))
    assert result.passed, "\n".join(result.lines)
    template = graded(tmp_path, name, template_source(name))
    assert not template.passed and "not written yet" in "\n".join(template.lines)
    template_backward = {line.strip() for line in template_source(name).split("\ndef backward(")[1].splitlines()}
    assert not template_backward & set(solution_lines(name)), "the template gives the solution away"
    if EXERCISES[name].inputs != "tokens":  # integer tokens have no gradient, and the grade shows none
        assert f", {EXERCISES[name].input_gradient})" in solution_source(name).split("\ndef backward(")[1].split("\n")[1], \
            "the grade names the input gradient as the solution's backward returns it"


def _case(name: str, old: str, new: str, kind: str):
    label = f"{name}: {new.splitlines()[0]}"
    return pytest.param(name, old, new, kind, id=label, marks=() if label in QUICK else pytest.mark.slow)


@pytest.mark.parametrize("name, old, new, kind", [_case(*m) for m in MISTAKES])
def test_a_typical_mistake_fails_with_its_kind_named_and_no_solution_shown(tmp_path, name, old, new, kind):
    source = solution_source(name)
    assert source.count(old) == 1, "the planted edit must apply exactly once"
    result = graded(tmp_path, name, source.replace(old, new))
    text = "\n".join(result.lines)
    assert not result.passed, text
    if kind == "not":  # a mistake no pattern fits: the grade says so, and still fails
        assert "kind: not one of the typical mistakes" in text
    else:
        assert f"kind: {kind}." in text, text
    assert not any(line in text for line in solution_lines(name)), "the grade prints the solution"


def test_a_changed_forward_is_named_before_any_gradient(tmp_path):
    source = solution_source("dense").replace('y = x @ params["W"].T + params["b"]', 'y = x @ params["W"].T')
    result = graded(tmp_path, "dense", source)
    assert not result.passed and "your forward computes something else" in "\n".join(result.lines)
    assert not any("dW" in line for line in result.lines[1:]), "no gradient is graded against another forward"


def test_a_changed_cache_is_allowed(tmp_path):
    source = solution_source("tanh").replace("return a, (z, a)", "return a, a").replace("z, a = cache", "a = cache")
    assert graded(tmp_path, "tanh", source).passed


def test_the_command_line_lists_starts_grades_and_hints(tmp_path, capfd):
    assert main(["exercise", "list"]) == 0
    listing = capfd.readouterr().out
    assert all(name in listing for name in EXERCISES)
    assert main(["exercise", "start", "sigmoid", "--dir", str(tmp_path)]) == 0
    path = tmp_path / "sigmoid.py"
    assert path.read_text() == template_source("sigmoid")
    assert main(["exercise", "start", "sigmoid", "--dir", str(tmp_path)]) == 2  # never overwrites work
    assert "exists already" in capfd.readouterr().out
    hints = []
    for _ in range(4):
        assert main(["exercise", "check", str(path), "--hint"]) == 1
        hints.append(capfd.readouterr().out.strip().splitlines()[-1])
    assert [h.split(":")[0] for h in hints] == ["hint 1 of 3", "hint 2 of 3", "hint 3 of 3 (the last one)", "hint 3 of 3 (the last one)"]
    path.write_text(solution_source("sigmoid"))
    assert main(["exercise", "check", str(path)]) == 0


@pytest.mark.parametrize("content, message", [
    ("EXERCISE = 'dense'\ndef init(:\n", "syntax error"),
    ("import jax\n", "no EXERCISE"),
    ("EXERCISE = 'nope'\n", "no exercise 'nope'"),
    ("EXERCISE = 'dense'\ndef init(key, in_shape):\n    return {}\n", "defines no forward, backward"),
    ("EXERCISE = 'dense'\nraise RuntimeError('boom')\n", "raised when imported: RuntimeError: boom"),
])
def test_a_broken_file_gets_one_line_and_exit_2(tmp_path, capfd, content, message):
    path = tmp_path / "mine.py"
    path.write_text(content)
    assert main(["exercise", "check", str(path)]) == 2
    out = capfd.readouterr().out
    assert message in out and "Traceback" not in out
