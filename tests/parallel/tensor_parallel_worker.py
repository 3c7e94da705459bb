"""Run in a subprocess with 4 simulated CPU devices by tests/parallel/test_tensor_parallel.py; prints one JSON
object: the hand-written collectives and tensor-parallel dense layers against one device, in float64."""

import json
import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

jax.config.update("jax_enable_x64", True)

from fnbackprop.check.numerics import rel_err  # noqa: E402
from fnbackprop.parallel import (all_gather, column_parallel_backward, column_parallel_forward, copy_to_model,  # noqa: E402
                                 make_mesh, reduce_from_model, reduce_scatter, row_parallel_backward, row_parallel_forward,
                                 vocab_parallel_cross_entropy)

TP, M, T, C = 4, 3, 8, 6
k = jax.random.split(jax.random.PRNGKey(0), 8)
x = jax.random.normal(k[0], (M, T, C))
W1, b1 = jax.random.normal(k[1], (4 * C, C)) / C ** 0.5, jax.random.normal(k[2], (4 * C,))
W2, b2 = jax.random.normal(k[3], (C, 4 * C)) / (2 * C), jax.random.normal(k[4], (C,))
dy = jax.random.normal(k[5], (M, T, C))


def mlp(W1, b1, W2, b2, x):
    """One device: y = gelu(x W1^T + b1) W2^T + b2."""
    return jax.nn.gelu(x @ W1.T + b1) @ W2.T + b2


def reference():
    y, pull = jax.vjp(mlp, W1, b1, W2, b2, x)
    return y, pull(dy)


def tensor_parallel(bias_before_reduce=False, forget_psum=False):
    """c_fc column-parallel, c_proj row-parallel over "model"; the whole backward by hand, no autodiff."""
    mesh = make_mesh(data=1, model=TP)

    def local(W1, b1, W2, b2, x, dy):
        h, cx = column_parallel_forward({"W": W1, "b": b1}, x)
        a = jax.nn.gelu(h)
        if bias_before_reduce:  # torchtitan #2106's mistake: the replicated bias added to each partial sum
            y = jax.lax.psum(a @ W2.T + b2, "model")
            ca = a
        else:
            y, ca = row_parallel_forward({"W": W2, "b": b2}, a, "model")
        g2, da = row_parallel_backward({"W": W2, "b": b2}, ca, dy)
        dh = da * jax.vmap(jax.vmap(jax.vmap(jax.grad(jax.nn.gelu))))(h)  # gelu' (elementwise), not a collective
        if forget_psum:  # jax-finufft #226's mistake: the replicated input's gradient not all-reduced
            g1, dx = {"W": dh.reshape(-1, dh.shape[-1]).T @ x.reshape(-1, C), "b": jnp.sum(dh, axis=(0, 1))}, dh @ W1
        else:
            g1, dx = column_parallel_backward({"W": W1, "b": b1}, cx, dh, "model")
        return y, g1["W"], g1["b"], g2["W"], g2["b"], dx

    shard = jax.shard_map(local, mesh=mesh, in_specs=(P("model", None), P("model"), P(None, "model"), P(), P(), P()),
                          out_specs=(P(), P("model", None), P("model"), P(None, "model"), P(), P()), check_vma=False)
    return jax.jit(shard)(W1, b1, W2, b2, x, dy)


def with_f_and_g():
    """The same MLP written with Megatron's f and g (custom_vjp rules: psum backward, identity backward) and
    differentiated by jax.grad inside shard_map, per rank, the loss being <y, dy> on the replicated output."""
    mesh = make_mesh(data=1, model=TP)

    def local(W1, b1, W2, b2, x, dy):
        def loss(W1, b1, W2, b2, x):
            h = copy_to_model(x, "model") @ W1.T + b1
            return jnp.vdot(reduce_from_model(jax.nn.gelu(h) @ W2.T, "model") + b2, dy)
        return jax.grad(loss, argnums=(0, 1, 2, 3, 4))(W1, b1, W2, b2, x)

    shard = jax.shard_map(local, mesh=mesh, in_specs=(P("model", None), P("model"), P(None, "model"), P(), P(), P()),
                          out_specs=(P("model", None), P("model"), P(None, "model"), P(), P()), check_vma=False)
    return jax.jit(shard)(W1, b1, W2, b2, x, dy)


def sequence_round_trip():
    """all_gather then reduce_scatter along the sequence, each rank scaling the gathered copy by its own factor:
    d/dx of sum_r <reduce_scatter(c_r all_gather(x)), dy_r>, by the rules, against one device's sum_r c_r."""
    mesh = make_mesh(data=1, model=TP)

    def local(x, dy):
        def loss(x):
            full = all_gather(x, "model", 1) * (1.0 + jax.lax.axis_index("model"))
            return jnp.vdot(reduce_scatter(full, "model", 1), dy)
        return jax.grad(loss)(x)

    grad = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(None, "model"), P(None, "model")), out_specs=P(None, "model"),
                                 check_vma=False))(x, dy)
    return rel_err(grad, sum(1.0 + r for r in range(TP)) * dy)  # the map is x -> (sum_r c_r) x, self-adjoint


def vocabulary_parallel(sum_locally=False):
    """The cross-entropy of logits (M, T, V = 12) split over the vocabulary (3 columns per rank): its loss and
    gradient by hand against one device's jax.value_and_grad. With `sum_locally`, the planted mistake: the
    softmax's denominator not all-reduced (each rank normalising over its own columns)."""
    mesh = make_mesh(data=1, model=TP)
    V = 12
    z = jax.random.normal(k[6], (M, T, V)) * 3
    y = jax.random.randint(k[7], (M, T), 0, V)
    want_loss, want_dz = jax.value_and_grad(lambda z: jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, y[..., None], -1)[..., 0]))(z)

    def local(z, y):
        if sum_locally:
            e = jnp.exp(z - jnp.max(z, -1, keepdims=True))
            return jnp.zeros(()), (e / jnp.sum(e, -1, keepdims=True) - jax.nn.one_hot(y - jax.lax.axis_index("model") * 3, 3)) / y.size
        return vocab_parallel_cross_entropy(z, y, "model")

    loss, dz = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(None, None, "model"), P()), out_specs=(P(), P(None, None, "model")),
                                     check_vma=False))(z, y)
    return {"loss": rel_err(loss, want_loss), "dz": rel_err(dz, want_dz)}


y_ref, (gW1, gb1, gW2, gb2, dx_ref) = reference()
results = {"devices": len(jax.devices()), "sequence_round_trip": sequence_round_trip()}
results["vocabulary"] = vocabulary_parallel()
results["vocabulary_summed_locally"] = vocabulary_parallel(sum_locally=True)
results["f_and_g"] = dict(zip(["W1", "b1", "W2", "b2", "dx"], (rel_err(a, b) for a, b in zip(with_f_and_g(), (gW1, gb1, gW2, gb2, dx_ref)))))
for label, kwargs in {"correct": {}, "bias_before_reduce": {"bias_before_reduce": True}, "forget_psum": {"forget_psum": True}}.items():
    y, W1g, b1g, W2g, b2g, dx = tensor_parallel(**kwargs)
    results[label] = {"y": rel_err(y, y_ref), "W1": rel_err(W1g, gW1), "b1": rel_err(b1g, gb1), "W2": rel_err(W2g, gW2),
                      "b2": rel_err(b2g, gb2), "dx": rel_err(dx, dx_ref)}
print(json.dumps(results))
