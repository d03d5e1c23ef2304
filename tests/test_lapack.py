"""harness.lapack.largest_eigenvalues against np.linalg.eigvalsh on matrices that stress an eigensolver."""

from __future__ import annotations

import numpy as np
import pytest

from harness.lapack import SYEVR_FROM, _dsyevr, largest_eigenvalues

RNG = np.random.default_rng(0)
N = SYEVR_FROM + 8  # the syevr path
# LAPACK's bound on either solver's error, p(n) eps ||G||_2 with p(n) = n; seen: up to 8.2 eps at n = 40
TOLERANCE = N * np.finfo(float).eps


def gram(singular_values: np.ndarray) -> np.ndarray:
    """P^T P of a random P (N, N) with the given singular values, (N, N)."""
    U, _ = np.linalg.qr(RNG.standard_normal((N, N)))
    V, _ = np.linalg.qr(RNG.standard_normal((N, N)))
    P = (U * singular_values) @ V.T
    return P.T @ P


STACKS = {
    "random": np.stack([gram(RNG.random(N) * 3) for _ in range(20)]),
    "clustered": np.stack([gram(1.0 + 1e-9 * RNG.random(N)) for _ in range(5)]),
    "tied top": np.stack([gram(np.r_[2.0, 2.0, RNG.random(N - 2)]) for _ in range(5)]),
    "rank 1": np.stack([gram(np.r_[5.0, np.zeros(N - 1)]) for _ in range(5)]),
    "graded": np.stack([gram(np.logspace(0, -12, N)) for _ in range(5)]),
    "tiny": np.stack([gram(1e-150 * RNG.random(N)) for _ in range(3)]),
    "huge": np.stack([gram(1e150 * RNG.random(N)) for _ in range(3)]),
    "zero": np.zeros((2, N, N)),
}


@pytest.fixture(autouse=True)
def _needs_syevr() -> None:
    if _dsyevr() is None:
        pytest.skip("this NumPy links no scipy-openblas64 LAPACKE: largest_eigenvalues is eigvalsh itself")


@pytest.mark.parametrize("name", list(STACKS))
def test_largest_eigenvalue_agrees_with_eigvalsh_to_rounding(name) -> None:
    G = STACKS[name]
    before = G.copy()
    expected = np.linalg.eigvalsh(G)[:, -1]
    got = largest_eigenvalues(G)
    np.testing.assert_array_equal(G, before)  # the caller's matrices are left as they were
    assert np.all(np.abs(got - expected) <= TOLERANCE * expected)


def test_reads_the_lower_triangle_as_eigvalsh_does() -> None:
    G = STACKS["random"].copy()
    upper = np.triu_indices(N, 1)
    G[:, upper[0], upper[1]] = 1e3  # garbage above the diagonal: neither solver may read it
    expected = np.linalg.eigvalsh(G)[:, -1]
    assert np.all(np.abs(largest_eigenvalues(G) - expected) <= TOLERANCE * expected)
    assert np.all(expected < 1e2)


def test_float32_and_small_matrices_give_eigvalsh_bit_for_bit() -> None:
    G32 = STACKS["random"].astype(np.float32)
    np.testing.assert_array_equal(largest_eigenvalues(G32), np.linalg.eigvalsh(G32)[:, -1])
    for n in (1, SYEVR_FROM - 1):
        P = RNG.standard_normal((6, n, n))
        G = np.swapaxes(P, 1, 2) @ P
        np.testing.assert_array_equal(largest_eigenvalues(G), np.linalg.eigvalsh(G)[:, -1])


def test_strided_stacks_are_read_as_their_values() -> None:
    strided = np.swapaxes(STACKS["random"], 1, 2)  # a transposed view: the same symmetric values
    got = largest_eigenvalues(strided)
    expected = np.linalg.eigvalsh(strided)[:, -1]
    assert np.all(np.abs(got - expected) <= TOLERANCE * expected)


@pytest.mark.parametrize("name", list(STACKS))
def test_overwriting_the_stack_gives_the_same_bits(name) -> None:
    G = STACKS[name].copy()
    expected = largest_eigenvalues(G)
    np.testing.assert_array_equal(largest_eigenvalues(G, overwrite=True), expected)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_non_finite_matrix_fails_as_eigvalsh_does(overwrite) -> None:
    G = STACKS["random"].copy()
    G[3, 5, 2] = np.nan
    with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
        np.linalg.eigvalsh(G.copy())
    with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
        largest_eigenvalues(G, overwrite=overwrite)
