"""Batch recommendation (pure parts, the Ray Data actor pool, the job's CLI) and real job
submission to a Ray head started for the test (tests/cluster_scripts/job_submission.py).

The batch tests use the synthetic DemoShop (seqrec_ray.sim.demo_shop, featurized for real): a catalogue where the
next item is learnable, trained in-process for a few seconds, so no Ray is needed to make
the checkpoint. The job-submission test featurizes a real Taobao sample on its own head.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cluster_scripts._procs import run_script
from conftest import REPO_ROOT, shared_dataset, shop_artifacts

TAOBAO_SAMPLE = "UserBehavior_head_fattydelivery.csv"  # 4,321 events of 43 users


def _lists(values, type_):
    return pa.array(values, type=pa.list_(type_))


def _sequences(rows: list[list[int]]) -> pa.Table:
    """Sequence rows (contract §2 columns the batch path reads) with item i's features derived from i."""
    return pa.table({
        "user_id": [f"u{i}" for i in range(len(rows))],
        "items": _lists(rows, pa.int64()),
        "event_types": _lists([[1 + i % 6 for i in r] for r in rows], pa.int8()),
        "categories": _lists([[2 + i % 3 for i in r] for r in rows], pa.int64()),
        "gap_buckets": _lists([[1] + [3] * (len(r) - 1) if r else [] for r in rows], pa.int8()),
    })


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Artifacts of 240 users split over 3 Parquet parts, and a checkpoint trained on them."""
    from seqrec_ray.sim.demo_shop import DemoShop
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    root = tmp_path_factory.mktemp("batch")
    artifacts, _ = shop_artifacts(root, DemoShop(users=240, categories=4, items_per_category=12, events_per_user=12),
                                  store=False)
    table = pq.read_table(artifacts / "sequences")
    for part in (artifacts / "sequences").glob("*.parquet"):
        part.unlink()
    for i, start in enumerate(range(0, table.num_rows, 80)):  # several files, as featurize writes
        pq.write_table(table.slice(start, 80), artifacts / "sequences" / f"part-{i:05d}.parquet")
    config = TrainConfig(model="gru", dim=16, hidden=32, epochs=4, batch_size=16, lr=0.01, max_len=8, patience=0,
                         eval_batch_size=64, seed=3, torch_threads=1)
    checkpoint = run_in_process(config, artifacts, root / "run", progress=False)["best_checkpoint"]
    return {"root": root, "artifacts": artifacts, "checkpoint": Path(checkpoint), "users": table.num_rows}


def _config(shop, out: Path, **kw):
    from seqrec_ray.train.batch_inference import BatchRecommendConfig

    knobs = dict(data=str(shop["artifacts"]), checkpoint=str(shop["checkpoint"]), output=str(out), k=5, batch_size=32,
                 num_actors=2, cpus_per_actor=0.5)
    knobs.update(kw)
    return BatchRecommendConfig(**knobs)


# ------------------------------------------------------------------------- pure parts


def test_latest_features_keeps_the_last_events_left_padded():
    from seqrec_ray.train.batch_inference import latest_features

    table = _sequences([[5, 6, 7], [9], [2, 3, 4, 5, 6, 7]])
    features = latest_features(table.slice(0, 3), max_len=4)
    assert features["items"].tolist() == [[0, 5, 6, 7], [0, 0, 0, 9], [4, 5, 6, 7]]
    assert features["categories"].tolist() == [[0, 2 + 5 % 3, 2 + 6 % 3, 2 + 7 % 3], [0, 0, 0, 2], [3, 4, 2, 3]]
    assert features["gap_buckets"][2].tolist() == [3, 3, 3, 3]  # the first event (bucket 1) was cut off
    # A slice of a larger table (non-zero list offsets) and a batch narrower than max_len.
    narrow = latest_features(table.slice(1, 1), max_len=4)
    assert narrow["items"].tolist() == [[9]] and narrow["event_types"].tolist() == [[1 + 9 % 6]]
    with pytest.raises(ValueError, match="max_len"):
        latest_features(table, max_len=0)


def test_top_k_ranks_real_items_only_and_masks_seen_ones(shop):
    from seqrec_ray.train.batch_inference import latest_features, seen_items, top_k_items
    from seqrec_ray.train.checkpoint import load_checkpoint

    loaded = load_checkpoint(shop["checkpoint"])
    table = _sequences([[2, 3, 4], [7, 8, 9, 10, 11]])
    features = {k: torch.from_numpy(v) for k, v in latest_features(table, 8).items()}
    users = loaded.model.encode(features).detach()  # (2, D)
    embeddings = loaded.model.item_embeddings().detach().clone()  # (V, D)
    embeddings[0], embeddings[1] = 100 * users[0], 100 * users[1]  # make pad and oov the best scores
    values, indices = top_k_items(loaded.model, features, embeddings, k=6)
    assert indices.shape == (2, 6) and (indices >= 2).all()
    expected = torch.topk((users @ embeddings.T)[:, 2:], 6, dim=1)
    assert torch.equal(indices, expected.indices + 2) and torch.allclose(values, expected.values)
    seen = torch.from_numpy(seen_items(table))  # (2, 5), the first row 0-padded
    assert seen.tolist() == [[2, 3, 4, 0, 0], [7, 8, 9, 10, 11]]
    _, unseen = top_k_items(loaded.model, features, embeddings, k=6, exclude=seen)
    assert not set(unseen[0].tolist()) & {2, 3, 4} and not set(unseen[1].tolist()) & {7, 8, 9, 10, 11}
    # k above the catalogue: k' = the real items; every finite entry is an allowed item, once.
    values, indices = top_k_items(loaded.model, features, embeddings, k=10_000, exclude=seen)
    real = len(loaded.vocab.item_raw_ids) - 2
    assert indices.shape[1] == real
    finite = indices[1][torch.isfinite(values[1])].tolist()
    assert len(finite) == len(set(finite)) == real - 5 and min(finite) >= 2 and not set(finite) & {7, 8, 9, 10, 11}


def test_recommender_writes_raw_ids_and_drops_masked_entries(shop):
    from seqrec_ray.train.batch_inference import OUTPUT_SCHEMA, Recommender

    recommender = Recommender(str(shop["checkpoint"]), k=10_000, exclude_seen=True, torch_threads=1)
    table = pq.read_table(shop["artifacts"] / "sequences").slice(0, 20)
    out = recommender(table)
    assert out.schema == OUTPUT_SCHEMA and out.column("user_id").to_pylist() == table.column("user_id").to_pylist()
    vocab = recommender.item_raw_ids
    for row, seq in zip(out.to_pylist(), table.column("items").to_pylist()):
        assert "<pad>" not in row["items"] and "<oov>" not in row["items"]
        # Every seen item is dropped, not just those in the encoder's window (max_len 8 < 12 events).
        assert len(seq) > 8 and len(row["items"]) == len(set(row["items"])) == len(vocab) - 2 - len(set(seq))
        assert not {vocab[i] for i in seq} & set(row["items"])
        assert row["scores"] == sorted(row["scores"], reverse=True) and np.isfinite(row["scores"]).all()


def test_config_names_bad_values_and_missing_inputs(shop, tmp_path):
    for bad, match in ((dict(k=0), "k must"), (dict(num_actors=0), "num_actors"), (dict(cpus_per_actor=0), "cpus_per_actor"),
                       (dict(batch_size=True), "batch_size")):
        with pytest.raises(ValueError, match=match):
            _config(shop, tmp_path / "out", **bad)
    with pytest.raises(FileNotFoundError, match="model.json"):
        _config(shop, tmp_path / "out", checkpoint=str(tmp_path)).check_paths()
    with pytest.raises(FileNotFoundError, match="sequences/"):
        _config(shop, tmp_path / "out", data=str(tmp_path)).check_paths()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match="non-empty"):
        _config(shop, tmp_path / "foreign").check_paths()


# ---------------------------------------------------------------------- Ray Data path


def test_actor_pool_output_equals_the_in_process_loop(ray_local, shop, tmp_path):
    from seqrec_ray.train.batch_inference import SUMMARY_FILE, recommend_in_process, run_batch_recommend

    config = _config(shop, tmp_path / "recs")
    (tmp_path / "recs").mkdir()  # an earlier run's output: its parts are replaced, not added to
    (tmp_path / "recs" / SUMMARY_FILE).write_text("{}")
    pq.write_table(recommend_in_process(_config(shop, tmp_path / "recs", k=1)), tmp_path / "recs" / "stale.parquet")
    summary = run_batch_recommend(config, log=lambda line: None)
    ray_out = pq.read_table(tmp_path / "recs")
    assert not (tmp_path / "recs" / "stale.parquet").exists()
    assert summary["users"] == ray_out.num_rows == shop["users"]
    assert json.loads((tmp_path / "recs" / SUMMARY_FILE).read_text())["users"] == shop["users"]
    local = {r["user_id"]: r for r in recommend_in_process(config).to_pylist()}
    remote = {r["user_id"]: r for r in ray_out.to_pylist()}
    assert remote.keys() == local.keys()
    for user, row in remote.items():
        assert row["items"] == local[user]["items"] and len(row["items"]) == config.k
        assert np.allclose(row["scores"], local[user]["scores"], rtol=1e-5, atol=1e-6)
    # The model learned the shop: the item after the user's last one is usually recommended.
    sequences = pq.read_table(shop["artifacts"] / "sequences").to_pylist()
    vocab = pq.read_table(shop["checkpoint"] / "vocab" / "items.parquet").column("raw_id").to_pylist()
    hits = 0
    for seq in sequences:
        _, category, position = vocab[seq["items"][-1]].split("-")
        hits += f"item-{category}-{(int(position) + 1) % 12}" in remote[seq["user_id"]]["items"]
    assert hits / len(sequences) > 0.3, hits


def test_batch_recommend_cli_rejects_bad_input_without_a_traceback(shop, tmp_path):
    script = str(REPO_ROOT / "jobs" / "batch_recommend.py")
    other = tmp_path / "other"
    shutil.copytree(shop["artifacts"], other)
    vocab = pq.read_table(other / "vocab" / "items.parquet")
    pq.write_table(vocab.set_column(1, "raw_id", pa.array([*vocab["raw_id"].to_pylist()[:-1], "renamed"])),
                   other / "vocab" / "items.parquet")
    cases = {
        "no checkpoint": (["--data", str(shop["artifacts"]), "--checkpoint", str(tmp_path / "nope")], "model.json"),
        "other vocab": (["--data", str(other), "--checkpoint", str(shop["checkpoint"])], "different item vocabularies"),
        "bad k": (["--data", str(shop["artifacts"]), "--checkpoint", str(shop["checkpoint"]), "--k", "0"], "k must"),
    }
    for name, (args, message) in cases.items():
        proc = subprocess.run([sys.executable, script, *args, "--output", str(tmp_path / "out")], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2, (name, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (name, proc.stderr)


# ------------------------------------------------------------------- job submission


@pytest.mark.slow
def test_submitted_featurize_and_train_jobs_then_serve_deploy_answers(tmp_path):
    sample = shared_dataset("taobao-userbehavior") / TAOBAO_SAMPLE
    result = run_script("job_submission.py", ["--input", str(sample), "--format", "taobao"], tmp_path / "run",
                        timeout_s=900)
    assert "error" not in result, result["error"]
    # Token auth is on: the job server refuses a missing or wrong token.
    assert (result["no_token_status"], result["wrong_token_status"], result["token_status"]) == (401, 403, 200)
    for name in ("featurize", "train"):
        job = result["jobs"][name]
        assert job["status"] == "SUCCEEDED" and job["cli_rc"] == 0, (name, job["tail"])
    uploads = result["uploaded_working_dirs"]
    assert uploads and all(u["bytes"] < 5_000_000 and not u["has_venv"] and not u["has_git"] for u in uploads)

    from seqrec_ray.data.artifacts import load_manifest
    from seqrec_ray.train.checkpoint import load_checkpoint

    manifest = load_manifest(result["paths"]["artifacts"])
    assert manifest["rows_read"] == 4321 and manifest["users"] == 43
    checkpoint = load_checkpoint(result["paths"]["checkpoint"])
    assert checkpoint.meta["epoch"] == 1 and checkpoint.meta["data_version"] == manifest["data_version"]

    assert result["serve"]["deploy_rc"] == 0
    answer = result["recommend"]
    assert answer["status"] == 200 and answer["history_in_store"] > 0, answer
    body = answer["body"]
    assert body["user_id"] == answer["user_id"] and not body["cold_start"] and len(body["items"]) == 5
    catalogue = set(checkpoint.vocab.item_raw_ids[2:])
    assert all(item["item_id"] in catalogue for item in body["items"])
    assert result["head_left_behind"] == [] and result["left_behind"] == [], "the test's Ray head outlived its teardown"
