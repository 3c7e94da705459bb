"""Run in a subprocess with 8 simulated CPU devices by tests/parallel/test_parallel.py; prints one JSON object."""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import fnbackprop as fb  # noqa: E402
from fnbackprop.bench.conv import batches, core_mesh, jax_steps, nielsen_conv_net, place_on  # noqa: E402
from fnbackprop.train.data import load_digits  # noqa: E402
from fnbackprop.check.numerics import rel_err  # noqa: E402
from fnbackprop.parallel import make_mesh, shard_map_value_and_grad, sharded_value_and_grad  # noqa: E402
from fnbackprop.train.epochs import fit, gradient_function, make_optimizer  # noqa: E402


def main() -> dict:
    mesh = make_mesh(8)
    net = fb.mlp([6, 16, 12, 10], hidden=["relu", "tanh"], output="softmax", loss="cross_entropy")
    key = jax.random.PRNGKey(0)
    params = net.init(key, jnp.float64)
    x = jax.random.normal(key, (64, 6), jnp.float64)
    y = jnp.arange(64) % 10
    ref_cost, ref = jax.value_and_grad(net.loss)(params, x, y)
    forms = {"jit_sharded": sharded_value_and_grad(net, mesh), "shard_map": jax.jit(shard_map_value_and_grad(net, mesh)),
             "shard_map_autodiff": jax.jit(shard_map_value_and_grad(net, mesh, gradient_function(net, "autodiff")))}
    out = {"devices": len(jax.devices())}
    opt = make_optimizer("momentum", optax.constant_schedule(0.1))
    ref_step = optax.apply_updates(params, opt.update(ref, opt.init(params), params)[0])
    for name, fn in forms.items():
        cost, grads = fn(params, x, y)
        out[f"{name}_grad_rel_err"] = rel_err(grads, ref)
        out[f"{name}_cost_rel_err"] = rel_err(cost, ref_cost)
        step = optax.apply_updates(params, opt.update(grads, opt.init(params), params)[0])
        out[f"{name}_step_rel_err"] = rel_err(step, ref_step)
    try:
        forms["shard_map"](params, x[:60], y[:60])
        out["uneven_error"] = None
    except ValueError as err:
        out["uneven_error"] = str(err)
    jax.config.update("jax_enable_x64", False)
    digits = load_digits()
    small = fb.mlp([64, 32, 10], hidden="relu", output="softmax", loss="cross_entropy", init="he")
    for source in ("hand", "autodiff"):
        runs = {n: fit(small, digits, optimizer=make_optimizer("momentum", optax.constant_schedule(0.05)), epochs=2,
                       batch_size=32, key=key, mesh=make_mesh(n), grad_source=source) for n in (1, 8)}
        out[f"train_{source}_params_rel_err"] = rel_err(runs[1].params, runs[8].params)
        out[f"train_{source}_accuracy"] = {n: r.history[-1]["test_accuracy"] for n, r in runs.items()}
    # the conv benchmark's steps split over the mesh: two SGD steps of 8 images, one per device
    conv = nielsen_conv_net("im2col")
    whole = conv.init(key), *batches(8, steps=2)
    moved = {name: jax.tree_util.tree_map(jnp.subtract, jax_steps(conv, source, m)(*place_on(m, *whole)), whole[0])
             for name, source, m in (("one", "hand", None), ("mesh", "hand", mesh), ("mesh_autodiff", "autodiff", mesh))}
    out["conv_mesh_update_rel_err"] = rel_err(moved["mesh"], moved["one"])
    out["conv_mesh_autodiff_update_rel_err"] = rel_err(moved["mesh_autodiff"], moved["one"])
    out["core_mesh_devices"] = int(core_mesh().devices.size)
    return out


if __name__ == "__main__":
    json.dump(main(), sys.stdout)
