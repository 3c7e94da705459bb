"""What kind of mistake a failing tensor shows: a word, then the evidence.

`diagnose(hand, auto, others)` compares the wrong hand gradient with the true one (autodiff) and with
the true gradients of the check's other tensors. The first word is one of

- `non-finite`: NaN or infinity in the hand gradient;
- `zero`: the hand gradient is 0 everywhere, the true one is not;
- `sign`: hand = -autodiff;
- `scale`: hand = c x autodiff for one c (a missing or extra 1/m reads "scale x8" at m = 8);
- `transpose`: hand = autodiff with its last two axes swapped, or hand equals the gradient of an
  alternative where a matrix product's square operand went untransposed (W where W^T belongs);
- `broadcast-sum`: hand has the shape of the input broadcast (extra leading axes, or sizes where the
  input has 1): a gradient not summed over the axes the forward broadcast, named from the shapes alone
  (and the evidence says whether, summed, it equals autodiff; a mean where the sum belongs reads as `scale`);
- `swapped`: hand equals the true gradient of another tensor of the check;
- `missing-derivative` (g'(z) left out) and `activation-for-derivative` (g(z) used where g'(z)
  belongs): for an elementwise step dx = dy * g'(x) whose upstream dy and output y = g(x) are known,
  hand = dy or hand = dy * g(x); anywhere inside the function, hand equals the gradient of one of its
  `alternatives`, the function with one elementwise step's derivative so altered
  (`fnbackprop.check.rules.derivative_variants`, read from the forward's jaxpr);
- `unknown`: none of these fits; the evidence gives the error and the best-fit ratio.

Each fit is judged at `FIT_TOL` relative (far above rounding, far below any real mistake's size).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .numerics import leaf_rel_err
from .verdicts import best_fit_ratio

#: a pattern fits when the hand gradient differs from it by at most this, relative
FIT_TOL = 1e-6


def _spread(hand: np.ndarray, auto: np.ndarray) -> tuple[float, int]:
    """(sd of hand_i / auto_i over the entries where auto is not tiny, their count)."""
    big = np.abs(auto) > 1e-3 * np.max(np.abs(auto))
    quotients = hand[big] / auto[big]
    return (float(np.std(quotients)) if quotients.size else 0.0), int(quotients.size)


def _broadcast_axes(hand: tuple, auto: tuple) -> tuple[tuple, tuple] | None:
    """(leading axes, then axes of size 1 in `auto`) over which an array of shape `auto` was broadcast
    to `hand` (numpy's rules); None when `auto` does not broadcast to `hand`."""
    extra = len(hand) - len(auto)
    if extra < 0 or any(a not in (1, h) for h, a in zip(hand[extra:], auto)):
        return None
    return tuple(range(extra)), tuple(i for i, (h, a) in enumerate(zip(hand[extra:], auto)) if a == 1 and h != 1)


def diagnose(hand: Any, auto: Any, others: dict[str, Any] | None = None, local: tuple | None = None,
             fit_tol: float = FIT_TOL, alternatives: list | None = None, known: list | None = None) -> str:
    """The kind of mistake in `hand` (see the module doc), with its evidence.

    `others`: the true gradients of the check's other tensors, by name; `local`: (upstream dy,
    output y) of an elementwise step whose input gradient `hand` is; `alternatives`: (label, kind,
    gradient) of the function with one textbook slip in its derivative
    (`fnbackprop.check.rules.derivative_variants`); `known`: (kind, words, gradient) of mistakes a caller
    knows for this very function (an exercise's typical slips), tried before every other pattern;
    `fit_tol`: how close a pattern must fit (raise it with the rounding of the precision checked)."""
    def fits(a: np.ndarray, b: np.ndarray) -> bool:
        return leaf_rel_err(a, b) <= fit_tol

    auto = np.asarray(auto, np.float64)
    if not hasattr(hand, "shape"):
        return f"unknown: the hand gradient is a {type(hand).__name__}, not an array"
    hand = np.asarray(hand, np.float64)
    if hand.shape != auto.shape:
        axes = _broadcast_axes(hand.shape, auto.shape)
        if hand.ndim >= 2 and hand.shape == auto.shape[:-2] + auto.shape[:-3:-1] and fits(np.swapaxes(hand, -1, -2), auto):
            return f"transpose: the hand gradient {list(hand.shape)} is autodiff {list(auto.shape)} with its last two axes swapped"
        if axes is not None:  # from the shapes alone: an input the forward broadcast, its gradient not reduced
            summed = [*axes[0], *(len(axes[0]) + a for a in axes[1])]
            sums = fits(hand.sum(axis=axes[0]).sum(axis=axes[1], keepdims=True), auto)
            return (f"broadcast-sum: the hand gradient {list(hand.shape)} for an input of shape {list(auto.shape)} is not "
                    f"summed over the axes {summed} the forward broadcast it to"
                    + ("; summed, it equals autodiff" if sums else ""))
        return f"unknown: shape {list(hand.shape)}, expected {list(auto.shape)}"
    if not np.all(np.isfinite(hand)):
        bad = np.argwhere(~np.isfinite(hand))
        return f"non-finite: {len(bad)} of {hand.size} entries, the first at {tuple(int(i) for i in bad[0])}"
    for kind, words, gradient in known or ():
        gradient = np.asarray(gradient, np.float64)
        if gradient.shape == hand.shape and not fits(gradient, auto) and fits(hand, gradient):
            return f"{kind}: {words}"
    if not np.any(auto):
        return f"unknown: the true gradient is 0 and the hand one is not (largest {np.max(np.abs(hand)):.3g})"
    if not np.any(hand):
        return "zero: the hand gradient is 0 everywhere, the true one is not"
    c = best_fit_ratio(hand, auto)
    spread, n = _spread(hand, auto)
    if fits(hand, c * auto):
        if abs(c + 1) <= fit_tol:
            return f"sign: hand / autodiff = -1 over {n} entries"
        return f"scale x{c:.6g}: hand / autodiff = {c:.6g} +- {spread:.1g} over {n} entries"
    if hand.ndim >= 2 and hand.shape[-1] == hand.shape[-2] and fits(hand, np.swapaxes(auto, -1, -2)):
        return "transpose: hand equals autodiff with its last two axes swapped"
    if local is not None:
        upstream, output = (np.asarray(a, np.float64) for a in local)
        if upstream.shape == hand.shape and fits(hand, upstream):
            return "missing-derivative: hand equals the upstream gradient dy; the local derivative g'(x) is left out"
        if upstream.shape == output.shape == hand.shape and fits(hand, upstream * output):
            return "activation-for-derivative: hand equals dy * g(x), the activation where its derivative g'(x) belongs"
    for kind, what, alternative in alternatives or ():
        alternative = np.asarray(alternative, np.float64)
        if alternative.shape == hand.shape and not fits(alternative, auto) and fits(hand, alternative):
            return f"{kind}: hand equals the gradient {what}"
    for name, other in (others or {}).items():
        other = np.asarray(other, np.float64)
        if other.shape == hand.shape and np.any(other) and fits(hand, other):
            return f"swapped: hand equals the true gradient of {name}"
    return f"unknown: relative error {leaf_rel_err(hand, auto):.2g}; best fit hand ~ {c:.4g} x autodiff, entry ratios spread {spread:.2g}"
