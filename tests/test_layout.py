"""The package's shape, read from its imports: packages per concern, imports only downward (no cycle
between packages, no module reaching up into a package that contains it), and every public name of the
flat layout still importable where users found it."""

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fnbackprop"
#: the layers of the package, lowest first: a unit may import only from units of a lower rank
RANKS = {"_version": 0, "activations": 0, "losses": 1, "layers": 1, "graph": 1, "models": 2, "check": 3, "parallel": 3,
         "train": 4, "derivations": 4, "exercises": 4, "testing": 4, "strategies": 4, "mutations": 4, "bench": 5, "cli": 6, "": 7}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The fnbackprop modules (or packages) a file imports, relative imports resolved; `from P import m`
    of a submodule m counts as importing m."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                as_path = SRC.parent / sub.replace(".", "/")
                found.add(sub if as_path.with_suffix(".py").is_file() or as_path.is_dir() else target)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m == "fnbackprop" or m.startswith("fnbackprop.")}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = {module_name(p): imports_of(p) for p in sorted(SRC.rglob("*.py"))}


def test_the_packages_per_concern_are_there():
    for package in ("layers", "models", "check", "train", "bench", "cli", "derivations", "exercises"):
        assert (SRC / package / "__init__.py").is_file(), package
    assert len([p for p in SRC.glob("*.py") if p.name != "__init__.py"]) <= 8  # the rest live in packages


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_downward(module):
    for target in MODULES[module]:
        assert not module.startswith(target + "."), f"{module} imports {target}, a package that contains it"
        if unit(target) != unit(module):
            assert RANKS[unit(target)] < RANKS[unit(module)], f"{module} imports {target}: upward"


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, targets in MODULES.items():
        graph.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    seen, stack = set(), []

    def visit(node):
        assert node not in stack, f"import cycle: {' -> '.join(stack + [node])}"
        if node in seen:
            return
        stack.append(node)
        for nxt in graph.get(node, ()):
            visit(nxt)
        stack.pop()
        seen.add(node)

    for node in graph:
        visit(node)


PUBLIC = {  # every public name of the flat layout's fnbackprop, layers, parallel, testing and strategies
    "fnbackprop": "ACTIVATIONS Activation Layer activation dense LOSSES Head Loss avg_pool batch_norm conv2d dropout flatten "
                  "layer_norm max_pool residual softmax causal_self_attention embedding GPT gpt MLP Network Trace mlp network "
                  "Report check_layer check_loss check_network check_vjp exercises testing __version__ verify verify_vjp verdicts "
                  "numerics diagnosis projections rules",
    "fnbackprop.layers": "causal_self_attention embedding residual avg_pool conv2d flatten max_pool reshape INIT_SCHEMES "
                         "activation dense dense_backward dense_forward init_dense_params softmax batch_norm layer_norm Array "
                         "Cache Layer Params forward_with_key is_stochastic no_params dropout",
    "fnbackprop.parallel": "make_mesh shard_map_value_and_grad sharded_value_and_grad shard_batch replicate global_batch "
                           "ask_for_cpu_devices",
    "fnbackprop.testing": "assert_vjp_correct assert_layer_correct report_text",
    "fnbackprop.strategies": "float_dtypes shapes matmul_shapes broadcast_shapes seeds normal arrays FLOAT_DTYPES",
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_name_is_where_users_found_it(module):
    loaded = importlib.import_module(module)
    missing = [name for name in PUBLIC[module].split() if not hasattr(loaded, name)]
    assert not missing, f"{module} lost {missing}"
