"""jobs/evaluate.py end to end on checkpoints trained on real data (Beauty, LastFM)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, shared_dataset
from test_train_loop import write_s3rec_artifacts

from seqrec_ray.train.loop import TrainConfig, run_in_process

JOB = [sys.executable, str(REPO_ROOT / "jobs" / "evaluate.py")]


def run_job(*args: str) -> subprocess.CompletedProcess:
    """The job as a user runs it: a separate process."""
    return subprocess.run([*JOB, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The same job's main() in this process (saves a torch import per call)."""
    spec = importlib.util.spec_from_file_location("evaluate_job", REPO_ROOT / "jobs" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def train_tiny(data_dir, out_dir, epochs: int = 2) -> dict:
    torch.set_num_threads(1)
    cfg = TrainConfig(model="lstm", dim=32, hidden=48, max_len=20, epochs=epochs, batch_size=64, lr=5e-3)
    return run_in_process(cfg, data_dir, out_dir, progress=False)


@pytest.fixture(scope="module")
def beauty_run(tmp_path_factory):
    data = write_s3rec_artifacts(shared_dataset("amazon-beauty") / "Beauty.txt", tmp_path_factory.mktemp("beauty"), 600)
    out = tmp_path_factory.mktemp("run")
    return data, out, train_tiny(data, out)


def test_evaluate_job_matches_training_and_includes_baselines(beauty_run, tmp_path):
    data, out, result = beauty_run
    proc = run_job("--data", data, "--checkpoint", out / "best", "--output", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["full"]["model"] == pytest.approx(result["test"])  # same numbers as the loop's test pass
    assert set(metrics["full"]) == {"model", "popularity", "most_recent"} and "sampled" not in metrics
    assert metrics["full"]["popularity"]["users"] == 600 and metrics["mask_history"] is True
    # Masked history: most-recent can only fall back to popularity.
    assert metrics["full"]["most_recent"]["hr@10"] == pytest.approx(metrics["full"]["popularity"]["hr@10"])
    for name in ("model", "popularity", "most_recent"):
        assert name in proc.stdout
    assert "ndcg@10" in proc.stdout and "full ranking" in proc.stdout


def test_no_mask_history_and_valid_split(beauty_run, tmp_path, capsys):
    data, out, result = beauty_run
    code, _, err = run_main(capsys, "--data", data, "--checkpoint", out / "best", "--split", "valid",
                            "--no-mask-history", "--ks", "1,10", "--output", tmp_path / "v.json")
    assert code == 0, err
    m = json.loads((tmp_path / "v.json").read_text())
    assert m["split"] == "valid" and m["mask_history"] is False and "hr@1" in m["full"]["model"]
    # Without masking the user's own items compete with the target: never better than masked.
    assert m["full"]["model"]["hr@10"] <= result["valid"]["hr@10"] + 1e-9


@pytest.mark.parametrize(
    "args, message",
    [
        (["--split", "train"], "split"),
        (["--ks", "ten"], "--ks"),
        (["--sampled-negatives", "/nonexistent/neg.txt"], "negatives"),
    ],
)
def test_user_errors_exit_nonzero_with_a_message(beauty_run, args, message, capsys):
    data, out, _ = beauty_run
    code, _, err = run_main(capsys, "--data", data, "--checkpoint", out / "best", *args)
    assert code == 2 and message in err


def test_bad_checkpoint_and_vocab_mismatch_are_refused(beauty_run, tmp_path, capsys):
    data, out, _ = beauty_run
    other = write_s3rec_artifacts(shared_dataset("amazon-beauty") / "Beauty.txt", tmp_path / "other", 50)
    proc = run_job("--data", other, "--checkpoint", out / "best")
    assert proc.returncode == 2 and "vocabulary" in proc.stderr and "Traceback" not in proc.stderr
    code, _, err = run_main(capsys, "--data", data, "--checkpoint", tmp_path)
    assert code == 2 and "model.json" in err


def test_lastfm_fixed_99_negatives_are_reported_as_sampled(tmp_path, capsys):
    lastfm = shared_dataset("lastfm")
    data = write_s3rec_artifacts(lastfm / "LastFM.txt", tmp_path / "lastfm", max_users=10**6)
    train_tiny(data, tmp_path / "run", epochs=1)
    code, stdout, err = run_main(capsys, "--data", data, "--checkpoint", tmp_path / "run" / "best",
                                 "--sampled-negatives", lastfm / "LastFM_sample.txt", "--ks", "1,5,10",
                                 "--output", tmp_path / "s.json")
    assert code == 0, err
    m = json.loads((tmp_path / "s.json").read_text())
    users = sum(1 for line in (lastfm / "LastFM.txt").read_text().splitlines() if len(line.split()) >= 4)
    assert m["sampled"]["model"]["users"] == users and m["sampled"]["model"]["candidates"] == "sampled"
    assert m["sampled_negatives"]["per_user"] == 99 and m["sampled_negatives"]["oov"] == 0
    # 100 candidates: even popularity lands far above its full-ranking numbers.
    assert m["sampled"]["popularity"]["hr@10"] > 3 * m["full"]["popularity"]["hr@10"]
    assert "SAMPLED" in stdout
