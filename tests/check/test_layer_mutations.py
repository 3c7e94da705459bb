"""The mutation catalogue over every built-in layer and head: each planted mistake fails the checker,
each correct twin passes it, and the checker's own controls hold."""

import jax
import pytest

import fnbackprop as fb
from fnbackprop.losses import Head
from fnbackprop.check.mutations import layer_mutations

FLOAT64 = True

CATALOGUE = layer_mutations()


def check(obj, in_shape, key):
    if isinstance(obj, Head):
        return fb.check_loss(obj, key, shape=(4, *in_shape))
    return fb.check_layer(obj, key, in_shape=in_shape)


def test_the_catalogue_covers_every_built_in_layer_family_and_head():
    families = {name.split(":")[0].split(" ")[0] for name in CATALOGUE}
    hidden = {name for name, act in fb.ACTIVATIONS.items() if act.hidden_ok}
    assert {"dense", "softmax", "dropout", "batch_norm", "layer_norm", "residual", "head"} | hidden <= families
    heads = {name.split(":")[0] for name in CATALOGUE if name.startswith("head")}
    assert len(heads) == sum(1 for _ in fb.check.battery.valid_heads())


KEY = jax.random.PRNGKey(7)


#: the kind of mistake each planted one is, by its name (written here from the mistakes' definitions)
EXPECTED_KIND = {"1/m dropped": "scale", "sign flip": "sign", "g(Z) instead of g'(Z)": "activation-for-derivative",
                 "missing g'": "missing-derivative", "g'(Z[L]) forgotten": "missing-derivative",
                 "dW = A_prev^T dZ (transposed)": "transpose", "db = mean_i dZ_i": "scale",
                 "1/(1 - rate) forgotten": "scale", "mask forgotten": "missing-derivative",
                 "inner path missing": "missing-derivative", "xhat forgotten": "swapped"}


#: the quick suite checks every tenth mistake of the catalogue (`EVERY_FIFTH[::2]`, the suite's time);
#: the slow step checks all 89
EVERY_FIFTH = [name for i, name in enumerate(CATALOGUE) if i % 5 == 0] + ["head softmax + cross_entropy: 1/m dropped"]


@pytest.mark.parametrize("names", [pytest.param(EVERY_FIFTH[::2], id="every tenth"),
                                   pytest.param(list(CATALOGUE), id="all", marks=pytest.mark.slow)])
def test_every_planted_mistake_is_caught_as_a_wrong_backward_and_its_kind_named(names):
    reports = {name: check(CATALOGUE[name].mutant, CATALOGUE[name].in_shape, KEY) for name in names}
    assert [name for name, report in reports.items() if report.passed] == []  # 100%
    blamed = {name: {r.verdict for r in report.failing()} for name, report in reports.items()}
    assert all(v == {"backward wrong"} for v in blamed.values()), blamed  # the references still agree
    kinds = {name: report.failing()[0].diagnosis.split(":")[0].split(" ")[0] for name, report in reports.items()}
    expected = {name: kind for name in names for pattern, kind in EXPECTED_KIND.items() if pattern in name}
    assert {name: kinds[name] for name in expected} == expected
    assert len(expected) >= (70 if len(names) == len(CATALOGUE) else 9)  # of 89 (of the 10 sampled): the rest read `unknown`
    assert reports["head softmax + cross_entropy: 1/m dropped"].failing()[0].diagnosis.startswith("scale x4:")  # m = 4


def test_every_correct_twin_passes():
    twins = {id(m.correct): (name, m) for name, m in CATALOGUE.items()}.values()  # each correct layer once
    assert [name for name, m in twins if not check(m.correct, m.in_shape, KEY).passed] == []
