"""The offline-vs-online correlation across checkpoints (pure numpy/scipy, no Ray)."""

from __future__ import annotations

import math

import pytest

from seqrec_ray.sim.offline_online import correlations


def test_spearman_gives_tied_values_their_average_rank():
    # x has a tie: average ranks [1, 2.5, 2.5, 4] against y's [1, 2, 3, 4]. Centred: [-1.5, 0, 0, 1.5]
    # and [-1.5, -0.5, 0.5, 1.5]; sum of products 4.5, sums of squares 4.5 and 5 -> 4.5 / sqrt(22.5).
    # Ranking the tie 2, 3 by position (as a plain argsort does) would give 1.0.
    result = correlations([0.1, 0.2, 0.2, 0.3], [1.0, 2.0, 3.0, 4.0])
    assert result["spearman"] == pytest.approx(4.5 / math.sqrt(22.5))  # 0.9487


def test_spearman_with_ties_on_both_sides():
    # x ranks [1.5, 1.5, 3, 4], y ranks [2, 2, 2, 4] (y's three-way tie shares rank 2). Centred:
    # [-1, -1, 0.5, 1.5] and [-0.5, -0.5, -0.5, 1.5]; products sum 0.5 + 0.5 - 0.25 + 2.25 = 3,
    # squares 4.5 and 3 -> 3 / sqrt(13.5).
    result = correlations([1.0, 1.0, 2.0, 5.0], [0.3, 0.3, 0.3, 0.9])
    assert result["spearman"] == pytest.approx(3 / math.sqrt(13.5))  # 0.8165


def test_pearson_by_hand():
    # centred x [-1, 0, 1], y [-2, 1, 1]: products 3, squares 2 and 6 -> 3 / sqrt(12)
    result = correlations([1.0, 2.0, 3.0], [0.0, 3.0, 3.0])
    assert result["pearson"] == pytest.approx(3 / math.sqrt(12))
    assert result["spearman"] == pytest.approx(3 / math.sqrt(12))  # y's ranks [1, 2.5, 2.5] = 1 + y / 2: linear in y


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([0.1, 0.2, 0.3], [0.5, 0.5, 0.5]),  # no spread online
        ([0.2, 0.2, 0.2], [0.1, 0.4, 0.3]),  # no spread offline
        ([0.1, 0.2], [0.3, 0.4]),  # two points always correlate perfectly: not evidence
    ],
)
def test_undefined_correlation_is_none(x, y):
    assert correlations(x, y) == {"pearson": None, "spearman": None}


def test_unpaired_values_name_the_problem():
    with pytest.raises(ValueError, match="paired values, got 3 and 2"):
        correlations([0.1, 0.2, 0.3], [0.1, 0.2])
