"""The computation graph of Y. Lei's "Week 5: Backpropagation" notes, as a small reverse-mode engine.

Nodes are inputs, parameters, constants and operations. The forward pass evaluates the nodes in the
order they were created (a topological order) and keeps every intermediate value. The backward pass
visits them in reverse and, for each node, multiplies its *backpropagated gradient* dJ/dnode by the
*local gradient* of each operation that consumed it, summing over the node's successors (fan-out):

    dJ/dx = sum_j dJ/dy_j . dy_j/dx          (the notes' chain rule on a graph)

Each operation's forward sits next to its local vector-Jacobian rule, as in micrograd. Values are
JAX arrays, the graph structure is static Python, so `forward` and `backward` run under `jax.jit`.

    g = Graph()
    x, w, b, y = g.input("x"), g.param("w"), g.param("b"), g.input("y")
    u = g.mul(w, x, name="u"); yhat = g.add(u, b, name="yhat")
    e = g.sub(yhat, y, name="e"); J = g.square(e, name="J")
    values = g.forward({"x": 1.0, "w": 5.0, "b": 1.0, "y": 2.0})   # u = 5, yhat = 6, J = 16
    grads = g.backward(values, J)                                   # dJ/dw = 8, ...
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def _unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum a gradient over the axes that broadcasting added or stretched, back to `shape`."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _matmul(a: Array, b: Array) -> Array:
    """A B with numpy's matmul rules; scalars are refused (matmul has no meaning for them)."""
    if jnp.ndim(a) == 0 or jnp.ndim(b) == 0:
        raise ValueError("matmul needs operands of at least one dimension (use mul for scalars)")
    return jnp.matmul(a, b)


def _matmul_vjp(g: Array, out: Array, a: Array, b: Array) -> tuple[Array, Array]:
    """d(A B): dA = G B^T, dB = A^T G on the last two axes, for numpy's matmul semantics.

    A 1-D A is the row (1, k) and a 1-D B the column (k, 1) (their added axis then dropped again);
    leading batch axes broadcast, so each gradient is summed back over the axes its operand lacked.
    """
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g[..., None] if b.ndim == 1 else g  # the column's axis first, then the row's
    g2 = jnp.expand_dims(g2, -2) if a.ndim == 1 else g2
    da = _unbroadcast(g2 @ jnp.swapaxes(b2, -1, -2), a2.shape)
    db = _unbroadcast(jnp.swapaxes(a2, -1, -2) @ g2, b2.shape)
    return da.reshape(a.shape), db.reshape(b.shape)


#: op name -> (forward(*inputs), local vjp(backpropagated gradient, output, *inputs) -> input gradients)
OPS: dict[str, tuple[Callable, Callable]] = {
    "add": (lambda a, b: a + b, lambda g, out, a, b: (_unbroadcast(g, jnp.shape(a)), _unbroadcast(g, jnp.shape(b)))),
    "sub": (lambda a, b: a - b, lambda g, out, a, b: (_unbroadcast(g, jnp.shape(a)), -_unbroadcast(g, jnp.shape(b)))),
    "mul": (lambda a, b: a * b, lambda g, out, a, b: (_unbroadcast(g * b, jnp.shape(a)), _unbroadcast(g * a, jnp.shape(b)))),
    "matmul": (_matmul, _matmul_vjp),  # d(AB): dA = G B^T, dB = A^T G (1-D, 2-D, batched)
    "transpose": (lambda a: a.T, lambda g, out, a: (g.T,)),
    "sigmoid": (jax.nn.sigmoid, lambda g, out, a: (g * out * (1 - out),)),  # s' = s (1 - s)
    "tanh": (jnp.tanh, lambda g, out, a: (g * (1 - out**2),)),  # tanh' = 1 - tanh^2
    "relu": (lambda a: jnp.maximum(a, 0), lambda g, out, a: (g * (a > 0),)),  # 1[a > 0]
    "square": (lambda a: a * a, lambda g, out, a: (2 * a * g,)),
    "exp": (jnp.exp, lambda g, out, a: (g * out,)),
    "log": (jnp.log, lambda g, out, a: (g / a,)),
    "sum": (jnp.sum, lambda g, out, a: (jnp.broadcast_to(g, jnp.shape(a)),)),
    "mean": (jnp.mean, lambda g, out, a: (jnp.broadcast_to(g / jnp.size(a), jnp.shape(a)),)),
}


@dataclass(frozen=True)
class Node:
    name: str
    kind: str  # "input" | "param" | "const" | an op name
    inputs: tuple[str, ...] = ()


