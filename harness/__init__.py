"""harness: NumPy recurrent networks, trained and tracked, compared with ARMA models."""

__version__ = "0.1.0"
