"""Ranking metrics: full-ranking (default) or sampled-candidate HR, NDCG and MRR at K.

Ranks are 0-based and pessimistic on ties: an item scoring the same as the target counts
as ranked above it, so a model that scores everything equally gets no credit.
Accumulators hold sums and a user count, so per-rank results merge exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seqrec_ray.models import scoring
from seqrec_ray.schema import FIRST_ID_INDEX

DEFAULT_KS = (5, 10, 20)


def mask_scores(scores: torch.Tensor, targets: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
    """Scores with pad, oov and (optionally) every history item set to -inf: (B, V).

    As in S3-Rec's evaluation, a history item is masked even when it is the target (a
    repeat): exempting the target would tell the ranker which history item comes next.
    Repeat purchases are measured with masking off.
    """
    return scoring.masked_scores(scores, exclude=history)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all columns of scores (B, V): (B,)."""
    t = scores.gather(1, targets.unsqueeze(1))  # (B, 1)
    return (scores >= t).sum(1) - 1  # ties rank above the target; -1 for the target itself


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among itself and its negatives (B, N): (B,)."""
    t = scores.gather(1, targets.unsqueeze(1))  # (B, 1)
    cand = scores.gather(1, negatives)  # (B, N)
    return (cand >= t).sum(1)


@dataclass
class RankingMetrics:
    """Sums of per-user HR/NDCG/MRR at each K, the user count and top-K item coverage."""

    ks: tuple[int, ...] = DEFAULT_KS
    num_items: int = 0  # catalogue size V (for coverage); 0 = coverage not tracked
    sampled: bool = False  # ranks among sampled candidates, not the full catalogue
    users: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    covered: dict[int, np.ndarray] = field(default_factory=dict)  # K -> (V,) bool

    def add(self, ranks: torch.Tensor, top: torch.Tensor | None = None) -> None:
        """Add a batch: ranks (B,) and, for coverage, each user's top items (B, max K)."""
        r = ranks.detach().cpu().double()
        self.users += int(r.numel())
        for k in self.ks:
            hit = r < k
            self._add(f"hr@{k}", hit.sum().item())
            self._add(f"ndcg@{k}", torch.where(hit, 1.0 / torch.log2(r + 2.0), 0.0).sum().item())
            self._add(f"mrr@{k}", torch.where(hit, 1.0 / (r + 1.0), 0.0).sum().item())
            if top is not None and self.num_items:
                seen = self.covered.setdefault(k, np.zeros(self.num_items, dtype=bool))
                seen[top[:, :k].reshape(-1).cpu().numpy()] = True

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value

    def merge(self, other: RankingMetrics) -> RankingMetrics:
        if (self.ks, self.num_items, self.sampled) != (other.ks, other.num_items, other.sampled):
            raise ValueError("cannot merge metrics with different ks, catalogue or candidate sets")
        sums = {k: self.sums.get(k, 0.0) + other.sums.get(k, 0.0) for k in self.sums.keys() | other.sums.keys()}
        covered = {}
        for k in self.covered.keys() | other.covered.keys():
            a = self.covered.get(k, np.zeros(self.num_items, dtype=bool))
            covered[k] = a | other.covered.get(k, np.zeros(self.num_items, dtype=bool))
        return RankingMetrics(self.ks, self.num_items, self.sampled, self.users + other.users, sums, covered)

    def to_dict(self) -> dict[str, Any]:
        """``users``, ``candidates`` and hr/ndcg/mrr (and coverage) @k as plain floats."""
        out: dict[str, Any] = {"users": self.users, "candidates": "sampled" if self.sampled else "full"}
        for k in self.ks:
            for name in ("hr", "ndcg", "mrr"):
                out[f"{name}@{k}"] = self.sums.get(f"{name}@{k}", 0.0) / self.users if self.users else math.nan
            if k in self.covered:
                out[f"coverage@{k}"] = float(self.covered[k][FIRST_ID_INDEX:].mean())
        return out


ScoreFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@torch.no_grad()
def evaluate_scores(
    score_fn: ScoreFn,
    batches: Iterable[dict[str, torch.Tensor]],
    num_items: int,
    ks: tuple[int, ...] = DEFAULT_KS,
    mask_history: bool = True,
    device: torch.device | str = "cpu",
    negatives_key: str | None = None,
) -> RankingMetrics:
    """Rank each batch's ``target`` under ``score_fn(batch) -> (B, V)``.

    With ``negatives_key`` the target is ranked among the batch's fixed negatives
    (sampled metrics, labelled as such); otherwise among the whole catalogue.
    """
    metrics = RankingMetrics(tuple(ks), 0 if negatives_key else num_items, sampled=negatives_key is not None)
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        targets = batch["target"]
        history = batch.get("history") if mask_history else None
        scores = mask_scores(score_fn(batch), targets, history)  # (B, V)
        if negatives_key:
            metrics.add(sampled_ranks(scores, targets, batch[negatives_key]))
        else:
            top = scoring.top_k(scores, max(ks))[1]  # (B, max K)
            metrics.add(target_ranks(scores, targets), top)
    return metrics
