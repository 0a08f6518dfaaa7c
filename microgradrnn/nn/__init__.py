"""Modules: ``Module`` (+ ``save``/``load``), ``Linear``, ``Embedding``, the recurrent cells
``RNNCell``, ``LSTMCell``, ``GRUCell``, and ``RNN``, which unrolls a cell in time; and
``sparse_init``, Martens' sparse initialisation."""
from .cells import GRUCell, LSTMCell, RNNCell
from .init import sparse_init
from .layers import Embedding, Linear
from .module import Module, load, save
from .rnn import RNN, RNNModel

__all__ = ["Module", "save", "load", "Linear", "Embedding", "RNNCell", "LSTMCell", "GRUCell",
           "RNN", "RNNModel", "sparse_init"]
