"""The layer protocol and the built-in layers, one module per family.

A layer is any object with three pure callables (no subclassing needed; `Layer` is a NamedTuple):

    init(key, in_shape)          -> params            in_shape excludes the batch axis
    forward(params, x)           -> (y, cache)        x: (m, *in_shape)
    backward(params, cache, dy)  -> (dparams, dx)     dy = dC/dy, dparams shaped like params

Each layer's backward sits beside its forward, its derivation in the docstring:

- `dense`: dense layers and activations (`dense`, `activation`, `softmax`);
- `normalisation`: `batch_norm`, `layer_norm`;
- `regularisation`: `dropout`;
- `composition`: `residual`;
- `attention`: `embedding`, `causal_self_attention` (sequences (m, T, C), GPT-2);
- `convolution`: `conv2d`, `max_pool`, `avg_pool`, `flatten`, `reshape` (NHWC inputs, HWIO kernels).
"""

from .attention import causal_self_attention as causal_self_attention, embedding as embedding
from .composition import residual as residual
from .convolution import (avg_pool as avg_pool, conv2d as conv2d, flatten as flatten, max_pool as max_pool,
                          reshape as reshape)
from .dense import (INIT_SCHEMES as INIT_SCHEMES, activation as activation, dense as dense, dense_backward as dense_backward,
                    dense_forward as dense_forward, init_dense_params as init_dense_params, softmax as softmax)
from .normalisation import batch_norm as batch_norm, layer_norm as layer_norm
from .protocol import (Array as Array, Cache as Cache, Layer as Layer, Params as Params, forward_with_key as forward_with_key,
                       is_stochastic as is_stochastic, no_params as no_params)
from .recurrent import gru as gru, lstm as lstm, rnn as rnn
from .regularisation import dropout as dropout
