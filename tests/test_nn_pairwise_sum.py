"""layers.PairwiseSum: the sum of the shares added, pairwise (a tree of depth log2(n))."""

from __future__ import annotations

import numpy as np
import pytest

from harness.nn.layers import PairwiseSum


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 33])
def test_sums_every_share_once(n: int) -> None:
    """Integer-valued shares sum exactly in float64 in any order: the total is the plain sum."""
    shares = np.random.default_rng(n).integers(-1000, 1000, size=(n, 3, 4)).astype(np.float64)
    total = PairwiseSum()
    for share in shares:
        total.add(share.copy())
    np.testing.assert_array_equal(total.total(), shares.sum(axis=0))


def test_nothing_added_is_none() -> None:
    assert PairwiseSum().total() is None


def test_pairs_before_running_on() -> None:
    """Shares [1, eps/2 x 7] (float64, exact sum 1 + 3.5 eps): a running sum drops every eps/2 (1 + eps/2
    rounds to 1), the pairwise tree adds all but the first of them to each other before they meet 1."""
    eps = np.finfo(np.float64).eps
    values = [1.0] + [eps / 2] * 7
    running = 0.0
    total = PairwiseSum()
    for value in values:
        running += value
        total.add(np.array([value]))
    assert running == 1.0
    assert total.total()[0] == 1.0 + 3 * eps
