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


@pytest.mark.parametrize("fmt, content, message", [
    ("taobao", "1,2,3,teleport,1511740800\n1,2,3,pv,15\n",
     "no valid rows in {data}: 2 rows read, 2 rejected (timestamp_out_of_range: 1, "
     "unknown_event_type: 1), 0 of forgotten users; the rejected rows and their reasons are in "
     "{out}/rejects/"),
    ("taobao", "", "no valid rows: {data} holds no rows (empty files or a header only)"),
    ("events", "user_id,item_id,event_type,timestamp\n", "no valid rows: {data} holds no rows"),
])
def test_input_without_valid_rows_exits_2_and_says_so(ray_local, tmp_path, capsys, fmt, content, message):
    # The job's main() on the session's Ray: a subprocess per case would start Ray each
    # time. (Ray Data's logger may report a write to an earlier test's closed capture
    # stream here, so the no-traceback check is the real-process test's, below.)
    data, out = tmp_path / "logs.csv", tmp_path / "out"
    data.write_text(content)
    code = load_job_module().main(["--input", str(data), "--format", fmt, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    error = err.strip().splitlines()[-1]
    assert error.startswith("error: ") and message.format(data=data, out=out) in error
    assert "Could not skip" not in err
    assert not (out / "manifest.json").exists()


def test_binary_input_exits_2_naming_the_file_without_a_traceback(tmp_path):
    data, out = tmp_path / "logs.csv", tmp_path / "out"
    data.write_bytes(b"\x00\x01\x02PAR1" * 500)
    result = run_job("--input", str(data), "--format", "taobao", "--output", str(out), "--num-cpus", "2")
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and (f"{data}: binary data (NUL bytes), not taobao input; the taobao "
                                            "format reads headerless comma-separated text") in error
    assert "Traceback" not in result.stderr and "Could not skip" not in result.stderr
    assert not (out / "manifest.json").exists()


def test_forget_flag_leaves_the_users_out(ray_local, tmp_path, capsys):
    data, ids = tmp_path / "logs.csv", tmp_path / "forget.txt"
    data.write_text("1,10,3,pv,1511740800\n1,11,3,pv,1511740900\n2,10,3,pv,1511740800\n"
                    "2,12,3,pv,1511741000\n2,12,3,pv,x\n")
    ids.write_text("2\n")
    job = load_job_module()
    code = job.main(["--input", str(data), "--format", "taobao", "--output", str(tmp_path / "out"), "--forget", str(ids)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert (summary["rows_read"], summary["rows_kept"], summary["rows_forgotten"]) == (5, 2, 3)
    assert summary["users"] == 1 and summary["users_forgotten"] == 1
    assert summary["forget_list_version"] is not None and summary["rows_rejected"] == 0
    code = job.main(["--input", str(data), "--format", "taobao", "--output", str(tmp_path / "o2"),
                     "--forget", str(tmp_path / "nope.txt")])
    assert code == 2 and "deletion list" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
