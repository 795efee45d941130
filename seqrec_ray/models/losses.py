"""Training tasks: a loss wrapped around an encoder (the encoder never knows the loss).

``task(batch) -> scalar loss`` for a batch of LEFT-padded (B, T) int64 tensors with
``targets`` (the next item at each position; targets below 2, pad and oov, carry no loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import scoring
from .base import SequenceEncoder
from .config import FIRST_ITEM_INDEX


class FullSoftmaxTask(nn.Module):
    """Cross-entropy over the whole catalogue at every position with a target.

    ``mask_history``: at each position, the items the user already had up to and
    including that position leave the softmax (unless one is the target itself), as
    the S3-Rec evaluation protocol removes them from the ranking. The loss then spends
    nothing on pushing down items that are never ranked; keep it off where repeat
    purchases are to be recommended.

    ``content_weight`` (models with item content): adds that share of the same loss over
    the content-only table (every item as a new product would be scored: the OOV row plus
    its content), so the content path learns to rank on its own without taking the ID
    rows away from the items that have them (which ID dropout does).
    """

    def __init__(self, encoder: SequenceEncoder, mask_history: bool = False, content_weight: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.mask_history = mask_history
        self.content_weight = _checked_content_weight(encoder, content_weight)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h, targets = _positions_with_targets(self.encoder, batch)  # (N, D), (N,)
        if targets.numel() == 0:
            return _no_targets(h)
        history = _history_up_to(batch) if self.mask_history else None
        table, content = _tables(self.encoder, self.content_weight)
        loss = self._cross_entropy(h, targets, table, history)
        if content is not None:
            loss = loss + self.content_weight * self._cross_entropy(h, targets, content, history)
        return loss

    def _cross_entropy(self, h: torch.Tensor, targets: torch.Tensor, table: torch.Tensor,
                       history: torch.Tensor | None) -> torch.Tensor:
        logits = scoring.mask_unrankable(scoring.catalogue_scores(h, table))  # (N, V)
        scoring.mask_outside(logits, self.encoder.trained_items())  # catalogue-only items: no negatives
        if history is not None:
            # The target's logit recomputed (a gather would pin ``logits`` before the edits).
            target_logits = (h * table[targets]).sum(-1, keepdim=True).to(logits.dtype)  # (N, 1)
            scoring.mask_items(logits, history)
            logits.scatter_(1, targets.unsqueeze(1), target_logits)
        return F.cross_entropy(logits.float(), targets)


class SampledSoftmaxTask(nn.Module):
    """Sampled softmax with log-Q correction and accidental-hit masking.

    ``num_negatives`` (K) items are drawn with replacement from ``proposal`` (q, a (V,)
    probability vector with zero mass on pad/oov), shared by the whole batch. Each
    negative's logit gets ``- log(K * q)``, so ``sum_j exp(logit_j) / (K q_j)`` over the
    draws estimates the full softmax's partition sum (importance sampling, Bengio &
    Senecal): the loss tends to full cross-entropy as K grows. The positive keeps its
    plain logit, and a draw equal to a row's target (an accidental hit) is masked out.
    With item content, items without training events get no proposal mass (see
    ``SequenceEncoder.trained_items``), and ``content_weight`` adds the same loss over the
    content-only table, as in FullSoftmaxTask.
    """

    def __init__(self, encoder: SequenceEncoder, proposal: torch.Tensor, num_negatives: int, seed: int,
                 content_weight: float = 0.0) -> None:
        super().__init__()
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        self.encoder = encoder
        self.content_weight = _checked_content_weight(encoder, content_weight)
        self.num_negatives = num_negatives
        trained = encoder.trained_items()
        if trained is not None:
            proposal = torch.where(trained.to(proposal.device), proposal, torch.zeros_like(proposal))
            proposal = proposal / proposal.sum()
        self.register_buffer("log_q", torch.log(proposal.double() * num_negatives).float(), persistent=False)
        self.register_buffer("proposal", proposal.float(), persistent=False)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> torch.Tensor:
        return torch.multinomial(self.proposal.cpu(), self.num_negatives, replacement=True, generator=self.generator)

    def forward(self, batch: dict[str, torch.Tensor], negatives: torch.Tensor | None = None) -> torch.Tensor:
        h, targets = _positions_with_targets(self.encoder, batch)  # (N, D), (N,)
        if targets.numel() == 0:
            return _no_targets(h)
        neg = (self.sample() if negatives is None else negatives).to(h.device)  # (K,)
        table, content = _tables(self.encoder, self.content_weight)
        loss = self._cross_entropy(h, targets, neg, table)
        if content is not None:
            loss = loss + self.content_weight * self._cross_entropy(h, targets, neg, content)
        return loss

    def _cross_entropy(self, h: torch.Tensor, targets: torch.Tensor, neg: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        pos_logit = (h * table[targets]).sum(-1, keepdim=True)  # (N, 1)
        neg_logit = h @ table[neg].T - self.log_q[neg]  # (N, K)
        neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1).float()  # (N, 1 + K)
        return F.cross_entropy(logits, torch.zeros_like(targets))


def proposal_distribution(num_items: int, sampler: str, item_counts: torch.Tensor | None, alpha: float = 0.75) -> torch.Tensor:
    """Negative-sampling distribution over item indices: (V,), zero on pad and oov."""
    if sampler == "uniform":
        weights = torch.ones(num_items, dtype=torch.float64)
    elif sampler == "popularity":
        if item_counts is None or len(item_counts) != num_items:
            raise ValueError(f"popularity sampling needs item_counts of length {num_items}")
        # Smoothed (count + 1) ** alpha (word2vec): rare items keep some mass.
        weights = (torch.as_tensor(item_counts, dtype=torch.float64) + 1.0) ** alpha
    else:
        raise ValueError(f"negative sampler must be 'uniform' or 'popularity', got {sampler!r}")
    weights[:FIRST_ITEM_INDEX] = 0.0
    return weights / weights.sum()


def _tables(encoder: SequenceEncoder, content_weight: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The scoring table, and the content-only one when the content loss is on."""
    if content_weight:
        return encoder.item_and_content_embeddings()
    return encoder.item_embeddings(), None


def _checked_content_weight(encoder: SequenceEncoder, weight: float) -> float:
    if weight < 0:
        raise ValueError(f"content_weight must be >= 0, got {weight!r}")
    if weight and not encoder.config.uses_content:
        raise ValueError("content_weight needs a model with item content (content_fields)")
    return float(weight)


def _positions_with_targets(encoder: SequenceEncoder, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states and targets of the positions that carry a loss: (N, D), (N,)."""
    h = encoder(batch)  # (B, T, D)
    targets = batch["targets"]  # (B, T)
    keep = targets >= FIRST_ITEM_INDEX
    return h[keep], targets[keep]


def _history_up_to(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """For each position with a target, the items at it and before it: (N, T), 0 = pad."""
    items, keep = batch["items"], batch["targets"] >= FIRST_ITEM_INDEX  # (B, T)
    width = items.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=items.device).tril()  # (T, T): s <= t
    prefixes = items.unsqueeze(1).expand(-1, width, -1) * causal  # (B, T, T)
    return prefixes[keep]


def _no_targets(h: torch.Tensor) -> torch.Tensor:
    # A batch without targets still returns a (zero) loss tied to the graph, so DDP's
    # gradient sync sees every parameter on every rank.
    return h.sum() * 0.0
