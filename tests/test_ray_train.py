"""Data-parallel training on a real local Ray (2 workers) with a small real sample.

The sample is the first users of Amazon Beauty (S3-Rec file), written as a contract-§2
artifacts directory by ``build_beauty_sample`` (leave-one-out splits, S3-Rec timestamps
= positions). It is small enough for a 2-worker run of a few epochs in seconds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import REPO_ROOT, s3rec_head_artifacts, shared_dataset

pytestmark = pytest.mark.slow  # real Ray/Serve end to end: minutes on 2 cores (CI runs it)

USERS = 400


def build_beauty_sample(out: Path, users: int = USERS) -> Path:
    """The first ``users`` lines of Beauty.txt, featurized (the real passes, in-process)."""
    return s3rec_head_artifacts(shared_dataset("amazon-beauty") / "Beauty.txt", out, users)


# A tiny LSTM: a few seconds per epoch on 2 workers; lr high enough to learn in 3 epochs.
TINY_ARGS = ["--model", "lstm", "--dim", "16", "--hidden", "32", "--dropout", "0", "--emb-dropout", "0",
             "--batch-size", "16", "--eval-batch-size", "128", "--lr", "0.01", "--max-len", "20",
             "--patience", "0", "--seed", "7"]


def load_job():
    """jobs/train.py as a module (jobs/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("train_job", REPO_ROOT / "jobs" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def beauty_sample(tmp_path_factory) -> Path:
    return build_beauty_sample(tmp_path_factory.mktemp("beauty") / "artifacts")


def _valid_users(data_dir: Path) -> int:
    splits = pq.read_table(data_dir / "sequences").column("splits").to_pylist()
    return sum(1 in s for s in splits)


@pytest.fixture(scope="module")
def resumed_run(ray_local, beauty_sample, tmp_path_factory) -> dict:
    """jobs/train.py on 2 Ray Train workers stopped after epoch 1, then the same command
    with --epochs 3 (same --run-name and --storage): two fits cover the job, learning and
    resuming, which keeps the suite fast."""
    from seqrec_ray.train.checkpoint import load_checkpoint, load_optimizer_state
    from seqrec_ray.train.run_state import state_digest

    root, job = tmp_path_factory.mktemp("resume"), load_job()

    def run(epochs: int, out: str) -> dict:
        argv = ["--data", str(beauty_sample), "--output", str(root / out), "--num-workers", "2",
                "--epochs", str(epochs), "--run-name", "resume", "--storage", str(root / "runs"), *TINY_ARGS]
        assert job.main(argv) == 0
        return json.loads((root / out / "result.json").read_text())

    first = run(1, "first")
    epoch1 = root / "first" / "latest"
    saved = {
        "digest": state_digest(load_checkpoint(epoch1).model),
        "step": max(int(s["step"]) for s in load_optimizer_state(epoch1)["state"].values()),
    }
    second = run(3, "second")
    return {"root": root, "first": first, "second": second, "saved": saved}


def test_two_worker_run_learns_and_exports_a_loadable_checkpoint(resumed_run, beauty_sample):
    from seqrec_ray.train.checkpoint import load_checkpoint

    out, summary = resumed_run["root"] / "second", resumed_run["second"]
    history = json.loads((out / "curves.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    losses = [h["loss"] for h in history]
    assert losses[2] < losses[1] < losses[0] and losses[0] - losses[2] > 0.05, losses
    # Every valid user scored exactly once across the two ranks' shards.
    assert all(h["valid"]["users"] == _valid_users(beauty_sample) for h in history)
    assert (out / "curves.png").stat().st_size > 0

    best = load_checkpoint(out / "best")
    assert best.meta["epoch"] == summary["best_epoch"]
    assert best.meta["run_name"] == "resume" and best.meta["num_workers"] == 2
    features = {k: torch.zeros(2, 20, dtype=torch.int64) for k in ("items", "event_types", "categories", "gap_buckets")}
    features["items"][:, -3:] = torch.tensor([[2, 3, 4], [5, 6, 7]])
    features["event_types"][:, -3:] = 5
    features["categories"][:, -3:] = 1
    features["gap_buckets"][:, -3:] = torch.tensor([1, 3, 3])
    with torch.no_grad():
        scores = best.model.encode(features) @ best.model.item_embeddings().T  # (2, V)
    assert scores.shape == (2, len(best.vocab.item_raw_ids)) and torch.isfinite(scores).all()
    assert not torch.equal(scores[0], scores[1])  # different histories, different rankings
    assert summary["test"]["users"] == _valid_users(beauty_sample)  # leave-one-out: same users
    assert 0.0 <= summary["test"]["ndcg@10"] <= summary["test"]["hr@10"] <= 1.0


def test_rerun_with_same_name_resumes_at_the_next_epoch_with_the_saved_state(resumed_run):
    import ray.train

    from seqrec_ray.train.checkpoint import load_checkpoint
    from seqrec_ray.train.run_state import state_digest

    root, saved = resumed_run["root"], resumed_run["saved"]
    assert resumed_run["first"]["epochs_run"] == 1 and resumed_run["second"]["epochs_run"] == 3
    first_curve = json.loads((root / "first" / "curves.json").read_text())
    assert json.loads((root / "second" / "curves.json").read_text())[0] == first_curve[0]
    # What the resumed workers reported restoring is exactly the epoch-1 checkpoint.
    result = ray.train.Result.from_path(root / "runs" / "resume")
    reported = {m["epoch"]: m for _, m in result.best_checkpoints}
    assert reported[3]["resumed_from_epoch"] == 1
    assert reported[3]["restored_digest"] == saved["digest"]
    assert reported[3]["restored_optimizer_step"] == saved["step"]
    assert state_digest(load_checkpoint(root / "second" / "latest").model) != saved["digest"]


def test_streamed_shards_train_and_count_every_valid_user_once(ray_local, tmp_path):
    """shard_cache_mib=0: every epoch streams the shards (iter_torch_batches with a local
    shuffle buffer) instead of reusing the in-memory copy; the result is equally valid.
    The data has Beauty's attribute catalogue: the workers train item content too."""
    from seqrec_ray.train.checkpoint import load_checkpoint
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.ray_trainer import RayTrainConfig, fit

    beauty = shared_dataset("amazon-beauty")
    beauty_sample = s3rec_head_artifacts(beauty / "Beauty.txt", tmp_path / "items-art", USERS,
                                         items=beauty / "Beauty_item2attributes.json")

    config = TrainConfig(model="lstm", dim=16, hidden=32, dropout=0.0, emb_dropout=0.0, batch_size=16,
                         eval_batch_size=128, lr=0.01, max_len=20, epochs=2, patience=0, seed=7)
    ray_config = RayTrainConfig(num_workers=2, run_name="streamed", storage_path=str(tmp_path / "runs"),
                                shard_cache_mib=0)
    summary = fit(config, ray_config, beauty_sample, tmp_path / "out", progress=False)
    history = json.loads((tmp_path / "out" / "curves.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["loss"] < history[0]["loss"]
    assert all(h["valid"]["users"] == _valid_users(beauty_sample) for h in history)
    assert summary["test"]["users"] == _valid_users(beauty_sample)
    model = load_checkpoint(tmp_path / "out" / "best").model
    assert model.config.content_fields and model.config.id_dropout == 0.1
    # Every listed item has its attribute tokens; those never sold in the sample have no ID row.
    content = model.embed.content
    assert bool((content.item_tokens[2:] != 0).any(1).all()) and not bool(content.has_id[2:].all())
