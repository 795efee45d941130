"""Non-learned baselines scored through the same metric code: popularity and most-recent."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch


def train_item_counts(sequences: pa.Table, num_items: int) -> np.ndarray:
    """How often each item index occurs among train events (splits == 0): (V,) int64.

    Counted from the train split only, so validation/test targets never leak into it.
    """
    items = pc.list_flatten(sequences.column("items").combine_chunks()).to_numpy(zero_copy_only=False)
    splits = pc.list_flatten(sequences.column("splits").combine_chunks()).to_numpy(zero_copy_only=False)
    return np.bincount(items[splits == 0].astype(np.int64), minlength=num_items)[:num_items].astype(np.int64)


class PopularityScorer:
    """Every user gets the train-popularity scores: (B, V)."""

    def __init__(self, item_counts: np.ndarray) -> None:
        self.scores = torch.as_tensor(np.asarray(item_counts, dtype=np.float32))  # (V,)

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        B = batch["items"].shape[0]
        return self.scores.to(batch["items"].device).expand(B, -1)


class MostRecentScorer:
    """The user's own items, most recent first, then everything else by popularity.

    Scores: popularity scaled into [0, 1); an item seen at left-padded input column t
    gets 1 + t, so later columns (more recent) rank first. Under history masking every
    own item is masked, and the baseline equals popularity.
    """

    def __init__(self, item_counts: np.ndarray) -> None:
        counts = np.asarray(item_counts, dtype=np.float64)
        self.base = torch.as_tensor(counts / (counts.max() + 1.0), dtype=torch.float32)  # (V,)

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]  # (B, T)
        B, T = items.shape
        scores = self.base.to(items.device).repeat(B, 1)  # (B, V)
        recency = (torch.arange(T, device=items.device, dtype=torch.float32) + 1.0).expand(B, T)  # (B, T)
        # scatter_reduce amax: a repeated item keeps its most recent position.
        boost = torch.zeros_like(scores).scatter_reduce(1, items, recency, reduce="amax")
        return torch.where(boost > 0, 1.0 + boost, scores)


BASELINES = {"popularity": PopularityScorer, "most_recent": MostRecentScorer}


class ContentScorer:
    """Item content without learning: items sharing the most content tokens (category,
    brand, attributes) with the user's most recent item first, popularity breaking ties.

    The one baseline that can rank an item without training events (a cold item), so it
    is the bar for content-based models on cold targets. ``item_tokens``: (V, L) hashed
    token ids (0 = none), as the models read them.
    """

    def __init__(self, item_tokens: np.ndarray, item_counts: np.ndarray) -> None:
        tokens = np.asarray(item_tokens, dtype=np.int64)
        rows, cols = np.nonzero(tokens)
        distinct, compact = np.unique(tokens[rows, cols], return_inverse=True)
        pairs = np.unique(np.stack([rows, compact.ravel()]), axis=1)  # one entry per (item, token)
        values = torch.ones(pairs.shape[1], dtype=torch.float32)
        self.item_by_token = torch.sparse_coo_tensor(torch.from_numpy(pairs), values,
                                                     (tokens.shape[0], len(distinct)),
                                                     check_invariants=True).coalesce()  # (V, H)
        counts = np.asarray(item_counts, dtype=np.float64)
        self.base = torch.as_tensor(np.log1p(counts) / (np.log1p(counts.max()) + 1.0), dtype=torch.float32)  # [0, 1)

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        last = batch["items"][:, -1].cpu()  # (B,) the most recent input item (left padding)
        picked = torch.index_select(self.item_by_token, 0, last).to_dense()  # (B, H)
        shared = torch.sparse.mm(self.item_by_token, picked.t()).t()  # (B, V) shared tokens
        return (shared + self.base).to(batch["items"].device)