@dataclass
class Graph:
    """A computation graph; build it with the methods below, in any order that respects dependencies."""

    nodes: dict[str, Node] = field(default_factory=dict)
    constants: dict[str, Array] = field(default_factory=dict)

    def _add(self, kind: str, inputs: tuple[str, ...], name: str | None) -> str:
        name = name or f"{kind}{len(self.nodes)}"
        if name in self.nodes:
            raise ValueError(f"graph already has a node named {name!r}")
        missing = [i for i in inputs if i not in self.nodes]
        if missing:
            raise ValueError(f"node {name!r} uses unknown nodes {missing}")
        self.nodes[name] = Node(name, kind, inputs)
        return name

    def input(self, name: str) -> str:
        """A data node (x, y): a value given to `forward`."""
        return self._add("input", (), name)

    def param(self, name: str) -> str:
        """A parameter node (w, b): a value given to `forward`; its gradient is what training needs."""
        return self._add("param", (), name)

    def const(self, value, name: str | None = None) -> str:
        name = self._add("const", (), name)
        self.constants[name] = jnp.asarray(value)
        return name

    def op(self, kind: str, *inputs: str, name: str | None = None) -> str:
        if kind not in OPS:
            raise ValueError(f"unknown operation {kind!r}; expected one of {sorted(OPS)}")
        return self._add(kind, tuple(inputs), name)

    def __getattr__(self, kind: str) -> Callable[..., str]:
        """g.add(a, b), g.sigmoid(z, name="a"), ...: one method per operation in OPS."""
        if kind in OPS:
            return lambda *inputs, name=None: self.op(kind, *inputs, name=name)
        raise AttributeError(kind)

    def forward(self, feed: dict) -> dict[str, Array]:
        """Every node's value, in creation (topological) order."""
        needed = [n.name for n in self.nodes.values() if n.kind in ("input", "param")]
        missing = [n for n in needed if n not in feed]
        if missing:
            raise ValueError(f"forward needs values for {missing}")
        values: dict[str, Array] = {}
        for node in self.nodes.values():
            if node.kind in ("input", "param"):
                values[node.name] = jnp.asarray(feed[node.name])
            elif node.kind == "const":
                values[node.name] = self.constants[node.name]
            else:
                values[node.name] = OPS[node.kind][0](*(values[i] for i in node.inputs))
        return values

    def backward(self, values: dict[str, Array], output: str) -> dict[str, Array]:
        """dJ/dnode for every node that `output` depends on: reverse order, summed over successors."""
        grads: dict[str, Array] = {output: jnp.ones_like(values[output])}
        for node in reversed(list(self.nodes.values())):
            if node.name not in grads or node.kind in ("input", "param", "const"):
                continue
            local = OPS[node.kind][1](grads[node.name], values[node.name], *(values[i] for i in node.inputs))
            for parent, g in zip(node.inputs, local):
                grads[parent] = grads[parent] + g if parent in grads else g  # sum over successors
        return grads

    def to_dot(self, values: dict | None = None, grads: dict | None = None) -> str:
        """Graphviz DOT text, each node labelled with its forward value and backpropagated gradient."""
        def fmt(v) -> str:
            v = jnp.asarray(v)
            return f"{float(v):.4g}" if v.size == 1 else f"shape {tuple(v.shape)}"

        lines = ["digraph G {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
        for node in self.nodes.values():
            label = [node.name if node.kind in ("input", "param", "const") else f"{node.name} = {node.kind}"]
            if values is not None and node.name in values:
                label.append(f"value {fmt(values[node.name])}")
            if grads is not None and node.name in grads:
                label.append(f"grad {fmt(grads[node.name])}")
            style = {"input": ", style=filled, fillcolor=lightgrey", "param": ", style=filled, fillcolor=lightblue"}.get(node.kind, "")
            lines.append(f'  "{node.name}" [label="{" | ".join(label)}"{style}];')
            lines += [f'  "{i}" -> "{node.name}";' for i in node.inputs]
        lines.append("}")
        return "\n".join(lines)

    def depths(self) -> dict[str, int]:
        """Longest path from a source node: the column of each node in a left-to-right drawing."""
        depth: dict[str, int] = {}
        for node in self.nodes.values():
            depth[node.name] = 1 + max((depth[i] for i in node.inputs), default=-1)
        return depth

    def render(self, path: str | Path, values: dict | None = None, grads: dict | None = None) -> list[Path]:
        """Write `path.dot`, and `path.png` drawn by Graphviz's `dot` if installed, else by matplotlib."""
        path = Path(path)
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(self.to_dot(values, grads))
        png = path.with_suffix(".png")
        if shutil.which("dot"):
            subprocess.run(["dot", "-Tpng", str(dot_path), "-o", str(png)], check=True)
        else:
            self._draw_with_matplotlib(png, values, grads)
        return [dot_path, png]

    def _draw_with_matplotlib(self, png: Path, values: dict | None, grads: dict | None) -> None:
        import matplotlib

        matplotlib.use("Agg")  # a file, never a window
        import matplotlib.pyplot as plt

        depth, rows, pos = self.depths(), dict[int, int](), dict[str, tuple[int, int]]()
        for name, d in depth.items():
            pos[name] = (d, rows.setdefault(d, 0))
            rows[d] += 1
        fig, ax = plt.subplots(figsize=(2.6 * (max(depth.values()) + 1), 1.4 * max(rows.values()) + 1))
        for node in self.nodes.values():
            for i in node.inputs:
                ax.annotate("", pos[node.name], pos[i], arrowprops=dict(arrowstyle="->", color="grey"))
        for name, (x, y) in pos.items():
            text = [name if self.nodes[name].kind in ("input", "param", "const") else f"{name} = {self.nodes[name].kind}"]
            if values is not None and name in values and jnp.size(values[name]) == 1:
                text.append(f"value {float(values[name]):.4g}")
            if grads is not None and name in grads and jnp.size(grads[name]) == 1:
                text.append(f"grad {float(grads[name]):.4g}")
            ax.text(x, y, "\n".join(text), ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round", facecolor="lightblue" if self.nodes[name].kind == "param" else "white"))
        ax.set_xlim(-0.6, max(depth.values()) + 0.6)
        ax.set_ylim(-0.8, max(rows.values()) - 0.2)
        ax.set_axis_off()
        ax.set_title("computation graph: forward value and backpropagated gradient dJ/dnode")
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)
