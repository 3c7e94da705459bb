"""fnbackprop: hand-derived backpropagation, compiled with JAX and checked against jax.grad."""

from .activations import ACTIVATIONS as ACTIVATIONS, Activation as Activation
from .layers import Layer as Layer, activation as activation, dense as dense
from .losses import LOSSES as LOSSES, Head as Head, Loss as Loss
from .network import MLP as MLP, Network as Network, Trace as Trace, mlp as mlp, network as network

__version__ = "0.1.0"
