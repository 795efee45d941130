"""Losses on tiny hand-checked cases (full softmax, sampled softmax with log-Q)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seqrec_ray.models import EncoderConfig, SequenceEncoder, build_encoder
from seqrec_ray.models.losses import FullSoftmaxTask, SampledSoftmaxTask, proposal_distribution

E = math.e


class LookupEncoder(SequenceEncoder):
    """A real SequenceEncoder whose hidden state is the current item's embedding, so
    every logit is a hand-computable dot product of two table rows."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.config = EncoderConfig("lstm", num_items=len(table), dim=len(table[0]))
        self.embed = nn.Module()
        self.embed.items = nn.Embedding.from_pretrained(torch.tensor(table), freeze=False)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embed.items(features["items"])  # (B, T, D)

    def item_embeddings(self) -> torch.Tensor:
        return self.embed.items.weight  # (V, D): no content part


# Items: 0 pad, 1 oov, 2 = (1, 0), 3 = (0, 1), 4 = (1, 1).
TABLE = [[0.0, 0.0], [5.0, 5.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
BATCH = {"items": torch.tensor([[0, 2, 3]]), "targets": torch.tensor([[0, 3, 2]])}


def test_full_softmax_by_hand():
    # Position 1: h = (1, 0), logits over items 2, 3, 4 = [1, 0, 1], target 3.
    # Position 2: h = (0, 1), logits [0, 1, 1], target 2. pad/oov never compete
    # (oov's huge logit would otherwise dominate).
    expected = (math.log(E + 1 + E) - 0.0 + math.log(1 + E + E) - 0.0) / 2
    loss = FullSoftmaxTask(LookupEncoder(TABLE))(BATCH)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_full_softmax_with_history_masked_by_hand():
    # Position 1: history {2}, target 3: item 2 leaves the softmax -> logits over 3, 4 = [0, 1].
    # Position 2: history {2, 3}, target 2 (a repeat: the target itself stays in) ->
    # item 3 leaves -> logits over 2, 4 = [0, 1].
    expected = (math.log(1 + E) - 0.0 + math.log(1 + E) - 0.0) / 2
    task = FullSoftmaxTask(LookupEncoder(TABLE), mask_history=True)
    assert task(BATCH).item() == pytest.approx(expected, rel=1e-6)
    # Gradients still reach the target's logit through the restored entry.
    task(BATCH).backward()
    assert task.encoder.embed.items.weight.grad[2].abs().sum() > 0


def test_sampled_softmax_log_q_and_accidental_hits_by_hand():
    q = torch.tensor([0.0, 0.0, 0.5, 0.25, 0.25])
    task = SampledSoftmaxTask(LookupEncoder(TABLE), q, num_negatives=2, seed=0)
    # Negative logits get -log(K q): item 2 -> -log 1 = 0; item 4 -> -log 0.5 = +log 2.
    # Position 1 (h=(1,0), target 3): pos 0; negs 2: 1, 4: 1+log2 -> log(1 + e + 2e).
    # Position 2 (h=(0,1), target 2): pos 0; neg 2 is the target (masked); 4: 1+log2 -> log(1 + 2e).
    expected = (math.log(1 + 3 * E) + math.log(1 + 2 * E)) / 2
    loss = task(BATCH, negatives=torch.tensor([2, 4]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_approaches_full_softmax_with_many_uniform_negatives():
    torch.manual_seed(0)
    enc = build_encoder(EncoderConfig("gru", num_items=30, max_len=6, dim=8, hidden=8)).eval()
    with torch.no_grad():
        enc.embed.items.weight.mul_(50)  # spread logits so the comparison means something
    batch = {"items": torch.randint(2, 30, (4, 6)), "targets": torch.randint(2, 30, (4, 6))}
    full = FullSoftmaxTask(enc)(batch).item()
    sampled = SampledSoftmaxTask(enc, proposal_distribution(30, "uniform", None), 50_000, seed=1)(batch).item()
    few = SampledSoftmaxTask(enc, proposal_distribution(30, "uniform", None), 3, seed=1)(batch).item()
    assert sampled == pytest.approx(full, rel=0.02)
    assert abs(few - full) > abs(sampled - full)


def test_proposal_distributions():
    uni = proposal_distribution(6, "uniform", None)
    assert uni.tolist() == pytest.approx([0, 0, 0.25, 0.25, 0.25, 0.25])
    pop = proposal_distribution(4, "popularity", torch.tensor([9, 9, 15, 0]))
    w = [16**0.75, 1.0]
    assert pop.tolist() == pytest.approx([0, 0, w[0] / sum(w), w[1] / sum(w)])
    with pytest.raises(ValueError, match="item_counts"):
        proposal_distribution(4, "popularity", None)
    with pytest.raises(ValueError, match="zipf"):
        proposal_distribution(4, "zipf", None)


def test_sampler_is_seeded_and_never_draws_pad_or_oov():
    q = proposal_distribution(50, "uniform", None)
    a = SampledSoftmaxTask(LookupEncoder(TABLE), q, 1000, seed=7)
    b = SampledSoftmaxTask(LookupEncoder(TABLE), q, 1000, seed=7)
    draw = a.sample()
    assert torch.equal(draw, b.sample()) and int(draw.min()) >= 2


@pytest.mark.parametrize("task_cls", ["full", "sampled"])
def test_batch_without_targets_gives_zero_loss_with_a_graph(task_cls):
    enc = LookupEncoder(TABLE)
    task = FullSoftmaxTask(enc) if task_cls == "full" else SampledSoftmaxTask(enc, proposal_distribution(5, "uniform", None), 4, 0)
    loss = task({"items": torch.tensor([[0, 2]]), "targets": torch.tensor([[0, 0]])})
    loss.backward()
    assert loss.item() == 0.0 and enc.embed.items.weight.grad is not None


def test_items_without_training_events_are_no_negatives_for_a_content_model():
    """A catalogue-only item never is a training target, so it must not be a negative
    either: the loss is the same whatever its vector, and sampled negatives skip it."""
    from seqrec_ray.models import EncoderConfig, build_encoder

    torch.manual_seed(0)
    config = EncoderConfig("gru", num_items=6, dim=4, hidden=4, content_fields=("brand",), content_buckets=16,
                           max_item_tokens=2)
    encoder = build_encoder(config)
    tokens = torch.tensor([[0, 0], [0, 0], [3, 0], [4, 0], [5, 0], [6, 0]], dtype=torch.int32)
    encoder.embed.content.set_items(tokens, torch.tensor([True, True, True, True, True, False]))
    batch = {"items": torch.tensor([[2, 3, 4]]), "targets": torch.tensor([[3, 4, 2]])}
    task = FullSoftmaxTask(encoder).eval()
    before = task(batch)
    with torch.no_grad():
        encoder.embed.content.tokens.weight[6].fill_(50.0)  # item 5's content: a huge logit if it counted
    assert torch.allclose(task(batch), before)
    sampled = SampledSoftmaxTask(encoder, proposal_distribution(6, "uniform", None), num_negatives=500, seed=0)
    assert 5 not in sampled.sample().tolist() and sampled.proposal[5] == 0
