"""Run in a subprocess with 8 simulated CPU devices by tests/parallel/test_tensor_parallel_gpt.py; prints one JSON
object: the tensor-parallel GPT (`fb.tensor_parallel`) against one device's jax.grad in float64, the planted
collective mistakes through `fb.check_sharded`, and the refusals. `python tensor_parallel_gpt_worker.py full`
sweeps every mesh shape (the slow test)."""

import json
import os
import sys
from dataclasses import replace

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8 " + os.environ.get("XLA_FLAGS", "")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import fnbackprop as fb  # noqa: E402
from fnbackprop import mutations  # noqa: E402
from fnbackprop.check.numerics import rel_err  # noqa: E402
from fnbackprop.parallel import make_mesh  # noqa: E402


def case(data, model_axis, sequence_parallel, bias, dropout, seed=0, vocab=13, n_head=4, n_embd=16, n_layer=2, T=8, m=8,
         matmul_dtype=None):
    """Loss and gathered-gradient errors of the split (by hand and by jax.grad through the sharded forward)
    against one device's jax.grad of model.loss, at parameters moved off GPT-2's init (biases and gains not 0, 1).
    With a matmul_dtype, the split's hand-written gradients against one device's hand-written ones (both round the
    same operands; autodiff rounds others), and "rounding": how far those are from float64's jax.grad."""
    model = fb.gpt(vocab_size=vocab, block_size=T, n_layer=n_layer, n_head=n_head, n_embd=n_embd, bias=bias, dropout=dropout,
                   matmul_dtype=matmul_dtype)
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    params = model.init(k[0], jnp.float64)
    params = jax.tree_util.tree_map(lambda a: a + 0.1 * jax.random.normal(k[1], a.shape, a.dtype), params)
    idx = jax.random.randint(k[2], (m, T), 0, vocab)
    targets = jax.random.randint(k[3], (m, T), 0, vocab)
    key = k[4] if dropout else None
    ref_loss, ref_grads = jax.value_and_grad(model.loss)(params, idx, targets, key)
    hand_loss, hand_grads = (ref_loss, ref_grads) if matmul_dtype is None else model.value_and_grad(params, idx, targets, key)
    tp = fb.tensor_parallel(model, make_mesh(data=data, model=model_axis), sequence_parallel=sequence_parallel)
    sharded = tp.shard(params)
    loss, grads = tp.value_and_grad(sharded, idx, targets, key)
    a_loss, a_grads = tp.autodiff_value_and_grad(sharded, idx, targets, key)
    full = tp.gather(grads)
    unrounded = replace(model, matmul_dtype=None)  # the same model, products in float64
    rounding = None if matmul_dtype is None else rel_err(hand_grads, jax.grad(unrounded.loss)(params, idx, targets, key))
    return {"mesh": f"{data}x{model_axis}", "sp": sequence_parallel, "bias": bias, "dropout": dropout, "matmul_dtype": matmul_dtype,
            "rounding": rounding, "loss": abs(float(loss - hand_loss)), "grads": rel_err(full, hand_grads),
            "autodiff_loss": abs(float(a_loss - ref_loss)), "autodiff_grads": rel_err(tp.gather(a_grads), ref_grads),
            "structure": jax.tree_util.tree_structure(full) == jax.tree_util.tree_structure(ref_grads),
            "shapes": [a.shape for a in jax.tree_util.tree_leaves(full)] == [a.shape for a in jax.tree_util.tree_leaves(ref_grads)],
            "padding_rows": float(jnp.max(jnp.abs(jnp.asarray(grads["wte"])[vocab:]))) if tp.padded_vocab > vocab else 0.0}


