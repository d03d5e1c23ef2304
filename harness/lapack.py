"""The largest eigenvalue of each symmetric matrix of a stack, by LAPACK's syevr with range 'I'.

np.linalg.eigvalsh (syevd) computes all n eigenvalues of each matrix; syevr with range 'I' and il = iu = n
shares its tridiagonalisation and then bisects for the one eigenvalue asked for, which took 0.67-0.68x
eigvalsh's time on the gradient-flow check's 1,600 64x64 Gram matrices (one thread); the check's reported
lag norms moved by at most 7.6e-16 relative (the eigenvalues themselves by up to 8 ulps, LAPACK's own
rounding). NumPy does not expose syevr, and `scipy.linalg` would cost its import
(0.24-0.45 s of CPU) on the way to the first training step, so it is called through ctypes in the LAPACK
that NumPy's linear algebra itself links: the scipy-openblas64 of NumPy's wheels, whose LAPACKE C
interface takes 64-bit integers. Where that symbol is absent (another NumPy build) the values come from
eigvalsh, as they do for float32 and for matrices below 32 x 32, where a ctypes call costs more than it
saves.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import numpy as np

_COLUMN_MAJOR = 102  # LAPACK_COL_MAJOR: a C-ordered matrix is read transposed
_INT = ctypes.c_int64
_POINTER = ctypes.c_void_p
_SYMBOL = "scipy_LAPACKE_dsyevr_work64_"
# below this n a ctypes call's fixed cost (~2 us) outweighs the saving: syevr/eigvalsh measured 2.45 at n = 8,
# 1.30 at 16, 1.04 at 24, 0.90 at 32, 0.69 at 64, 0.62 at 128
SYEVR_FROM = 32


@functools.cache
def _dsyevr() -> Callable[..., int] | None:
    """LAPACKE_dsyevr_work of NumPy's LAPACK, or None when NumPy links another LAPACK."""
    try:  # dlsym on the extension module searches the libraries it links, NumPy's LAPACK among them
        function = getattr(ctypes.CDLL(np.linalg._umath_linalg.__file__), _SYMBOL)
    except (AttributeError, OSError):
        return None
    real = ctypes.c_double
    function.argtypes = [ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_char, _INT, _POINTER, _INT,
                         real, real, _INT, _INT, real, _POINTER, _POINTER, _POINTER, _INT, _POINTER,
                         _POINTER, _INT, _POINTER, _INT]
    function.restype = _INT
    return function


def uses_syevr(dtype: np.dtype, n: int) -> bool:
    """Whether largest_eigenvalues solves (n, n) matrices of dtype by syevr (else by eigvalsh)."""
    return dtype == np.float64 and n >= SYEVR_FROM and _dsyevr() is not None


def largest_eigenvalues(G: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """The largest eigenvalue (B,) of each symmetric G_b of a stack G (B, n, n); the lower triangle is
    read, as eigvalsh reads it. float64 with n >= SYEVR_FROM through syevr; float32 (whose eigenvalues
    syevr moved by up to 3 ulp), smaller n and a NumPy without the symbol through np.linalg.eigvalsh.
    overwrite: G is scratch that syevr may destroy (when C-contiguous), which saves copying each matrix."""
    function = _dsyevr() if uses_syevr(G.dtype, G.shape[-1]) else None
    if function is None:
        return np.linalg.eigvalsh(G)[:, -1]
    B, n, _ = G.shape
    lwork, liwork = 26 * n, 10 * n  # syevr's documented minimum workspaces
    work, iwork = np.empty(lwork, dtype=G.dtype), np.empty(liwork, dtype=np.int64)
    found, values = np.empty(1, dtype=np.int64), np.empty(n, dtype=G.dtype)
    support, z = np.empty(2, dtype=np.int64), np.empty(1, dtype=G.dtype)
    in_place = overwrite and G.flags.c_contiguous
    scratch = G if in_place else np.empty((1, n, n), dtype=G.dtype)  # syevr overwrites its matrix
    stride = G.itemsize * n * n if in_place else 0
    top = np.empty(B, dtype=G.dtype)
    # the buffers' addresses once: each .ctypes.data builds an object, as dear as the call at small n
    first = scratch.ctypes.data
    arguments = (n, 0.0, 0.0, n, n, 0.0, found.ctypes.data, values.ctypes.data, z.ctypes.data, 1,
                 support.ctypes.data, work.ctypes.data, lwork, iwork.ctypes.data, liwork)
    for b in range(B):
        if not in_place:
            np.copyto(scratch[0], G[b])
        # G_b's lower triangle is, read in column-major order, the upper one: uplo "U"
        # abstol 0: LAPACK's default tolerance, eps * ||T||_1 (twice the underflow threshold, its most
        # accurate, measured no faster than eigvalsh)
        info = function(_COLUMN_MAJOR, b"N", b"I", b"U", n, first + b * stride, *arguments)
        if info == 0:
            top[b] = values[0]
        elif in_place:  # G_b is destroyed: fail as eigvalsh does (a NaN or inf entry gets here)
            raise np.linalg.LinAlgError("Eigenvalues did not converge")
        else:  # syevr's bisection did not converge (a NaN or inf entry, or LAPACK's internal error)
            top[b] = np.linalg.eigvalsh(G[b])[-1]
    return top
