"""Forgetting users in data: the deletion-list filter, featurize --forget, jobs/forget.py
on a real artifacts directory and store, and the version a checkpoint records. No Ray:
artifacts come from the real featurize passes in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT

from seqrec_ray import schema as S
from seqrec_ray.data import artifacts as A
from seqrec_ray.data.forget import (
    STAGING_DIR,
    ForgetConfig,
    drop_users,
    forget_in_artifacts,
    forget_list_version,
    read_user_ids,
    value_set,
)
from seqrec_ray.data.pipeline import featurize_in_process
from seqrec_ray.data.vocab import load_vocab
from seqrec_ray.store import open_store

JOB = REPO_ROOT / "jobs" / "forget.py"
T0 = 1_511_740_800.0  # 2017-11-27T00:00:00Z
GONE = "gone-user-7f3a9c"  # distinctive, so a byte search cannot match anything else
STAY = ("stay-1", "stay-2")


def _row(user, item, ts, kind="view", **extra) -> dict:
    base = {"session_id": None, "category_id": "c1", "price": None, "query": None}
    return {"user_id": user, "item_id": item, "event_type": kind, "timestamp": ts, **base, **extra}


def _log() -> pa.Table:
    rows = []
    for user, n in ((GONE, 6), (STAY[0], 5), (STAY[1], 4)):
        rows += [_row(user, f"i{i % 3}", T0 + 600.0 * i) for i in range(n)]
    rows += [
        _row(GONE, "only-gone-item", T0 + 9000.0, "search", query="words-of-7f3a9c"),
        _row(GONE, "i1", 15.0),  # 1970: rejected
        _row(GONE, "i0", T0),  # an exact duplicate of GONE's first event
        _row(STAY[0], "i1", 15.0),  # rejected
        _row(STAY[1], "i0", T0),  # a duplicate
    ]
    return pa.Table.from_pylist(rows, schema=S.EVENT_SCHEMA)


GONE_KEPT, GONE_REJECTED, GONE_DUPLICATE = 7, 1, 1


def _featurize(root: Path, **options) -> tuple[Path, dict]:
    out = root / "artifacts"
    manifest = featurize_in_process(_log(), str(out), num_buckets=2, **options)
    return out, manifest


def _traces(directory: Path, needle: str) -> list[str]:
    """Files under ``directory`` holding ``needle``: in their bytes, or (Parquet, whose
    pages may be compressed) in any decoded value."""
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        hit = needle.encode() in path.read_bytes()
        if not hit and path.suffix == ".parquet":
            hit = needle in json.dumps(pq.read_table(path).to_pylist(), default=str)
        if hit:
            found.append(str(path.relative_to(directory)))
    return found


def _by_user(table: pa.Table) -> dict[str, dict]:
    return {row["user_id"]: row for row in table.to_pylist()}


def _reconciles(m: dict) -> bool:
    return m["rows_read"] == (m["rows_kept"] + m["rows_rejected"] + m["rows_duplicate"]
                              + m["rows_forgotten"])


def _run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the deletion list


def test_forget_list_version_is_a_hash_of_the_id_set():
    assert forget_list_version([]) is None
    version = forget_list_version(["b", "a", "a"])
    assert version == forget_list_version({"a", "b"}) and len(version) == 12
    assert forget_list_version(["a"]) != version
    assert forget_list_version(["ab"]) != forget_list_version(["a", "b"])  # ids are delimited


def test_read_user_ids_strips_and_skips_blank_lines(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text(" u1\nu2\r\n\n  \nu1\nlé\n", encoding="utf-8")
    assert read_user_ids(str(path)) == {"u1", "u2", "lé"}
    with pytest.raises(FileNotFoundError, match="deletion list"):
        read_user_ids(str(tmp_path / "nope.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_user_ids(str(tmp_path / "bin.txt"))


def test_drop_users_removes_exactly_the_listed_ids():
    table = pa.table({"user_id": ["a", None, "b", "a", "c"], "x": [1, 2, 3, 4, 5]})
    kept, dropped = drop_users(table, value_set(["a", "zz"]))
    assert dropped == 2 and kept["x"].to_pylist() == [2, 3, 5]  # a null id never matches
    assert drop_users(table, None) == (table, 0)
    ints = pa.table({"user_id": [1, 2, 3]})
    kept, dropped = drop_users(ints, value_set(["2"]))  # ids as ints compare as strings
    assert dropped == 1 and kept["user_id"].to_pylist() == [1, 3]


# ---------------------------------------------------------------- featurize honours deletions


def test_featurize_with_a_forget_list_leaves_the_user_out_of_every_artifact(tmp_path):
    ids = tmp_path / "forget.txt"
    ids.write_text(f"{GONE}\nnever-seen\n")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    out, manifest = _featurize(tmp_path, forget=str(ids), store=url, keep_work=True)
    assert _traces(out, GONE) == [] and _traces(out, "7f3a9c") == []
    assert manifest["rows_forgotten"] == GONE_KEPT + GONE_REJECTED + GONE_DUPLICATE
    assert manifest["users_forgotten"] == 2
    assert manifest["forget_list_version"] == forget_list_version([GONE, "never-seen"])
    assert _reconciles(manifest) and manifest["rows_rejected"] == 1
    assert manifest["users"] == 2 and manifest["rows_duplicate"] == 1
    assert "only-gone-item" not in load_vocab(str(out)).item_raw_ids  # vocab counts too
    assert set(_by_user(A.load_sequences(str(out)))) == set(STAY)
    assert A.load_rejects(str(out))["user_id"].to_pylist() == [STAY[0]]
    with open_store(url) as store:
        assert store.get_profile(GONE) is None and store.get_history(GONE, 100) == []
        assert [e.user_id for e in store.get_history(STAY[0], 100)] == [STAY[0]] * 5
    plain_version = _featurize(tmp_path / "plain")[1]["data_version"]
    assert manifest["data_version"] != plain_version


def test_featurize_leaves_out_the_users_the_store_has_forgotten(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        store.forget_user(GONE)
    out, manifest = _featurize(tmp_path, store=url)
    assert _traces(out, GONE) == []
    assert manifest["rows_forgotten"] == GONE_KEPT + GONE_REJECTED + GONE_DUPLICATE
    assert manifest["forget_list_version"] == forget_list_version([GONE])
    assert manifest["store"]["profiles"] == 2
    with open_store(url) as store:
        assert store.get_profile(GONE) is None and store.get_history(GONE, 100) == []
        assert store.stats().users_with_history == 2
    plain = _featurize(tmp_path / "plain")[1]
    assert plain["rows_forgotten"] == 0 and plain["forget_list_version"] is None
    assert plain["users_forgotten"] == 0 and _reconciles(plain)


# ---------------------------------------------------------------- jobs/forget.py


def test_forget_job_removes_every_trace_keeps_the_rest_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    out, before = _featurize(tmp_path, store=url, keep_work=True)
    assert _traces(out, GONE)  # the user is there to begin with
    sequences, profiles = _by_user(A.load_sequences(str(out))), _by_user(A.load_profiles(str(out)))
    rejects = A.load_rejects(str(out)).to_pylist()
    vocab = _snapshot(out / "vocab")
    with open_store(url) as store:
        stay_history = store.get_history(STAY[0], 100)

    result = _run_job("--artifacts", str(out), "--user", GONE, "--store", url)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["users_removed"] == 1 and summary["store"]["events_removed"] == GONE_KEPT
    assert summary["rows_removed"]["profiles"] == 1 and summary["rows_removed"]["rejects"] == 1
    assert GONE not in result.stdout + result.stderr  # ids are not echoed into logs

    assert _traces(out, GONE) == [] and _traces(out, "7f3a9c") == []
    assert not (out / STAGING_DIR).exists()
    assert _by_user(A.load_sequences(str(out))) == {u: r for u, r in sequences.items() if u != GONE}
    assert _by_user(A.load_profiles(str(out))) == {u: r for u, r in profiles.items() if u != GONE}
    assert A.load_rejects(str(out)).to_pylist() == [r for r in rejects if r["user_id"] != GONE]
    assert _snapshot(out / "vocab") == vocab  # indices keep meaning the same items
    after = A.load_manifest(str(out))
    assert after["rows_forgotten"] == GONE_KEPT + GONE_REJECTED and _reconciles(after)
    assert after["rows_kept"] == before["rows_kept"] - GONE_KEPT
    assert after["rejected_by_reason"] == {"timestamp_out_of_range": 1}
    assert after["users"] == before["users"] - 1
    assert before["time_range"] == [T0, T0 + 9000.0] and after["time_range"] == [T0, T0 + 2400.0]
    assert (after["forget_list_version"], after["users_forgotten"]) == (forget_list_version([GONE]), 1)
    assert after["data_version"] != before["data_version"]
    with open_store(url) as store:
        assert store.get_profile(GONE) is None and store.get_history(GONE, 100) == []
        assert [u for u, _ in store.forgotten_users()] == [GONE]
        assert store.get_history(STAY[0], 100) == stay_history
    store_files = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert b"words-of-7f3a9c" not in store_files and b"only-gone-item" not in store_files

    files = _snapshot(out)
    again = _run_job("--artifacts", str(out), "--user", GONE, "--store", url)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["users_removed"] == 0
    assert _snapshot(out) == files  # nothing changes the second time


def test_an_interrupted_forget_is_finished_by_the_next_run(tmp_path, monkeypatch):
    import seqrec_ray.data.forget as forget_module

    clean, _ = _featurize(tmp_path / "clean", keep_work=True)
    forget_in_artifacts(str(clean), [GONE])
    out, _ = _featurize(tmp_path / "cut", keep_work=True)
    real_replace, calls = os.replace, []

    def crash_on_the_fourth(src, dst):  # staged manifest, change list, one part, then down
        calls.append(dst)
        if len(calls) == 4:
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(forget_module.os, "replace", crash_on_the_fourth)
    with pytest.raises(OSError, match="power cut"):
        forget_in_artifacts(str(out), [GONE])
    monkeypatch.setattr(forget_module.os, "replace", real_replace)
    assert _traces(out, GONE)  # part-way: some files still old
    assert A.load_manifest(str(out))["rows_forgotten"] == 0  # the manifest moves last
    assert forget_in_artifacts(str(out), [GONE])["users_removed"] == 0  # finished, not redone
    assert _traces(out, GONE) == [] and not (out / STAGING_DIR).exists()
    strip = ("created_at", "stage_seconds", "config", "input", "data_version")  # output paths differ
    same = [{k: v for k, v in A.load_manifest(str(d)).items() if k not in strip} for d in (out, clean)]
    assert same[0] == same[1]


def test_forget_in_artifacts_matches_featurize_with_the_list(tmp_path):
    ids = tmp_path / "forget.txt"
    ids.write_text(GONE + "\n")
    featurized = _featurize(tmp_path / "a", forget=str(ids))[1]
    out, _ = _featurize(tmp_path / "b")
    forget_in_artifacts(str(out), read_user_ids(str(ids)))
    after = A.load_manifest(str(out))
    assert after["forget_list_version"] == featurized["forget_list_version"]
    assert after["users"] == featurized["users"] and after["rows_read"] == featurized["rows_read"]
    # Duplicates of a forgotten user cannot be told apart afterwards: they stay counted there.
    assert after["rows_forgotten"] == featurized["rows_forgotten"] - GONE_DUPLICATE


def test_forget_job_refuses_bad_arguments(tmp_path):
    out, _ = _featurize(tmp_path)
    nothing = _run_job("--artifacts", str(out))
    assert nothing.returncode == 2 and "nothing to forget" in nothing.stderr
    missing = _run_job("--artifacts", str(tmp_path / "nope"), "--user", "u")
    assert missing.returncode == 2 and "not a featurize artifacts directory" in missing.stderr
    no_list = _run_job("--artifacts", str(out), "--users", str(tmp_path / "ids.txt"))
    assert no_list.returncode == 2 and "deletion list" in no_list.stderr
    for result in (nothing, missing, no_list):
        assert "Traceback" not in result.stderr
    with pytest.raises(ValueError, match="surrounding spaces"):
        ForgetConfig(artifacts=str(out), user_ids=(" u",))


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_meta_records_the_forget_list_version(tmp_path):
    from seqrec_ray.models import EncoderConfig, build_encoder
    from seqrec_ray.train.checkpoint import load_checkpoint, save_checkpoint

    ids = tmp_path / "forget.txt"
    ids.write_text(GONE + "\n")
    out, manifest = _featurize(tmp_path, forget=str(ids))
    encoder = build_encoder(EncoderConfig("gru", num_items=manifest["vocab_sizes"]["items"],
                                          max_len=4, dim=4, hidden=4))
    save_checkpoint(tmp_path / "ckpt", encoder, None, out, {"epoch": 1})
    meta = load_checkpoint(tmp_path / "ckpt").meta
    assert meta["forget_list_version"] == manifest["forget_list_version"] is not None
    plain, _ = _featurize(tmp_path / "plain")
    save_checkpoint(tmp_path / "ckpt2", encoder, None, plain, {})
    assert json.loads((tmp_path / "ckpt2" / "meta.json").read_text())["forget_list_version"] is None
    assert os.path.isdir(tmp_path / "ckpt" / "vocab")
