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
from .heads import OUTCOMES

OUTCOME_PREFIX = "outcome."  # training-batch columns of the user-level examples (train/outcomes.py)


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

    ``query_weight`` (models with the query part, batches with ``target_queries``): every
    position whose target a search led to is scored a second time with that query
    (``SequenceEncoder.with_query``) and adds that share of its cross-entropy: the search
    objective trained jointly with the next-item one, on the same positions.

    ``purchase_weight`` / ``type_weight`` (models with ``heads``, batches with
    ``purchase_targets`` / ``type_targets``): the next-purchase cross-entropy over the
    catalogue from the purchase head, and the next-event-type one, on the same positions.

    ``outcome_weight`` (models with ``outcomes``, batches with ``OUTCOME_PREFIX`` columns:
    user-level examples at a cut-off riding along with the windows): the binary
    cross-entropy of the purchase-propensity and churn heads.
    """

    def __init__(self, encoder: SequenceEncoder, mask_history: bool = False, content_weight: float = 0.0,
                 query_weight: float = 1.0, purchase_weight: float = 0.0, type_weight: float = 0.0,
                 outcome_weight: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.mask_history = mask_history
        self.content_weight = _checked_content_weight(encoder, content_weight)
        self.query_weight = _checked_query_weight(query_weight)
        self.purchase_weight, self.type_weight = _checked_head_weights(encoder, purchase_weight, type_weight)
        self.outcome_weight = _checked_outcome_weight(encoder, outcome_weight)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._next_item_loss(batch) + _outcome_loss(self, batch)

    def _next_item_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h, targets, queries = _positions_with_targets(self.encoder, batch)  # (N, D), (N,), (N,)
        searched = _searched(self.encoder, batch, h, targets, queries)
        if targets.numel() == 0 and (searched is None or searched[1].numel() == 0):
            return _no_targets(h)
        history = _history_up_to(batch) if self.mask_history else None
        table, content = _tables(self.encoder, self.content_weight)
        loss = self._cross_entropy(h, targets, table, history) if targets.numel() else h.sum() * 0.0
        if content is not None and targets.numel():
            loss = loss + self.content_weight * self._cross_entropy(h, targets, content, history)
        if searched is not None:
            hq, tq, on = searched
            if tq.numel():
                rows = None if history is None else _pad_rows(history[on], len(tq))
                loss = loss + self.query_weight * self._cross_entropy(hq, tq, table, rows)
            else:
                loss = loss + hq.sum() * 0.0
        if self.encoder.heads is not None:
            loss = loss + _head_losses(self, batch, h, lambda hp, tp, on: self._cross_entropy(
                hp, tp, table, None if history is None else history[on]))
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
    content-only table, and ``query_weight`` the search objective, as in FullSoftmaxTask.
    """

    def __init__(self, encoder: SequenceEncoder, proposal: torch.Tensor, num_negatives: int, seed: int,
                 content_weight: float = 0.0, query_weight: float = 1.0, purchase_weight: float = 0.0,
                 type_weight: float = 0.0, outcome_weight: float = 0.0) -> None:
        super().__init__()
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        self.encoder = encoder
        self.content_weight = _checked_content_weight(encoder, content_weight)
        self.query_weight = _checked_query_weight(query_weight)
        self.purchase_weight, self.type_weight = _checked_head_weights(encoder, purchase_weight, type_weight)
        self.outcome_weight = _checked_outcome_weight(encoder, outcome_weight)
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
        return self._next_item_loss(batch, negatives) + _outcome_loss(self, batch)

    def _next_item_loss(self, batch: dict[str, torch.Tensor], negatives: torch.Tensor | None) -> torch.Tensor:
        h, targets, queries = _positions_with_targets(self.encoder, batch)  # (N, D), (N,), (N,)
        searched = _searched(self.encoder, batch, h, targets, queries)
        if targets.numel() == 0 and (searched is None or searched[1].numel() == 0):
            return _no_targets(h)
        neg = (self.sample() if negatives is None else negatives).to(h.device)  # (K,)
        table, content = _tables(self.encoder, self.content_weight)
        loss = self._cross_entropy(h, targets, neg, table) if targets.numel() else h.sum() * 0.0
        if content is not None and targets.numel():
            loss = loss + self.content_weight * self._cross_entropy(h, targets, neg, content)
        if searched is not None:
            hq, tq, _ = searched
            loss = loss + (self.query_weight * self._cross_entropy(hq, tq, neg, table) if tq.numel() else hq.sum() * 0.0)
        if self.encoder.heads is not None:
            loss = loss + _head_losses(self, batch, h, lambda hp, tp, on: self._cross_entropy(hp, tp, neg, table))
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


def _checked_query_weight(weight: float) -> float:
    if weight < 0:
        raise ValueError(f"query_weight must be >= 0, got {weight!r}")
    return float(weight)


