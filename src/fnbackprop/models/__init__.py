"""Models built from the layers: `network` (a sequence of layers and a loss head, `mlp`), `gpt` (a whole
GPT with its backward written out in reverse), `architecture` (the `--layers` text specs)."""

from .gpt import GPT as GPT, gpt as gpt
from .char_rnn import CharRNN as CharRNN, char_rnn as char_rnn
from .network import MLP as MLP, Network as Network, Trace as Trace, mlp as mlp, network as network
