"""Ranking metrics and baselines on hand-computed rankings."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from seqrec_ray.train.baselines import MostRecentScorer, PopularityScorer, train_item_counts
from seqrec_ray.train.metrics import (
    RankingMetrics,
    evaluate_scores,
    mask_scores,
    sampled_ranks,
    target_ranks,
)

NEG = float("-inf")
# Two users over V = 6 (items 2..5 real). User 0: target 2, history [4]; user 1: target 3.
SCORES = torch.tensor([[9.0, 9.0, 0.5, 0.1, 0.9, 0.3], [0.0, 0.0, 0.2, 0.2, 0.1, 0.4]])
TARGETS = torch.tensor([2, 3])
HISTORY = torch.tensor([[4, 0], [0, 0]])


def test_masking_removes_pad_oov_and_history_including_a_repeated_target():
    m = mask_scores(SCORES, TARGETS, HISTORY)
    assert m[0].tolist() == [NEG, NEG, 0.5, pytest.approx(0.1), NEG, pytest.approx(0.3)]
    # A target that is also in the history (a repeat purchase) is masked too (S3-Rec):
    # it ranks last, so masked metrics never reward "the next item is one I had".
    m2 = mask_scores(SCORES, torch.tensor([4, 3]), HISTORY)
    assert m2[0, 4].item() == NEG
    assert target_ranks(m2, torch.tensor([4, 3]))[0].item() == 5


def test_ranks_are_pessimistic_on_ties():
    masked = mask_scores(SCORES, TARGETS, HISTORY)
    assert target_ranks(masked, TARGETS).tolist() == [0, 2]  # user 1: item 5 above, item 2 tied
    unmasked = mask_scores(SCORES, TARGETS, None)
    assert target_ranks(unmasked, TARGETS).tolist() == [1, 2]  # user 0: own item 4 outranks
    assert target_ranks(torch.zeros(1, 5), torch.tensor([3])).tolist() == [4]  # all tied: last


def test_metric_values_by_hand():
    metrics = evaluate_scores(
        lambda b: SCORES, [{"items": torch.zeros(2, 3, dtype=torch.long), "target": TARGETS, "history": HISTORY}],
        num_items=6, ks=(1, 2, 3),
    )
    d = metrics.to_dict()
    # ranks [0, 2]
    assert d["users"] == 2 and d["candidates"] == "full"
    assert (d["hr@1"], d["hr@2"], d["hr@3"]) == (0.5, 0.5, 1.0)
    assert d["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert d["ndcg@2"] == pytest.approx(0.5)
    assert d["mrr@3"] == pytest.approx((1 + 1 / 3) / 2)
    # top-1 lists: user 0 -> item 2, user 1 -> item 5: 2 of 4 real items.
    assert d["coverage@1"] == 0.5
    assert d["coverage@3"] == 0.75  # top-3 lists {2, 5, 3} and {5, 2, 3}: item 4 never shown
    no_mask = evaluate_scores(
        lambda b: SCORES, [{"items": torch.zeros(2, 3, dtype=torch.long), "target": TARGETS, "history": HISTORY}],
        num_items=6, ks=(1, 2, 3), mask_history=False,
    ).to_dict()
    assert no_mask["hr@1"] == 0.0 and no_mask["mrr@3"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_merge_counts_each_user_once_and_matches_a_single_pass():
    ranks = torch.tensor([0, 3, 7, 12, 25, 1])
    top = torch.arange(6 * 20).reshape(6, 20) % 40
    whole = RankingMetrics((5, 10, 20), num_items=40)
    whole.add(ranks, top)
    a, b = RankingMetrics((5, 10, 20), num_items=40), RankingMetrics((5, 10, 20), num_items=40)
    a.add(ranks[:4], top[:4])
    b.add(ranks[4:], top[4:])
    merged = a.merge(b).to_dict()
    assert merged["users"] == 6
    assert merged == pytest.approx(whole.to_dict())
    assert merged["hr@5"] == pytest.approx(3 / 6) and merged["hr@20"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="merge"):
        a.merge(RankingMetrics((5, 10), num_items=40))


def test_sampled_ranks_and_label():
    scores = torch.tensor([[0.0, 0.0, 0.7, 0.9, 0.1, 0.7, 0.2]])
    negatives = torch.tensor([[3, 4, 5, 6]])  # 0.9 above, 0.7 tie (counts above), 0.1, 0.2 below
    assert sampled_ranks(scores, torch.tensor([2]), negatives).tolist() == [2]
    m = evaluate_scores(
        lambda b: scores, [{"items": torch.zeros(1, 2, dtype=torch.long), "target": torch.tensor([2]), "negatives": negatives}],
        num_items=7, ks=(1, 3), negatives_key="negatives",
    ).to_dict()
    assert m["candidates"] == "sampled" and m["hr@1"] == 0.0 and m["hr@3"] == 1.0
    assert "coverage@3" not in m


def test_popularity_counts_only_train_events():
    seqs = pa.table({"items": [[2, 3, 3, 4], [3, 5, 2]], "splits": pa.array([[0, 0, 1, 2], [0, 0, 0]], pa.list_(pa.int8()))})
    assert train_item_counts(seqs, 6).tolist() == [0, 0, 2, 2, 0, 1]


def test_baseline_scorers_by_hand():
    counts = np.array([0, 0, 5, 1, 3, 9])
    batch = {"items": torch.tensor([[0, 3, 4, 3], [0, 0, 0, 2]])}
    pop = PopularityScorer(counts)(batch)
    assert pop.shape == (2, 6) and pop[0].argsort(descending=True)[:4].tolist() == [5, 2, 4, 3]
    recent = MostRecentScorer(counts)(batch)
    # User 0: item 3 (most recent), then 4, then by popularity 5, 2.
    assert recent[0, 2:].argsort(descending=True).add(2).tolist() == [3, 4, 5, 2]
    assert recent[1, 2:].argsort(descending=True).add(2).tolist() == [2, 5, 4, 3]
    masked = mask_scores(recent, torch.tensor([5, 4]), batch["items"])
    assert target_ranks(masked, torch.tensor([5, 4])).tolist() == [0, 1]  # own items gone: popularity
    masked_pop = mask_scores(pop, torch.tensor([5, 4]), batch["items"])
    assert torch.equal(masked.argsort(1, descending=True)[:, :2], masked_pop.argsort(1, descending=True)[:, :2])
