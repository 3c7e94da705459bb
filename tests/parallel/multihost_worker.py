"""One of two processes on loopback (run by tests/parallel/test_parallel.py): the data-parallel hand-coded
backward across hosts via jax.distributed, compared with single-process jax.grad on the whole batch."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_enable_x64", True)
process_id, port = int(sys.argv[1]), sys.argv[2]
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
                           heartbeat_timeout_seconds=300)  # a starved process on a loaded machine is not dead

import fnbackprop as fb  # noqa: E402
from fnbackprop.train.data import load_digits  # noqa: E402
from fnbackprop.check.numerics import rel_err  # noqa: E402
from fnbackprop.parallel import global_batch, make_mesh, shard_map_value_and_grad  # noqa: E402
from fnbackprop.train.epochs import fit, make_optimizer  # noqa: E402

mesh = make_mesh()
net = fb.mlp([6, 16, 10], hidden="tanh", output="softmax", loss="cross_entropy")
key = jax.random.PRNGKey(0)
params = net.init(key, jnp.float64)
x = np.asarray(jax.random.normal(key, (32, 6), jnp.float64))
y = np.arange(32) % 10
half = slice(16 * process_id, 16 * (process_id + 1))  # this host's share of the global batch
gx, gy = global_batch(mesh, x[half], y[half])
cost, grads = jax.jit(shard_map_value_and_grad(net, mesh))(params, gx, gy)
ref_cost, ref = jax.value_and_grad(net.loss)(params, jnp.asarray(x), jnp.asarray(y))
digits_net = fb.mlp([64, 16, 10], hidden="relu", output="softmax", loss="cross_entropy")
run = fit(digits_net, load_digits(), optimizer=make_optimizer("momentum", optax.constant_schedule(0.05)), epochs=1,
          batch_size=32, key=key, mesh=mesh)
single = fit(digits_net, load_digits(), optimizer=make_optimizer("momentum", optax.constant_schedule(0.05)), epochs=1,
             batch_size=32, key=key)
# the GPT split over a 1 x 2 (data x model) mesh whose "model" axis spans the two processes, with sequence parallelism
gpt = fb.gpt(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, bias=True)
gpt_params = gpt.init(key, jnp.float64)
idx, targets = np.arange(32).reshape(4, 8) % 11, (np.arange(32).reshape(4, 8) * 3 + 1) % 11
tp = fb.tensor_parallel(gpt, make_mesh(data=1, model=2), sequence_parallel=True)
tp_loss, tp_grads = tp.value_and_grad(tp.shard(gpt_params), idx, targets)
tp_ref_loss, tp_ref = jax.value_and_grad(gpt.loss)(gpt_params, jnp.asarray(idx), jnp.asarray(targets))
# and a short training run on that mesh, against the same run on one device of this process
import tempfile  # noqa: E402

from fnbackprop.train.lm import CharData, LMConfig, train_lm  # noqa: E402

chars = "abcdefghij\n"
tokens = (np.arange(6000) * 7 % 11).astype(np.int32)
text = CharData(tokens[:5400], tokens[5400:], chars)
lm_config = LMConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, batch_size=4, max_iters=20, lr_decay_iters=20,
                     eval_interval=10, eval_iters=2, warmup_iters=2, matmul_dtype="float32")
with tempfile.TemporaryDirectory() as folder:
    split_run = train_lm(lm_config, text, folder, final_batches=2, mesh=make_mesh(data=1, model=2), sequence_parallel=True)
one_run = train_lm(lm_config, text, final_batches=2)
lm_gap = max(abs(a[k] - b[k]) for a, b in zip(split_run.history, one_run.history) for k in ("train_loss", "val_loss"))
result = {"process": process_id, "tp_train_loss_gap": lm_gap, "tp_grad_rel_err": rel_err(tp.gather(tp_grads), tp_ref),
          "tp_loss_err": abs(float(jax.device_get(tp_loss)) - float(tp_ref_loss)), "processes": jax.process_count(), "devices": len(jax.devices()),
          "grad_rel_err": rel_err(jax.device_get(grads), ref), "cost_rel_err": rel_err(jax.device_get(cost), ref_cost),
          "train_params_rel_err": rel_err(jax.device_get(run.params), single.params)}
print(json.dumps(result), flush=True)
