"""Targets beyond the next item (seqrec_ray/train/targets.py) on hand-made timelines."""

from __future__ import annotations

import pyarrow as pa
import pytest

from seqrec_ray.schema import EVENT_TYPE_INDEX as T
from seqrec_ray.schema import SECONDS_PER_DAY as DAY
from seqrec_ray.train.targets import cutoff_examples, next_event_type_targets, next_purchase_targets

V, C, P = T["view"], T["cart"], T["purchase"]


def timeline(rows):
    """rows: (user, [(item, type, day), ...]) -> sequence rows (categories 1, gaps 1)."""
    out = []
    for user, events in rows:
        out.append({"user_id": user, "items": [e[0] for e in events], "event_types": [e[1] for e in events],
                    "categories": [1] * len(events), "gap_buckets": [1] * len(events),
                    "timestamps": [e[2] * DAY for e in events], "splits": [0] * len(events)})
    return pa.Table.from_pylist(out)


SEQ = timeline([
    ("a", [(5, V, 0), (6, C, 1), (6, P, 2), (7, V, 3), (8, P, 4), (9, V, 5)]),
    ("b", [(3, V, 0), (4, V, 1)]),  # never buys
    ("c", [(2, P, 9), (2, V, 12)]),  # first seen after the cut-off below
])


def test_next_purchase_skips_non_purchase_events_and_stays_within_the_user():
    assert next_purchase_targets(SEQ).to_pylist() == [[6, 6, 8, 8, 0, 0], [0, 0], [0, 0]]


def test_next_event_type_is_the_following_event_and_zero_at_the_end():
    assert next_event_type_targets(SEQ).to_pylist() == [[C, P, V, P, V, 0], [V, 0], [V, 0]]


def test_cutoff_labels_use_only_events_before_the_cutoff_as_inputs():
    ex = cutoff_examples(SEQ, cutoff=3.5 * DAY, horizon_days=1.0, max_len=3).to_pylist()
    assert [e["user_id"] for e in ex] == ["a", "b"]  # c has no event before the cut-off
    a, b = ex
    assert a["items"] == [6, 6, 7] and a["event_types"] == [C, P, V]  # the last 3 before day 3.5
    assert (a["purchase"], a["churn"]) == (1, 0)  # buys item 8 on day 4, inside [3.5, 4.5)
    assert (b["purchase"], b["churn"]) == (0, 1) and b["items"] == [0, 3, 4]  # left-padded
    assert a["days_since_last_event"] == pytest.approx(0.5) and b["days_since_last_event"] == pytest.approx(2.5)
    later = cutoff_examples(SEQ, cutoff=4.5 * DAY, horizon_days=1.0, max_len=3).to_pylist()
    assert (later[0]["purchase"], later[0]["churn"]) == (0, 0)  # only a view on day 5
    edge = cutoff_examples(SEQ, cutoff=4.0 * DAY, horizon_days=1.0, max_len=8).to_pylist()
    assert 8 not in edge[0]["items"] and edge[0]["purchase"] == 1  # the event at the cut-off is a label, not an input


def test_bad_horizon_and_max_len_name_the_value():
    with pytest.raises(ValueError, match="horizon_days"):
        cutoff_examples(SEQ, 0.0, 0.0, 3)
    with pytest.raises(ValueError, match="max_len"):
        cutoff_examples(SEQ, 0.0, 1.0, 0)


def test_training_windows_carry_next_purchase_and_next_type_targets_per_input_position():
    from seqrec_ray.train.examples import training_windows

    windows = training_windows(SEQ, max_len=8, behaviour_targets=True).to_pylist()
    a = windows[0]  # user a: 6 events, 5 inputs, left-padded to 8
    assert a["items"][-5:] == [5, 6, 6, 7, 8]
    assert a["targets"][-5:] == [6, 6, 7, 8, 9]
    assert a["purchase_targets"][-5:] == [6, 6, 8, 8, 0]  # the next purchase strictly after each input
    assert a["type_targets"][-5:] == [C, P, V, P, V]
    assert a["purchase_targets"][:3] == [0, 0, 0] and a["type_targets"][:3] == [0, 0, 0]


def test_the_behaviour_heads_train_jointly_and_the_purchase_head_scores_the_catalogue():
    import torch

    from seqrec_ray.models import EncoderConfig, build_encoder
    from seqrec_ray.models.losses import FullSoftmaxTask
    from seqrec_ray.train.batches import table_to_tensors
    from seqrec_ray.train.examples import training_windows

    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig("gru", num_items=10, dim=8, hidden=8, dropout=0, emb_dropout=0,
                                          behaviour_heads=True))
    batch = table_to_tensors(training_windows(SEQ, max_len=8, behaviour_targets=True))
    plain = FullSoftmaxTask(encoder)(batch)
    joint = FullSoftmaxTask(encoder, purchase_weight=1.0, type_weight=0.5)(batch)
    assert float(joint) > float(plain)  # two more cross-entropies, each > 0
    joint.backward()
    assert encoder.heads.event_type.weight.grad.abs().sum() > 0
    assert encoder.heads.purchase.weight.grad.abs().sum() > 0
    # Zero-initialised: before training the purchase head ranks as the next-item vector does.
    fresh = build_encoder(EncoderConfig("gru", num_items=10, dim=8, hidden=8, behaviour_heads=True)).eval()
    features = {k: batch[k][:1] for k in ("items", "event_types", "categories", "gap_buckets")}
    assert torch.allclose(fresh.score_purchase(features), fresh.score(features))
    with pytest.raises(ValueError, match="behaviour heads"):
        FullSoftmaxTask(build_encoder(EncoderConfig("gru", num_items=10, dim=8, hidden=8)), purchase_weight=1.0)
