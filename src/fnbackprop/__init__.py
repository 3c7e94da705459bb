"""fnbackprop: hand-derived backpropagation, compiled with JAX and checked against jax.grad."""

from .activations import ACTIVATIONS as ACTIVATIONS, Activation as Activation
from .layers import Layer as Layer, activation as activation, dense as dense
from .losses import LOSSES as LOSSES, Head as Head, Loss as Loss
from .layers import (avg_pool as avg_pool, batch_norm as batch_norm, conv2d as conv2d, dropout as dropout, flatten as flatten,
                     layer_norm as layer_norm, max_pool as max_pool, residual as residual, softmax as softmax)
from .layers.attention import causal_self_attention as causal_self_attention, embedding as embedding
from .gpt import GPT as GPT, gpt as gpt
from .network import MLP as MLP, Network as Network, Trace as Trace, mlp as mlp, network as network
from .verify import Report as Report, check_layer as check_layer, check_loss as check_loss, check_network as check_network
from .verify_vjp import check_vjp as check_vjp
from . import exercises as exercises, testing as testing

__version__ = "0.2.0"  # the one version number (pyproject.toml reads it)
