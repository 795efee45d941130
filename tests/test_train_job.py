"""jobs/train.py: user errors exit non-zero with a message naming the problem (no
traceback); a real in-process run (--no-ray). The job on Ray Train runs in
test_ray_train.py (its run-then-resume fixture goes through jobs/train.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from test_ray_train import TINY_ARGS, build_beauty_sample, load_job

JOB = REPO_ROOT / "jobs" / "train.py"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_beauty_sample(tmp_path_factory.mktemp("job") / "artifacts", users=300)


def test_missing_data_dir_exits_2_with_a_message_and_no_traceback(tmp_path):
    missing = tmp_path / "nope"
    proc = subprocess.run(
        [sys.executable, str(JOB), "--data", str(missing), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert proc.returncode == 2
    assert f"--data {missing}: no such directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "bert"], "model must be one of"),
        (["--epochs", "0"], "epochs must be a positive int, got 0"),
        (["--num-workers", "0"], "num_workers must be a positive int, got 0"),
        (["--lr", "-1"], "lr must be > 0, got -1.0"),
        (["--loss", "hinge"], "loss must be one of"),
        (["--cpus-per-worker", "0"], "cpus_per_worker must be > 0"),
        (["--seeds", "0,x"], "--seeds must be comma-separated integers, got '0,x'"),
        (["--seeds", "1,1"], "--seeds repeats a seed"),
        (["--seeds", "0,1", "--seed", "2"], "give --seed or --seeds, not both"),
    ],
)
def test_bad_values_exit_2_naming_the_value(sample, tmp_path, capsys, extra, message):
    code = load_job().main(["--data", str(sample), "--output", str(tmp_path / "out"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_directory_that_is_not_artifacts_is_rejected(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    code = load_job().main(["--data", str(tmp_path / "raw"), "--output", str(tmp_path / "out")])
    assert code == 2
    assert "not a featurize artifacts directory (no manifest.json)" in capsys.readouterr().err


def test_job_no_ray_trains_in_process(sample, tmp_path, capsys):
    from seqrec_ray.train.checkpoint import load_checkpoint

    out = tmp_path / "out"
    assert load_job().main(["--data", str(sample), "--output", str(out), "--no-ray", "--epochs", "2", *TINY_ARGS]) == 0
    printed = capsys.readouterr().out
    assert "epoch   2" in printed
    assert load_checkpoint(out / "best").meta["epoch"] in (1, 2)
    assert len(json.loads((out / "curves.json").read_text())) == 2


def test_seeds_train_one_run_per_seed_and_report_mean_and_sd(sample, tmp_path, capsys):
    out = tmp_path / "seeds"
    seedless = [a for i, a in enumerate(TINY_ARGS) if "--seed" not in TINY_ARGS[max(i - 1, 0):i + 1]]
    args = ["--data", str(sample), "--no-ray", "--epochs", "2", *seedless]
    assert load_job().main([*args, "--output", str(out), "--seeds", "0,1"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["seeds"] == [0, 1]
    runs = [json.loads((out / f"seed-{s}" / "result.json").read_text()) for s in (0, 1)]
    assert runs[0]["test"] != runs[1]["test"], "two seeds trained the same model"
    for split in ("valid", "test"):
        values = [run[split]["ndcg@10"] for run in runs]
        row = result[split]["ndcg@10"]
        assert row["values"] == values
        assert row["mean"] == pytest.approx(sum(values) / 2)
        assert row["sd"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert f"{result['test']['ndcg@10']['mean']:.4f} ± {result['test']['ndcg@10']['sd']:.4f}" in printed
    assert (out / "seeds.png").stat().st_size > 0
    # The same seed alone reproduces its row of the seeds run.
    assert load_job().main([*args, "--output", str(tmp_path / "one"), "--seed", "1"]) == 0
    alone = json.loads((tmp_path / "one" / "result.json").read_text())
    assert alone["test"] == runs[1]["test"]
