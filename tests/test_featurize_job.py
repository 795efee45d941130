"""jobs/featurize.py: clear non-zero exits for bad input, and a real run through main()."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shared_dataset

JOB = REPO_ROOT / "jobs" / "featurize.py"


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)


@pytest.mark.parametrize("args, message", [
    (["--input", "/nonexistent/logs", "--format", "taobao"],
     "input path '/nonexistent/logs' does not exist"),
    (["--input", "{data}", "--format", "parquetish"], "unknown format 'parquetish'"),
    (["--input", "{data}", "--format", "taobao", "--split", "temporal"],
     "the temporal split needs a finite cutoff"),
    (["--input", "{data}", "--format", "taobao", "--split", "temporal", "--cutoff", "soon"],
     "not a time: 'soon'"),
    (["--input", "{data}", "--format", "taobao", "--min-item-count", "0"],
     "min_item_count must be an integer >= 1, got 0"),
    (["--input", "{data}", "--format", "taobao", "--max-seq-len", "0"],
     "max_seq_len must be an integer >= 1, got 0"),
])
def test_bad_input_exits_non_zero_with_a_message(tmp_path, args, message):
    data = tmp_path / "logs.csv"
    data.write_text("1,2,3,pv,1511740800\n")
    args = [a.replace("{data}", str(data)) for a in args]
    result = run_job(*args, "--output", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # failed before doing anything


def load_job_module():
    spec = importlib.util.spec_from_file_location("featurize_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_runs_on_diginetica_and_reports(ray_local, tmp_path, capsys):
    data = shared_dataset("diginetica-purchases")
    job = load_job_module()
    code = job.main(["--input", str(data), "--format", "diginetica", "--output",
                     str(tmp_path / "out"), "--split", "temporal", "--cutoff", "2016-05-20",
                     "--valid-cutoff", "2016-05-10", "--min-item-count", "2",
                     "--num-buckets", "3"])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out)
    assert summary["rows_read"] == (summary["rows_kept"] + summary["rows_rejected"]
                                    + summary["rows_duplicate"])
    assert summary["split"] == {"protocol": "temporal", "cutoff": 1463702400.0,
                                "valid_cutoff": 1462838400.0}
    assert "[featurize] read_validate" in out.err  # progress goes to stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["vocab"]["min_item_count"] == 2
    assert manifest["items"] < manifest["rows_kept"]


def test_main_rejects_a_file_of_another_format(ray_local, tmp_path, capsys):
    data = shared_dataset("yoochoose-clicks-100k") / "yoochoose-clicks-100k_test.txt"
    job = load_job_module()
    code = job.main(["--input", str(data), "--format", "diginetica", "--output",
                     str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a diginetica file" in err and "yoochoose-clicks-100k_test.txt" in err
