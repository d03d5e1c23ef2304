"""Multi-run studies that orchestrate many tracked runs (the RNN-vs-ARMA comparison)."""
