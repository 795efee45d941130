"""The one scoring core (seqrec_ray/models/scoring.py), against hand-derived cases."""

from __future__ import annotations

import math

import pytest
import torch

from seqrec_ray.models import scoring

INF = float("-inf")


def test_masks_set_pad_oov_excluded_and_disallowed_items_to_minus_inf():
    scores = torch.arange(12, dtype=torch.float32).view(2, 6)  # items 0..5 per row
    exclude = torch.tensor([[3, 0], [5, 4]])  # row 0: item 3 (0 = padding); row 1: items 5, 4
    allowed = torch.tensor([True, True, True, True, False, True])  # item 4 is off-category
    out = scoring.masked_scores(scores, exclude=exclude, allowed=allowed)
    assert out.tolist() == [[INF, INF, 2.0, INF, INF, 5.0], [INF, INF, 8.0, 9.0, INF, INF]]
    assert scores[0, 0] == 0.0  # the input is left as it was


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mask_items_marks_the_same_cells_in_every_dtype(dtype):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 50, generator=gen).to(dtype)
    items = torch.randint(0, 50, (4, 7), generator=gen)
    masked = scoring.mask_items(scores.clone(), items)
    expected = torch.zeros(4, 50, dtype=torch.bool)
    for b in range(4):
        expected[b, items[b]] = True
    assert torch.equal(torch.isinf(masked), expected)
    assert torch.equal(masked[~expected], scores[~expected])


def test_top_k_is_exact_through_the_chunked_path_for_a_batch():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 500, (3, 200_003), generator=gen).float()  # ties everywhere
    scores[:, :2] = INF
    values, indices = scoring.top_k(scores, 25, chunk=128)  # 200k > 4 * 25 * 128: chunked
    expected = torch.topk(scores, 25, dim=1).values
    assert torch.equal(values, expected)
    assert torch.equal(scores.gather(1, indices), values)
    assert all(len(set(row.tolist())) == 25 for row in indices)


def test_top_k_caps_k_at_the_catalogue_and_finite_drops_masked_entries():
    row = torch.tensor([INF, INF, 0.5, INF, 2.0])
    values, indices = scoring.top_k(row, 10)
    assert indices.tolist()[:2] == [4, 2] and len(values) == 5
    kept_values, kept_indices = scoring.finite(values, indices)
    assert kept_indices.tolist() == [4, 2] and kept_values.tolist() == [2.0, 0.5]


def test_candidate_scores_use_the_user_vector_or_the_fallback_and_nan_for_unknown_items():
    table = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([3, 1, 2])  # 1 = OOV: an unknown item
    warm = scoring.candidate_scores(torch.tensor([2.0, 3.0]), table, candidates, fallback=torch.zeros(4))
    assert warm[0] == 3.0 and math.isnan(warm[1]) and warm[2] == 2.0
    cold = scoring.candidate_scores(None, table, candidates, fallback=torch.tensor([0, 0, 7, 9]))
    assert cold[0] == 9.0 and math.isnan(cold[1]) and cold[2] == 7.0


def test_the_new_item_boost_lifts_only_items_without_training_events():
    counts = torch.tensor([0, 0, 3, 0, 5, 0])  # pad, oov, then items 3 and 5 never trained
    boost = scoring.new_item_boost(counts, 1.5)
    assert boost.tolist() == [0.0, 0.0, 0.0, 1.5, 0.0, 1.5]
    assert scoring.new_item_boost(counts, 0.0) is None
    scores = torch.zeros(2, 6)
    assert scoring.boost_items(scores, boost) is scores and scores[1].tolist() == boost.tolist()
    assert torch.equal(scoring.boost_items(scores.clone(), None), scores)
