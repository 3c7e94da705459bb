"""The GPT benchmark's pieces: the FLOP count, and the PyTorch twin being the same model as ours."""

import jax
import numpy as np
import pytest

from fnbackprop.bench import torch_module
from fnbackprop.bench_gpt import flops_per_step, torch_gpt
from fnbackprop.lm import LMConfig, model_of


def test_flops_per_step_is_nanogpts_estimate():
    config = LMConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12)
    n = 800_000
    # nanoGPT's estimate_mfu: 6N + 12 L H Q T per token, H Q = n_embd; here m T = 768 tokens per step
    assert flops_per_step(config, n) == (6 * n + 12 * 4 * 4 * 32 * 64) * 12 * 64


@pytest.mark.skipif(torch_module() is None, reason="PyTorch not installed (optional extra: pip install '.[torch]')")
def test_the_pytorch_twin_computes_our_models_loss_and_gradients():
    torch = torch_module()
    config = LMConfig(n_layer=2, n_head=2, n_embd=8, block_size=6, bias=True)
    ours = model_of(config, 11)
    params = ours.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda a: a + 0.1 * rng.standard_normal(a.shape).astype(np.float32), params)
    twin, _ = torch_gpt(config, vocab_size=11)
    state = {"wte.weight": params["wte"], "wpe.weight": params["wpe"], "ln_f.weight": params["ln_f"]["gamma"],
             "ln_f.bias": params["ln_f"]["beta"]}
    for i, block in enumerate(params["h"]):
        for ours_name, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
            state[f"h.{i}.{theirs}.weight"], state[f"h.{i}.{theirs}.bias"] = block[ours_name]["gamma"], block[ours_name]["beta"]
        for (group, name), theirs in ((("attn", "c_attn"), "c_attn"), (("attn", "c_proj"), "attn_proj"),
                                      (("mlp", "c_fc"), "c_fc"), (("mlp", "c_proj"), "mlp_proj")):
            state[f"h.{i}.{theirs}.weight"], state[f"h.{i}.{theirs}.bias"] = block[group][name]["W"], block[group][name]["b"]
    assert set(state) == set(twin.state_dict())
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    idx, targets = rng.integers(0, 11, (3, 6)), rng.integers(0, 11, (3, 6))
    loss = twin(torch.from_numpy(idx), torch.from_numpy(targets))
    loss.backward()
    ours_loss, grads = ours.value_and_grad(params, jax.numpy.asarray(idx), jax.numpy.asarray(targets))
    assert abs(loss.item() - float(ours_loss)) < 1e-5 * float(ours_loss)  # float32 on both sides
    np.testing.assert_allclose(twin.wte.weight.grad.numpy(), grads["wte"], rtol=1e-4, atol=1e-6)  # both uses of the tied table
    np.testing.assert_allclose(twin.h[0].c_attn.weight.grad.numpy(), grads["h"][0]["attn"]["c_attn"]["W"], rtol=1e-4, atol=1e-6)
