"""Content hash of arrays, so two runs can prove they used the same data."""

from __future__ import annotations

import hashlib

import numpy as np


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 hex digest over each array's dtype, shape and C-order bytes, in order.

    Dtype and shape fix each array's byte length, so the concatenation is unambiguous: arrays with the same
    bytes but a different dtype or shape hash differently.
    """
    if not arrays:
        raise ValueError("arrays must contain at least one array, got none")
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise ValueError(f"arrays must hold numbers, got dtype {array.dtype}")
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
