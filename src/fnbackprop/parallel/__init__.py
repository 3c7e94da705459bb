"""Parallelism written out: data parallelism (`data`: the batch split over devices, the hand-coded backward
per shard and the gradients' psum derived) and Megatron's collectives with their adjoints by hand
(`collectives`: f and g, all-gather and reduce-scatter, the column- and row-parallel dense layers, the
vocabulary-parallel cross-entropy) and the GPT split over a (data x model) mesh with them (`tensor`:
`tensor_parallel`, tensor and sequence parallelism, the whole backward by hand)."""

from .collectives import (all_gather as all_gather, column_parallel_backward as column_parallel_backward,
                          column_parallel_forward as column_parallel_forward, copy_to_model as copy_to_model,
                          reduce_from_model as reduce_from_model, reduce_scatter as reduce_scatter,
                          row_parallel_backward as row_parallel_backward, row_parallel_forward as row_parallel_forward,
                          vocab_parallel_cross_entropy as vocab_parallel_cross_entropy)
from .data import (AXIS as AXIS, ask_for_cpu_devices as ask_for_cpu_devices, global_batch as global_batch,
                   make_mesh as make_mesh, replicate as replicate, shard_batch as shard_batch,
                   shard_map_value_and_grad as shard_map_value_and_grad, sharded_value_and_grad as sharded_value_and_grad)
from .tensor import TensorParallel as TensorParallel, tensor_parallel as tensor_parallel