def mistakes():
    """Every planted collective mistake, checked by fb.check_sharded on a 2 x 4 mesh; and the correct twins."""
    model = fb.gpt(vocab_size=13, block_size=8, n_layer=1, n_head=4, n_embd=16, bias=True)
    k = jax.random.split(jax.random.PRNGKey(1), 4)
    params = jax.tree_util.tree_map(lambda a: a + 0.1 * jax.random.normal(k[1], a.shape, a.dtype), model.init(k[0], jnp.float64))
    idx, targets = jax.random.randint(k[2], (4, 8), 0, 13), jax.random.randint(k[3], (4, 8), 0, 13)
    mesh = make_mesh(data=2, model=4)
    out = {"twins": {}, "mutants": {}}
    for sp in (False, True):
        report = fb.check_sharded(fb.tensor_parallel(model, mesh, sp), params, idx, targets)
        out["twins"][str(sp)] = {"passed": report.passed, "line": report.verdict_line()}
    for name, mutant in mutations.sharded_mutations().items():
        split = mutant.plant(fb.tensor_parallel(model, mesh, mutant.sequence_parallel))
        report = fb.check_sharded(split, params, idx, targets)
        out["mutants"][name] = {"passed": report.passed, "expected": mutant.named, "notes": list(report.notes),
                                "diagnosis": report.diagnosis}
        if name.startswith("f's backward"):  # the same split as any function: its pieces given one by one
            generic = fb.check_sharded(split.value_and_grad, params, idx, targets, reference=model.loss, shard=split.shard,
                                       gather=split.gather, mesh=mesh)
            out["generic_mutant"] = {"passed": generic.passed, "diagnosis": generic.diagnosis}
    twin = fb.tensor_parallel(model, mesh)
    out["generic_twin"] = fb.check_sharded(twin.value_and_grad, params, idx, targets, reference=model.loss, shard=twin.shard,
                                           gather=twin.gather, mesh=mesh).passed
    return out


def communication():
    """The collectives of the hand split's step as written (HLO before XLA's passes), by kind, over "model", of the
    (m, T, C) activations' size, for a 2-block GPT with and without sequence parallelism."""
    from fnbackprop.bench.tp import hlo_collectives, summarise

    model = fb.gpt(vocab_size=13, block_size=8, n_layer=2, n_head=4, n_embd=16)
    params = model.init(jax.random.PRNGKey(0), jnp.float64)
    idx = jnp.zeros((4, 8), jnp.int32)
    counted = {}
    for sp in (False, True):
        tp = fb.tensor_parallel(model, make_mesh(data=2, model=4), sequence_parallel=sp)
        text = tp._compiled["hand"].lower(tp.shard(params), idx, idx, None).as_text(dialect="hlo")
        counted[str(sp)] = summarise(hlo_collectives(text, {"data": 2, "model": 4}), 8 * 2 * 8 * 16)["activation_sized_on_model"]
    return counted


def refusals():
    """The one-line errors of a split that cannot be made."""
    said = {}
    mesh = make_mesh(data=2, model=4)
    tries = {"heads": lambda: fb.tensor_parallel(fb.gpt(13, 8, 1, 6, 12), mesh),
             "batch": lambda: fb.tensor_parallel(fb.gpt(13, 8, 1, 4, 16), mesh).check_shape(3, 8),
             "sequence": lambda: fb.tensor_parallel(fb.gpt(13, 8, 1, 4, 16), mesh, sequence_parallel=True).check_shape(4, 6),
             "mesh": lambda: fb.tensor_parallel(fb.gpt(13, 8, 1, 4, 16), make_mesh(8)),
             "blockwise": lambda: fb.tensor_parallel(fb.gpt(13, 8, 1, 4, 16, attention_block=4), mesh)}
    for what, attempt in tries.items():
        try:
            attempt()
            said[what] = ""
        except ValueError as err:
            said[what] = str(err)
    return said


if __name__ == "__main__":
    if sys.argv[1:] == ["full"]:
        rng = np.random.default_rng(0)
        cases = []
        for mesh in ((1, 8), (2, 4), (4, 2), (8, 1)):
            for sp in (False, True):
                for bias in (False, True):
                    n_head = int(rng.choice([8, 16]))
                    cases.append(case(*mesh, sp, bias, dropout=float(rng.choice([0.0, 0.2])), seed=int(rng.integers(1000)),
                                      vocab=int(rng.integers(9, 40)), n_head=n_head, n_embd=n_head * int(rng.integers(1, 3)),
                                      n_layer=int(rng.integers(1, 3)), T=8 * int(rng.integers(1, 3))))
        print(json.dumps({"devices": len(jax.devices()), "cases": cases}))
    else:
        cases = [case(2, 4, False, bias=True, dropout=0.0), case(2, 4, True, bias=False, dropout=0.1),
                 case(2, 4, True, bias=True, dropout=0.0, matmul_dtype="bfloat16")]
        print(json.dumps({"devices": len(jax.devices()), "cases": cases, "mistakes": mistakes(), "refusals": refusals(),
                          "communication": communication()}))
