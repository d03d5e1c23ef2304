"""harness.nn: batched NumPy recurrent networks trained by (truncated) backpropagation through time."""

from .bidirectional import Bidirectional
from .elman import Elman
from .gated import GRU, LSTM
from .jordan import Jordan
from .model import RecurrentModel, load_model

__all__ = ["GRU", "LSTM", "Bidirectional", "Elman", "Jordan", "RecurrentModel", "load_model"]
