"""Masked scoring and top-k: the one place that decides which items may be ranked.

Training losses, offline metrics, batch recommendation, the Serve ranker and the
simulator's checkpoint arm all score ``user @ items.T`` and rank through these functions,
so "pad and OOV are never items", "an excluded item is never returned" and "ties go to
the lower index" mean the same thing everywhere. Pure torch; masks are applied in place
and return their input, so calls chain.
"""

from __future__ import annotations

import torch

from .config import FIRST_ITEM_INDEX

NEG_INF = float("-inf")
TOPK_CHUNK = 1024
# Added to the score of an item without training events (a new product, scored from its
# content) by evaluation and serving, for models with item content: e ** 1.0 = 2.7x its
# odds. Selected on Beauty's validation split under the cold-item protocol: the largest
# boost (steps of 0.25) at which warm targets lose nothing against the ID-only model on
# HR@10 and NDCG@10 (bench/cold_start_tradeoff.py; BENCHMARKS.md).
NEW_ITEM_BOOST = 1.0


def catalogue_scores(users: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
    """Scores of every catalogue item for each user vector: (B, D) x (V, D) -> (B, V)."""
    return users @ item_table.T


def boost_items(scores: torch.Tensor, boost: torch.Tensor | None) -> torch.Tensor:
    """Add a per-item offset ``boost`` ((V,) float: e.g. new products' share of exposure,
    ``new_item_boost``) to every row of ``scores`` (B, V), in place."""
    if boost is not None:
        scores += boost.to(device=scores.device, dtype=scores.dtype)
    return scores


def new_item_boost(item_counts: torch.Tensor, boost: float) -> torch.Tensor | None:
    """(V,) offsets: ``boost`` for the items without training events (content-only, new
    products), 0 for the rest; None when ``boost`` is 0."""
    if not boost:
        return None
    offsets = (item_counts == 0).to(torch.float32) * float(boost)
    offsets[:FIRST_ITEM_INDEX] = 0.0
    return offsets


def mask_unrankable(scores: torch.Tensor) -> torch.Tensor:
    """Pad (0) and OOV (1) are not items: -inf in the last dimension, in place."""
    scores[..., :FIRST_ITEM_INDEX] = NEG_INF
    return scores


def mask_items(scores: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
    """Set ``items`` (B, L) int64 item indices, 0-padded, to -inf in each row of ``scores``
    (B, V), in place. Padding lands on column 0, which is never rankable anyway."""
    if items is None or not items.numel():
        return scores
    items = items.to(scores.device)
    if scores.dtype == torch.float32:
        return scores.scatter_(1, items, NEG_INF)
    # On CPU, scatter_ of a scalar into bfloat16 costs ~76 ms for (32, 1M) scores (it
    # rewrites the whole tensor); indexed assignment of the same cells costs ~0.01 ms.
    rows = torch.arange(items.shape[0], device=scores.device).unsqueeze(1).expand_as(items)  # (B, L)
    return scores.index_put_((rows, items), torch.tensor(NEG_INF, dtype=scores.dtype, device=scores.device))


def mask_outside(scores: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Keep only ``allowed`` items ((V,) or (B, V) bool), the rest -inf, in place."""
    if allowed is not None:
        scores.masked_fill_(~allowed.to(scores.device), NEG_INF)
    return scores


def masked_scores(
    scores: torch.Tensor, exclude: torch.Tensor | None = None, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """A float copy of ``scores`` (B, V) with pad, OOV, ``exclude`` (B, L) and items outside
    ``allowed`` set to -inf."""
    out = mask_unrankable(scores.float().clone())
    return mask_outside(mask_items(out, exclude), allowed)


def top_k(scores: torch.Tensor, k: int, chunk: int = TOPK_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact best ``k`` (values, indices) per row of (B, V) scores, best first: (B, k').

    k' = min(k, V). Masked (-inf) entries come last and callers drop them (``finite``).
    torch.topk over a million scores costs ~6 ms per row on one CPU core; per-chunk maxima
    plus two small top-ks cost ~1 ms. Exact: each of the k best scores lies in a chunk whose
    maximum is at least the k-th best, and at most k chunks have such a maximum.
    """
    squeeze = scores.dim() == 1
    rows = scores.unsqueeze(0) if squeeze else scores  # (B, V)
    k = min(k, rows.shape[1])
    if rows.shape[1] <= 4 * k * chunk:
        values, indices = torch.topk(rows, k, dim=1)
    else:
        values, indices = _chunked_top_k(rows, k, chunk)
    return (values[0], indices[0]) if squeeze else (values, indices)


def _chunked_top_k(rows: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    B, V = rows.shape
    full = V - V % chunk
    chunk_max = rows[:, :full].view(B, -1, chunk).amax(dim=2)  # (B, C)
    best = torch.topk(chunk_max, k, dim=1).indices  # (B, k) chunks holding the top k
    offsets = torch.arange(chunk, device=rows.device)
    candidates = (best.unsqueeze(2) * chunk + offsets).reshape(B, -1)  # (B, k * chunk)
    tail = torch.arange(full, V, device=rows.device).expand(B, -1)  # (B, V - full)
    candidates = torch.cat([candidates, tail], dim=1)
    values, j = torch.topk(rows.gather(1, candidates), k, dim=1)
    return values, candidates.gather(1, j)


def finite(values: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One row's (values, indices) without its masked (-inf) entries."""
    keep = torch.isfinite(values)
    return values[keep], indices[keep]


def candidate_scores(user: torch.Tensor | None, item_table: torch.Tensor, candidates: torch.Tensor,
                     fallback: torch.Tensor) -> torch.Tensor:
    """Scores of the given candidate indices (N,): ``item @ user``, or ``fallback[item]``
    (e.g. popularity) when ``user`` is None; NaN for pad/OOV candidates (unknown items)."""
    scores = (fallback[candidates].double() if user is None
              else (item_table[candidates] @ user).double())  # (N,)
    return scores.masked_fill(candidates < FIRST_ITEM_INDEX, float("nan"))
