"""Data-parallel gradients with the hand-coded backward, on JAX's own sharding machinery.

The batch is split across a 1-D mesh of devices (axis "batch"); parameters and optimizer state are
replicated. Two public forms:

- `sharded_value_and_grad`: the hand-coded backward under `jax.jit`, with inputs sharded over the
  mesh. XLA partitions the computation and inserts the cross-device reductions itself.
- `shard_map_value_and_grad`: the derivation made visible. Each device d runs the hand-coded
  backward on its own shard of m_d = m / D examples, which yields gradients of its *local* mean,
  (1/m_d) sum_{i in d}. The equations' batch averages are over the *global* batch of m examples:

      dW = (1/m) dZ^T A = (1/m) sum_d sum_{i in d} dZ_i^T A_i = psum_d( (m_d / m) dW_d )

  and likewise db and the cost. With equal shards m_d / m = 1/D, so this is `lax.pmean` of the
  local gradients; it is written as `psum` of m_d-weighted terms to show where the 1/m goes.

The global batch must divide evenly among the devices: an uneven batch raises ValueError (a
choice: padding would need a mask through every loss, and silently dropping examples would change
the gradient). `fit(..., mesh=...)` handles a last partial batch that does not divide by running
that one step with the first form, where XLA is free to split it unevenly.

Multi-host: call `jax.distributed.initialize()` in every process first (one process per host;
coordinator address, process count and id from the arguments or the environment), then build the
mesh over `jax.devices()`, which then lists every host's devices; the code above is unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.typing import ArrayLike
from jax.sharding import PartitionSpec as P

from ..models.network import Network

Array = jax.Array
AXIS = "batch"


def ask_for_cpu_devices(n: int) -> int:
    """Ask JAX for `n` CPU devices (`jax_num_cpu_devices`, the setting behind XLA_FLAGS=
    --xla_force_host_platform_device_count=n) and return how many it has. The count can change only
    before JAX starts its CPU backend (the first array, the first `jax.devices()`); after that it
    stays as it is, and `make_mesh` says how to set it for a larger mesh."""
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the CPU backend has started: keep its devices
        pass
    return len(jax.devices("cpu"))


def make_mesh(n_devices: int | None = None, *, data: int | None = None, model: int | None = None) -> Mesh:
    """A 1-D mesh over the first `n_devices` devices (all by default), axis name "batch"; or, with `data` and
    `model`, a 2-D mesh of data x model devices, axes ("data", "model") (tensor parallelism over "model",
    the batch over "data")."""
    devices = jax.devices()
    if data is not None or model is not None:
        if n_devices is not None:
            raise ValueError("give either n_devices (a 1-D mesh) or data= and model= (a 2-D mesh), not both")
        data, model = data or 1, model or 1
        if data < 1 or model < 1:
            raise ValueError(f"data and model must be positive, got data={data}, model={model}")
        n = data * model
    else:
        n = len(devices) if n_devices is None else n_devices
    if not 1 <= n <= len(devices):
        raise ValueError(
            f"asked for {n} devices, {len(devices)} available ({devices[0].platform}); on a CPU, make more before "
            f"the first JAX computation: fnbackprop.parallel.ask_for_cpu_devices({n}), or "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n}"
        )
    if data is not None and model is not None:
        return Mesh(np.array(devices[:n]).reshape(data, model), ("data", "model"))
    return Mesh(np.array(devices[:n]), (AXIS,))


def _check_divisible(m: int, mesh: Mesh) -> None:
    d = mesh.devices.size
    if m % d:
        raise ValueError(f"a global batch of {m} examples does not divide evenly among {d} devices; "
                         f"use a batch size that is a multiple of {d}")


def shard_batch(mesh: Mesh, *arrays: ArrayLike, axis: int = 0) -> tuple:
    """Place arrays on the mesh, split along their batch axis: the first, or `axis` (1 for stacked
    batches of shape (steps, m, ...), as a scanned loop takes them)."""
    sharding = NamedSharding(mesh, P(*([None] * axis), AXIS))
    return tuple(jax.device_put(a, sharding) for a in arrays)


def global_batch(mesh: Mesh, *local: np.ndarray) -> tuple:
    """Multi-host: assemble each process's share of the batch into global arrays split over the mesh."""
    sharding = NamedSharding(mesh, P(AXIS))
    return tuple(jax.make_array_from_process_local_data(sharding, a) for a in local)


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Place a pytree (parameters, optimizer state) on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def sharded_value_and_grad(net: Network, mesh: Mesh) -> Callable:
    """(params, x, y, key=None) -> (cost, grads): the hand-coded backward, jit-compiled over sharded inputs."""
    compiled = jax.jit(net.value_and_grad, out_shardings=NamedSharding(mesh, P()))

    def value_and_grad(params, x, y, key=None):
        _check_divisible(x.shape[0], mesh)
        x, y = shard_batch(mesh, x, y)
        return compiled(replicate(mesh, params), x, y, key)

    return value_and_grad


def shard_map_value_and_grad(net: Network, mesh: Mesh, grad_fn: Callable | None = None) -> Callable:
    """(params, x, y, key=None) -> (cost, grads): each device's hand-coded backward, then psum over the mesh.

    `grad_fn(params, x, y, key)` is the per-device gradient, `net.value_and_grad` by default. Usable
    inside `jax.jit` (the training loop calls it within its scanned epoch).
    """
    grad_fn = net.value_and_grad if grad_fn is None else grad_fn

    def local(params, x, y, key):
        # The parameters arrive replicated. Differentiating a replicated input inside shard_map,
        # jax.grad sums its cotangent over the mesh by itself (replication transposes to a sum), so
        # psum below would count every device D times. Cast to "varying" first: jax.grad then returns
        # this device's own gradient, as the hand-coded backward does, and the one sum is ours.
        params = jax.tree_util.tree_map(lambda a: jax.lax.pcast(a, AXIS, to="varying"), params)
        m_local = x.shape[0]
        m = jax.lax.psum(m_local, AXIS)  # the global batch size
        if key is not None:  # a different dropout mask on every device
            key = jax.random.fold_in(key, jax.lax.axis_index(AXIS))
        cost, grads = grad_fn(params, x, y, key)  # means over this device's m_local examples
        weight = m_local / m
        reduce = lambda t: jax.lax.psum(weight * t, AXIS)  # noqa: E731  (1/m) sum over all m = psum((m_d/m) local mean)
        return reduce(cost), jax.tree_util.tree_map(reduce, grads)

    def value_and_grad(params, x, y, key=None):
        _check_divisible(x.shape[0], mesh)
        mapped = jax.shard_map(lambda p, a, b: local(p, a, b, key), mesh=mesh,
                               in_specs=(P(), P(AXIS), P(AXIS)), out_specs=(P(), P()))
        return mapped(params, x, y)

    return value_and_grad
