"""The matrix products a traced program runs: each `dot_general` with its operands and dimension numbers, read
from the program's jaxpr (inner jits and a scan's body included), and their FLOPs. Used to count what a step
multiplies (`experiments/step_floor.py`) and which products a model rounds (mixed precision's tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
from jax.extend import core


def sub_jaxprs(value: Any) -> list:
    """The jaxprs held by one equation parameter (a closed or open jaxpr, or a tuple of them: cond's branches)."""
    if isinstance(value, core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in sub_jaxprs(v)]
    return []


def jaxpr_dots(jaxpr: core.Jaxpr, times: int = 1) -> list[tuple]:
    """Every dot_general a program runs, as (lhs aval, rhs aval, params), inner programs included; a scan's
    body counts `length` times. A while loop's trip count is not known from its program: refused."""
    dots = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            dots += [(eqn.invars[0].aval, eqn.invars[1].aval, dict(eqn.params))] * times
        if eqn.primitive.name == "while":
            raise ValueError("a while loop's products cannot be counted from its program")
        repeat = times * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
        for value in eqn.params.values():
            for inner in sub_jaxprs(value):
                dots += jaxpr_dots(inner, repeat)
    return dots


def dot_flops(dots: list[tuple]) -> float:
    """2 x (the left operand's elements) x (the right operand's free elements), summed: 2 x output x contracted."""
    total = 0.0
    for lhs, rhs, params in dots:
        (_, rhs_contract), (_, rhs_batch) = params["dimension_numbers"]
        rhs_free = [d for i, d in enumerate(rhs.shape) if i not in rhs_contract and i not in rhs_batch]
        total += 2.0 * np.prod(lhs.shape) * np.prod(rhs_free)
    return total
