"""fnbackprop: hand-derived backpropagation, compiled with JAX and checked against jax.grad."""

from .activations import ACTIVATIONS as ACTIVATIONS, Activation as Activation
from .layers import Layer as Layer, activation as activation, dense as dense
from .losses import LOSSES as LOSSES, Head as Head, Loss as Loss
from .layers import (avg_pool as avg_pool, batch_norm as batch_norm, conv2d as conv2d, dropout as dropout, flatten as flatten,
                     layer_norm as layer_norm, max_pool as max_pool, residual as residual, softmax as softmax)
from .layers.attention import causal_self_attention as causal_self_attention, embedding as embedding
from .layers.recurrent import gru as gru, lstm as lstm, rnn as rnn
from .models.gpt import GPT as GPT, gpt as gpt
from .models.network import MLP as MLP, Network as Network, Trace as Trace, mlp as mlp, network as network
from .check.verify import Report as Report, check_layer as check_layer, check_loss as check_loss, check_network as check_network
from .check.vjp import check_vjp as check_vjp
from .check.audit import audit as audit
from .parallel.tensor import tensor_parallel as tensor_parallel
from .check.sharded import check_sharded as check_sharded
from . import exercises as exercises, testing as testing
from ._version import __version__ as __version__

# the checker's modules, reachable from the top as before they moved into `check/`
from .check import (diagnosis as diagnosis, numerics as numerics, projections as projections, rules as rules,
                    verdicts as verdicts, verify as verify)
from .check import vjp as verify_vjp  # noqa: F401  (its name before the move)

