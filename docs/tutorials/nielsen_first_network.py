# %% [markdown]
# # Train Nielsen's first network and read the curves
#
# Chapter 1 of Nielsen's *Neural Networks and Deep Learning*: a [784, 30, 10] network of sigmoid
# neurons, the quadratic cost $C = \frac{1}{2m}\sum_i \lVert a_i - y_i \rVert^2$, weights and biases
# drawn from $N(0, 1)$, plain SGD with $\eta = 3$ on mini-batches of 10. The book reaches about
# 95% test accuracy in 30 epochs. Here: the same 30 epochs with the hand-coded backward (about 15 s on
# a laptop's CPU), on MNIST when it
# is found (`$FNBACKPROP_MNIST` or a `shared/data` folder above this one), else on scikit-learn's
# bundled 8x8 digits, which every installation has.

# %%
import os
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import optax

import fnbackprop as fb
from fnbackprop.train.data import load, load_mnist
from fnbackprop.train.epochs import fit

candidates = [os.environ.get("FNBACKPROP_MNIST")] + [str(p / "shared" / "data") for p in Path.cwd().resolve().parents]
found = next((c for c in candidates if c and (Path(c) / "mnist.pkl.gz").is_file()), None)
data = load_mnist(found) if found else load("digits")
n_in = data.x_train.shape[1]
print(f"{data.name}: {len(data.x_train)} training, {len(data.x_test)} test examples of {n_in} pixels")

# %%
net = fb.mlp([n_in, 30, 10], hidden="sigmoid", output="sigmoid", loss="quadratic", init="nielsen_large")
result = fit(net, data, optimizer=optax.sgd(3.0), epochs=30, batch_size=10, key=jax.random.PRNGKey(0))
for record in result.history:
    print(f"epoch {record['epoch']:2d}: test accuracy {100 * record['test_accuracy']:.2f}%, "
          f"train cost {record['train_cost']:.4f} ({record['seconds']:.1f} s)")

# %% [markdown]
# Two curves tell most of the story: the training cost should fall every epoch, and the test
# accuracy rise and flatten. A test accuracy that falls while the training cost keeps falling is
# overfitting (chapter 3); a cost that does not move at all points at saturated sigmoids (chapter 5).
# On MNIST with this seed the accuracy also **stalls near 85% and then jumps** by about ten points:
# one digit's output neuron was saturated, so the network never predicted that digit (a tenth of the
# test set), until its gradient, small but not zero, pulled it out. The per-digit recall at the end
# shows every digit recovered.

# %%
epochs_seen = [r["epoch"] for r in result.history]
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.plot(epochs_seen, [r["train_cost"] for r in result.history], marker="o")
left.set(xlabel="epoch", ylabel="training cost (quadratic)", title="cost")
right.plot(epochs_seen, [100 * r["test_accuracy"] for r in result.history], marker="o", color="green")
right.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
fig.tight_layout()
plt.show()

# %%
import jax.numpy as jnp

predicted = jnp.argmax(net.apply(result.params, jnp.asarray(data.x_test)), axis=1)
recall = [float(jnp.mean(predicted[data.y_test == d] == d)) for d in range(10)]
print("recall per digit (%):", [round(100 * r, 1) for r in recall])

# %% [markdown]
# The gradient norms per layer are recorded too (`grad_norms`): in a sigmoid network the first
# layer's is the smaller one, the unstable-gradient problem of chapter 5.

# %%
first, last = zip(*[(r["grad_norms"][0]["W"], r["grad_norms"][-1]["W"]) for r in result.history])
print("mean |dW| per epoch, layer 1:", [f"{v:.2e}" for v in first])
print("mean |dW| per epoch, layer 2:", [f"{v:.2e}" for v in last])
assert result.history[-1]["test_accuracy"] > 0.8
