"""Tensor parallelism's collectives by hand, on 4 simulated CPU devices (in a subprocess): an MLP block split
Megatron's way (c_fc column-parallel, c_proj row-parallel over "model") equals one device, forward and every
gradient, in float64, whether its backward is written out (`column_parallel_backward`,
`row_parallel_backward`) or left to jax.grad through the f and g rules; the sequence's all-gather and
reduce-scatter rules are each other's adjoints; and the two classic silent bugs are caught."""


import pytest

TOL = 1e-12  # float64, sums in another order


@pytest.fixture(scope="module")
def results(run_worker):
    return run_worker("tensor_parallel_worker.py")


def test_the_split_block_equals_one_device_with_the_backward_by_hand(results):
    assert results["devices"] == 4
    assert max(results["correct"].values()) < TOL, results["correct"]


def test_f_and_g_as_rules_give_one_devices_gradients_under_jax_grad(results):
    assert max(results["f_and_g"].values()) < TOL, results["f_and_g"]


def test_all_gather_and_reduce_scatter_are_each_others_adjoints(results):
    assert results["sequence_round_trip"] < TOL


def test_a_replicated_bias_added_before_the_reduction_is_counted_tp_times(results):
    """torchtitan #2106: the output is wrong (the bias enters 4 times), the gradients computed by hand are not."""
    assert results["bias_before_reduce"]["y"] > 0.1


def test_a_replicated_inputs_gradient_not_all_reduced_is_wrong(results):
    """jax-finufft #226: forward exact, dx wrong (each rank keeps its own share)."""
    assert results["forget_psum"]["y"] < TOL and results["forget_psum"]["dx"] > 0.1


def test_the_mesh_has_a_two_dimensional_form_and_refuses_what_it_cannot_make():
    from fnbackprop.parallel import make_mesh

    mesh = make_mesh(data=1, model=1)
    assert mesh.axis_names == ("data", "model") and mesh.devices.shape == (1, 1)
    assert make_mesh(1).axis_names == ("batch",)  # the 1-D form stays
    with pytest.raises(ValueError, match="asked for 8 devices"):
        make_mesh(data=2, model=4)
    with pytest.raises(ValueError, match="not both"):
        make_mesh(1, model=1)


def test_the_vocabulary_parallel_cross_entropy_equals_one_device_and_needs_its_all_reduced_sum(results):
    """Its loss and gradient by hand, no rank holding a whole row, against one device's jax.value_and_grad; the
    denominator summed on each rank's columns only (no psum) gives a wrong gradient."""
    assert results["vocabulary"]["loss"] < TOL and results["vocabulary"]["dz"] < TOL, results["vocabulary"]
    assert results["vocabulary_summed_locally"]["dz"] > 0.1
