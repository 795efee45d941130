"""Training examples, batching, config, early stopping, checkpoints and the in-process loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import s3rec_head_artifacts, shared_dataset

from seqrec_ray.data.vocab import load_vocab
from seqrec_ray.train.batches import collate, trim_left_padding
from seqrec_ray.train.checkpoint import load_checkpoint, load_optimizer_state, save_checkpoint
from seqrec_ray.train.examples import eval_examples, training_windows
from seqrec_ray.train.loop import TrainConfig, build_task, evaluate, run_in_process, train_epoch
from seqrec_ray.train.run_state import EarlyStopping


def write_s3rec_artifacts(src: Path, out: Path, max_users: int) -> Path:
    """The first ``max_users`` lines of a real S3-Rec file, featurized (leave-one-out)."""
    return s3rec_head_artifacts(src, out, max_users)


def seq_row(uid, items, splits):
    n = len(items)
    return dict(user_id=uid, items=items, event_types=[5] * n, categories=[1] * n,
                gap_buckets=[1] + [3] * (n - 1), splits=splits)


TINY = pa.Table.from_pylist([
    seq_row("a", [2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 1, 2]),
    seq_row("b", [9, 10], [0, 0]),
    seq_row("c", [4], [0]),
    seq_row("d", [11, 12, 13, 14], [0, 0, 1, 2]),
])


def test_training_windows_tile_train_events_from_the_end():
    w = training_windows(TINY, max_len=2).to_pylist()
    assert [(r["items"], r["targets"]) for r in w] == [
        ([2, 3], [3, 4]),  # user a: train events 2..6, 4 targets -> 2 windows
        ([4, 5], [5, 6]),
        ([0, 9], [0, 10]),  # user b: left-padded; user c: no target, no window
        ([0, 11], [0, 12]),  # user d: valid/test events never enter training
    ]
    assert w[2]["gap_buckets"] == [0, 1] and w[2]["event_types"] == [0, 5]
    wide = training_windows(TINY, max_len=10).to_pylist()
    assert wide[0]["items"] == [0] * 6 + [2, 3, 4, 5] and wide[0]["targets"] == [0] * 6 + [3, 4, 5, 6]


def test_eval_examples_take_events_before_the_first_target_of_the_split():
    valid = eval_examples(TINY, "valid", max_len=3).to_pylist()
    assert [(r["user_id"], r["items"], r["target"], r["history"]) for r in valid] == [
        ("a", [4, 5, 6], 7, [2, 3, 4, 5, 6]),
        ("d", [0, 11, 12], 13, [11, 12]),
    ]
    test = eval_examples(TINY, "test", max_len=3).to_pylist()
    assert [(r["items"], r["target"], r["history"]) for r in test] == [
        ([5, 6, 7], 8, [2, 3, 4, 5, 6, 7]), ([11, 12, 13], 14, [11, 12, 13])]
    with pytest.raises(ValueError, match="train"):
        eval_examples(TINY, "train", 3)


def test_collate_numpy_batches_and_trim_padding():
    table = eval_examples(TINY, "test", max_len=8)
    numpy_batch = {name: np.array(table.column(name).to_pylist(), dtype=object) for name in table.column_names}
    for scalar in ("target", "target_type"):  # Ray Data hands scalar columns over as plain arrays
        numpy_batch[scalar] = table.column(scalar).to_numpy()
    t = collate(numpy_batch)
    assert "user_id" not in t and t["items"].shape == (2, 8) and t["target"].tolist() == [8, 14]
    assert t["history"].tolist() == [[2, 3, 4, 5, 6, 7], [11, 12, 13, 0, 0, 0]]
    trimmed = trim_left_padding(t)
    assert trimmed["items"].tolist() == [[2, 3, 4, 5, 6, 7], [0, 0, 0, 11, 12, 13]]
    assert torch.equal(trimmed["history"], t["history"])  # right-padded lists are not trimmed


def test_train_batches_cover_every_window_once_trimmed(beauty_dir):
    from seqrec_ray.train.data import load_training_data

    data = load_training_data(beauty_dir, max_len=20)
    batches = list(data.train_batches(64, seed=3))
    assert sum(len(b["targets"]) for b in batches) == len(data.windows["targets"])
    assert sum(int((b["targets"] >= 2).sum()) for b in batches) == int((data.windows["targets"] >= 2).sum())
    assert all(bool((b["items"][:, 0] != 0).any()) for b in batches)  # no all-pad leading column
    again = [b["targets"] for b in data.train_batches(64, seed=3)]
    assert all(torch.equal(x["targets"], y) for x, y in zip(batches, again))  # seeded


def test_train_config_defaults_and_errors():
    cfg = TrainConfig(model="transformer")
    enc = cfg.encoder_config({"items": 100, "categories": 7})
    assert (enc.encoder, enc.num_items, enc.num_categories, enc.max_len) == ("transformer", 100, 7, 50)
    assert TrainConfig(model="gru", hidden=32).encoder_config({"items": 100}).hidden == 32
    assert TrainConfig(model="lstm").lr == 2e-3 and TrainConfig(model="lstm", lr=0.01).lr == 0.01
    for kw, word in [(dict(model="rnn"), "model"), (dict(loss="bpr"), "loss"), (dict(lr=0), "lr"),
                     (dict(negative_sampler="zipf"), "negative_sampler"), (dict(ks=(5, 20)), "ks"),
                     (dict(batch_size=0), "batch_size")]:
        with pytest.raises(ValueError, match=word):
            TrainConfig(**kw)


def test_early_stopping():
    stop = EarlyStopping(patience=2)
    assert [stop.update(s, e) for e, s in enumerate([0.1, 0.3, 0.2, 0.25], 1)] == [True, True, False, False]
    assert stop.should_stop and stop.best_epoch == 2
    never = EarlyStopping(patience=0)
    for e in range(1, 10):
        never.update(0.0, e)
    assert not never.should_stop


@pytest.fixture(scope="module")
def beauty_dir(tmp_path_factory):
    src = shared_dataset("amazon-beauty") / "Beauty.txt"
    return write_s3rec_artifacts(src, tmp_path_factory.mktemp("beauty"), max_users=600)


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_train_epoch_lowers_the_loss_on_real_data(beauty_dir, loss):
    from seqrec_ray.train.data import load_training_data

    torch.set_num_threads(1)
    data = load_training_data(beauty_dir, max_len=20)
    cfg = TrainConfig(model="gru", loss=loss, num_negatives=256, negative_sampler="popularity", dim=32, hidden=32,
                      dropout=0.0, emb_dropout=0.0, max_len=20)
    task = build_task(cfg, data.vocab_sizes, data.item_counts)
    opt = torch.optim.Adam(task.parameters(), lr=1e-2)
    losses = [train_epoch(task, data.train_batches(64, seed=e), opt, "cpu")["loss"] for e in range(4)]
    assert losses[-1] < losses[0] - 0.15, losses
    stats = train_epoch(task, data.train_batches(64, seed=9), opt, "cpu")
    assert stats["positions"] == int((data.windows["targets"] >= 2).sum()) and stats["positions_per_s"] > 0


def test_run_in_process_writes_loadable_checkpoints_and_curves(beauty_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(model="transformer", dim=32, hidden=64, max_len=20, epochs=3, batch_size=64, lr=3e-3, run_name="t")
    result = run_in_process(cfg, beauty_dir, tmp_path, progress=False)
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert [c["epoch"] for c in curves] == [1, 2, 3] and curves[-1]["loss"] < curves[0]["loss"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert result["valid"]["users"] == 600 and result["test"]["users"] == 600
    best_epoch = max(curves, key=lambda c: c["valid"]["ndcg@10"])["epoch"]
    assert result["best_epoch"] == best_epoch

    # The best checkpoint loads from its directory alone (weights_only) and scores.
    ckpt = load_checkpoint(tmp_path / "best")
    assert ckpt.meta["epoch"] == best_epoch and ckpt.meta["run_name"] == "t"
    assert ckpt.meta["metrics"]["valid"]["ndcg@10"] == pytest.approx(result["valid"]["ndcg@10"])
    assert ckpt.model_config.encoder == "transformer" and not ckpt.model.training
    assert ckpt.vocab.item_raw_ids == load_vocab(str(beauty_dir)).item_raw_ids  # the data's own vocabulary
    head = [i for line in (shared_dataset("amazon-beauty") / "Beauty.txt").read_text().splitlines()[:600] for i in line.split()[1:]]
    assert ckpt.vocab.item_raw_ids[2] == max(sorted(set(head)), key=head.count)  # index 2: the most frequent item
    assert load_optimizer_state(tmp_path / "latest")["state"]
    from seqrec_ray.train.data import load_training_data

    data = load_training_data(beauty_dir, max_len=20)
    again = evaluate(ckpt.model, data.eval_batches("test", 256)).to_dict()
    assert again == pytest.approx(result["test"])


def test_checkpoint_round_trip_and_errors(beauty_dir, tmp_path):
    cfg = TrainConfig(model="lstm", dim=16, hidden=24, max_len=10)
    task = build_task(cfg, {"items": 50, "categories": 2})
    save_checkpoint(tmp_path / "ck", task, cfg, beauty_dir, {"epoch": 4, "metrics": {"x": 1}})
    state = torch.load(tmp_path / "ck" / "model.pt", weights_only=True)
    assert all(not k.startswith("encoder.") for k in state)  # the bare encoder, not the task
    loaded = load_checkpoint(tmp_path / "ck")
    feats = {"items": torch.tensor([[0, 3, 4, 5]]), "gap_buckets": torch.tensor([[0, 1, 3, 3]])}
    task.eval()
    assert torch.allclose(loaded.model.score(feats), task.encoder.score(feats))
    assert loaded.meta["epoch"] == 4 and loaded.meta["data_version"] == json.loads((beauty_dir / "manifest.json").read_text())["data_version"]
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="vocab"):
        save_checkpoint(tmp_path / "x", task, cfg, tmp_path, {})
