"""Figures of training runs (matplotlib, written to PNG without a display)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: list[dict], path: str | os.PathLike, title: str) -> None:
    """Cost per epoch (train and test) and, for classifiers, accuracy per epoch, side by side."""
    epochs = [h["epoch"] for h in history]
    has_accuracy = "test_accuracy" in history[0]
    fig, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(11 if has_accuracy else 6, 4), squeeze=False)
    cost_ax = axes[0][0]
    for split in ("train", "val", "test"):
        if f"{split}_cost" in history[0]:
            cost_ax.plot(epochs, [h[f"{split}_cost"] for h in history], marker=".", label=f"{split} cost")
    cost_ax.set(xlabel="epoch", ylabel="cost C (averaged over examples)", title="cost", yscale="log")
    cost_ax.legend()
    if has_accuracy:
        acc_ax = axes[0][1]
        for split in ("train", "val", "test"):
            if f"{split}_accuracy" in history[0]:
                acc_ax.plot(epochs, [100 * h[f"{split}_accuracy"] for h in history], marker=".", label=split)
        acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="classification accuracy")
        acc_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lm_history(history: list[dict], path: str | os.PathLike, title: str) -> None:
    """A language model's estimated train and validation loss against the iteration."""
    fig, ax = plt.subplots(figsize=(7, 4))
    its = [h["iteration"] for h in history]
    for split in ("train", "val"):
        ax.plot(its, [h[f"{split}_loss"] for h in history], marker=".", label=f"{split} loss")
    ax.set(xlabel="iteration", ylabel="cross-entropy (nats per character)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
