"""Nielsen's first network on real MNIST (skipped when ../shared/data is absent)."""

import jax
import optax
import pytest

import fnbackprop as fb
from fnbackprop.train import data
from fnbackprop.train.epochs import fit, make_optimizer

SHARED_MNIST = data.Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist.pkl.gz"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason=f"real MNIST not found at {SHARED_MNIST}")
def test_nielsens_first_network_reaches_the_books_accuracy():
    """[784, 30, 10], sigmoid, quadratic cost, N(0,1) weights, SGD eta = 3.0, batch 10, 30 epochs.

    The book reports a peak of 95.42% (best of three runs). Measured here, peak test accuracy for
    seeds 0-3: 94.63, 94.89, 94.97, 95.43% (mean 94.98%). One seed is asserted at 94.5%, below that
    spread: a wrong gradient (even a missing 1/m at this eta) lands far lower or diverges.
    """
    mnist = data.load_mnist(SHARED_MNIST)
    net = fb.mlp([784, 30, 10], hidden="sigmoid", output="sigmoid", loss="quadratic", init="nielsen_large")
    result = fit(net, mnist, optimizer=make_optimizer("sgd", optax.constant_schedule(3.0)), epochs=30,
                 batch_size=10, key=jax.random.PRNGKey(0))
    best = max(h["test_accuracy"] for h in result.history)
    print(f"best test accuracy {best:.4f}; seconds per epoch {[round(h['seconds'], 3) for h in result.history]}")
    assert best >= 0.945