def _checked_head_weights(encoder: SequenceEncoder, purchase: float, event_type: float) -> tuple[float, float]:
    if purchase < 0 or event_type < 0:
        raise ValueError(f"purchase_weight and type_weight must be >= 0, got {purchase!r} and {event_type!r}")
    if (purchase or event_type) and encoder.heads is None:
        raise ValueError("purchase_weight / type_weight need a model with behaviour heads (behaviour_heads=True)")
    return float(purchase), float(event_type)


def _checked_outcome_weight(encoder: SequenceEncoder, weight: float) -> float:
    if weight < 0:
        raise ValueError(f"outcome_weight must be >= 0, got {weight!r}")
    if weight and encoder.outcomes is None:
        raise ValueError("outcome_weight needs a model with propensity / churn heads (outcome_heads=True)")
    return float(weight)


def outcome_part(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The user-level examples riding in a training batch (``OUTCOME_PREFIX`` columns), unprefixed."""
    n = len(OUTCOME_PREFIX)
    return {k[n:]: v for k, v in batch.items() if k.startswith(OUTCOME_PREFIX)}


def _outcome_loss(task: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The weighted binary cross-entropy of the propensity and churn heads on the batch's
    user-level examples (mean over examples and both labels). 0 for a model without the
    heads; tied to every head parameter when the batch has none (DDP syncs them)."""
    heads = task.encoder.outcomes
    if heads is None:
        return torch.zeros((), device=batch["items"].device)
    part = outcome_part(batch)
    if not task.outcome_weight or not part or len(part["items"]) == 0:
        return sum(p.sum() for p in heads.parameters()) * 0.0
    logits = task.encoder.outcome_logits(part).float()  # (B, 2)
    labels = torch.stack([part[name] for name in OUTCOMES], dim=1).float()
    return task.outcome_weight * F.binary_cross_entropy_with_logits(logits, labels)


def _head_losses(task: nn.Module, batch: dict[str, torch.Tensor], h: torch.Tensor, item_cross_entropy) -> torch.Tensor:
    """The weighted next-purchase and next-type losses over the positions with a next-item
    target (``h``: their states, (N, D)). ``item_cross_entropy(states, targets, on)`` is the
    task's catalogue cross-entropy (``on``: which of the N positions). Positions without a
    later purchase carry no purchase loss. Every head parameter stays in the graph, also
    with a weight of 0 or no such position in the batch, so DDP syncs them on every rank."""
    heads, keep = task.encoder.heads, batch["targets"] >= FIRST_ITEM_INDEX  # (B, T)
    loss = (heads.purchase_vector(h[:1]).sum() + heads.type_logits(h[:1]).sum()) * 0.0
    if task.purchase_weight and "purchase_targets" in batch:
        wanted = batch["purchase_targets"][keep]  # (N,)
        on = wanted >= FIRST_ITEM_INDEX
        if bool(on.any()):
            loss = loss + task.purchase_weight * item_cross_entropy(heads.purchase_vector(h[on]), wanted[on], on)
    if task.type_weight and "type_targets" in batch:
        logits = heads.type_logits(h)  # (N, types)
        loss = loss + task.type_weight * F.cross_entropy(logits.float(), batch["type_targets"][keep])
    return loss


def _positions_with_targets(
    encoder: SequenceEncoder, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Hidden states, targets and the targets' query hashes (0 = none; None for a model
    without the query part or a batch without them) of the positions that carry a loss:
    (N, D), (N,), (N,)."""
    h = encoder(batch)  # (B, T, D)
    targets = batch["targets"]  # (B, T)
    keep = targets >= FIRST_ITEM_INDEX
    queries = batch.get("target_queries") if encoder.config.uses_queries else None
    return h[keep], targets[keep], None if queries is None else queries[keep]


def _searched(
    encoder: SequenceEncoder, batch: dict[str, torch.Tensor], h: torch.Tensor, targets: torch.Tensor,
    queries: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The search examples of a batch: query-aware states (M, D) and their targets (M,),
    first the positions whose target a query led to (which of the N: ``on``, (N,) bool),
    then the users' first events a query led to, searched with no history (the zero
    state, as ``encode`` gives a user without events). None without the query part. The
    query part runs even when M is 0, so every rank's gradient covers its parameters (DDP)."""
    if queries is None:
        return None
    on = queries != 0
    states, wanted, asked = [h[on]], [targets[on]], [queries[on]]
    if "first_target" in batch:
        first = batch["first_target"] >= FIRST_ITEM_INDEX  # (B,)
        states.append(h.new_zeros(int(first.sum()), h.shape[1]))
        wanted.append(batch["first_target"][first])
        asked.append(batch["first_query"][first])
    users, hashes = torch.cat(states), torch.cat(asked)
    return encoder.with_query(users, encoder.embed.query_table.lookup(hashes)), torch.cat(wanted), on


def _pad_rows(rows: torch.Tensor, n: int) -> torch.Tensor:
    """History rows (M0, T) followed by empty ones, to n rows (the first-event searches)."""
    return torch.cat([rows, rows.new_zeros(n - rows.shape[0], rows.shape[1])])


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
