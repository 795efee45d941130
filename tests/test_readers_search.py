"""The search-log readers (bestbuy, jdsearch) on the real files in ../shared/data and on
deliberately broken ones.

Expected events are derived here from the raw files with the csv module and plain string
splitting, independently of the pyarrow code under test.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import shared_dataset

from seqrec_ray import schema as S
from seqrec_ray.data import readers as R
from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize

BESTBUY_FILE = "clicks_train80.csv"
JD_FILE = "user_behavior_data_sample.txt"
REPLACEMENT = "\ufffd"  # six Best Buy queries hold it already: the text was damaged upstream


def _utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def _bestbuy_rows(folder: Path) -> list[dict]:
    with open(folder / BESTBUY_FILE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _reasons(table: pa.Table) -> collections.Counter:
    return collections.Counter(table[S.INVALID_REASON].to_pylist())


# ---------------------------------------------------------------- bestbuy, real file


def test_bestbuy_every_row_is_one_click_with_its_query_and_search_session():
    folder = shared_dataset("bestbuy-xbox-queries")
    assert [Path(f).name for f in R.list_input_files(str(folder), "bestbuy")] == [BESTBUY_FILE]
    rows = _bestbuy_rows(folder)
    table = R.read_events(str(folder), "bestbuy")
    assert table.schema == S.READER_SCHEMA
    assert table.num_rows == len(rows) == 33_892  # SOURCE.md's row count
    users, skus = {r["user"] for r in rows}, {r["sku"] for r in rows}
    assert len(set(table[S.USER_ID].to_pylist())) == len(users) == 31_054
    assert len(set(table[S.ITEM_ID].to_pylist())) == len(skus) == 404
    assert collections.Counter(table[S.EVENT_TYPE].to_pylist()) == {"click": len(rows)}
    assert table[S.QUERY].null_count == 0
    for row, event in zip(rows, table.to_pylist()):
        assert (event["user_id"], event["item_id"], event["category_id"]) == (
            row["user"], row["sku"], row["category"])
        assert event["query"] == row["query"].strip()
        assert event["session_id"] == f"{row['user']}/{row['query_time']}"
        assert event["timestamp"] == pytest.approx(_utc(row["click_time"]), abs=1e-6)
    damaged = sum(REPLACEMENT in r["query"] for r in rows)
    assert damaged == 6
    assert _reasons(table) == {None: len(rows) - damaged, S.BAD_ENCODING: damaged}


def test_bestbuy_clicks_follow_their_search_in_time():
    folder = shared_dataset("bestbuy-xbox-queries")
    table = R.read_events(str(folder), "bestbuy")
    sessions = collections.defaultdict(list)
    for event in table.to_pylist():
        sessions[event["session_id"]].append(event["timestamp"])
    assert len(sessions) == len({(r["user"], r["query_time"]) for r in _bestbuy_rows(folder)})
    several = 0
    for session, times in sessions.items():
        searched = _utc(session.split("/", 1)[1])
        assert min(times) >= searched  # every click comes after the search it answers
        ordered = sorted(times)
        assert all(a < b for a, b in zip(ordered, ordered[1:]))  # no two clicks at once
        several += len(times) > 1
    assert several == 1_178


def test_bestbuy_misspelt_queries_are_kept_verbatim():
    folder = shared_dataset("bestbuy-xbox-queries")
    raw = collections.Counter(r["query"] for r in _bestbuy_rows(folder))
    read = collections.Counter(R.read_events(str(folder), "bestbuy")[S.QUERY].to_pylist())
    for typed in ("battlefeild", "Gears of wars", "skyrm", "madden12"):
        assert read[typed] == raw[typed] > 0
    assert read == raw  # no query was corrected, lower-cased or merged


def test_bestbuy_featurizes_end_to_end(tmp_path):
    folder = shared_dataset("bestbuy-xbox-queries")
    rows = [r for r in _bestbuy_rows(folder) if REPLACEMENT not in r["query"]]
    config = FeaturizeConfig(input=str(folder / BESTBUY_FILE), format="bestbuy",
                             output=str(tmp_path / "artifacts"), num_buckets=1)
    manifest = run_featurize(config, log=lambda _: None, in_process=True)
    assert (manifest["rows_read"], manifest["rows_kept"], manifest["rows_duplicate"]) == (
        33_892, len(rows), 0)
    assert manifest["rejected_by_reason"] == {S.BAD_ENCODING: 6}
    assert manifest["users"] == len({r["user"] for r in rows})
    assert manifest["sessions"] == len({(r["user"], r["query_time"]) for r in rows})
    assert manifest["items"] == len({r["sku"] for r in rows})


# ---------------------------------------------------------------- bestbuy, broken rows

BESTBUY_HEADER = "user,sku,category,query,click_time,query_time"
BESTBUY_BROKEN = [  # (line, expected reason)
    ("u1,100,abcat,Halo 4,2011-09-14 12:46:28.66,2011-09-14 12:45:07.064", None),
    ("u1,101,abcat,  halo  ,2011-09-14 12:46:30,2011-09-14 12:45:07.064", None),
    ("u2,102,abcat,,2011-09-15 00:00:00.5,2011-09-15 00:00:00", None),
    ("u3,103,abcat,cod,yesterday,2011-09-15 00:00:00", S.BAD_TIMESTAMP),
    ("u3,104,abcat,cod,2011-02-30 10:00:00,2011-02-30 09:59:00", S.BAD_TIMESTAMP),
    ("u3,105,abcat,cod,,2011-09-15 00:00:00", S.BAD_TIMESTAMP),
    ("u4,,abcat,forza,2011-09-15 00:00:01,2011-09-15 00:00:00", S.MISSING_ITEM_ID),
    (",106,abcat,forza,2011-09-15 00:00:01,2011-09-15 00:00:00", S.MISSING_USER_ID),
    ("u5,107,abcat,forza,2011-09-15 00:00:01", S.WRONG_COLUMN_COUNT),  # last: read apart
]


def test_bestbuy_broken_rows_are_kept_with_their_reason(tmp_path):
    file = tmp_path / "clicks.csv"
    file.write_text("\n".join([BESTBUY_HEADER] + [line for line, _ in BESTBUY_BROKEN]) + "\n")
    rows = R.read_events(str(file), "bestbuy").to_pylist()
    assert [r["invalid_reason"] for r in rows] == [reason for _, reason in BESTBUY_BROKEN]
    assert rows[0]["timestamp"] == pytest.approx(_utc("2011-09-14 12:46:28.660"), abs=1e-6)
    assert rows[1]["timestamp"] == _utc("2011-09-14 12:46:30")  # no fraction: still UTC
    assert [r["query"] for r in rows[:3]] == ["Halo 4", "halo", None]  # empty query is allowed
    assert rows[2]["session_id"] == "u2/2011-09-15 00:00:00"
    assert rows[6]["item_id"] is None and rows[7]["user_id"] is None
    assert rows[7]["session_id"] is None  # no user, no search to name
    assert rows[8]["query"] == BESTBUY_BROKEN[8][0]  # the raw line, for the rejects
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("user,sku,query,time\nu1,1,q,2011-09-14 12:46:28\n")
    with pytest.raises(ValueError, match="wrong.csv.*header"):
        R.read_events(str(wrong), "bestbuy")


# ---------------------------------------------------------------- jdsearch, real file

JD_TYPES = {"CLICK": "click", "CART": "cart", "FLW": "fav", "ORD": "purchase"}
JD_LABELS = {"1.0": "click", "2.0": "cart", "3.0": "purchase"}


def _jd_query(text: str) -> str | None:
    return None if text == "-1" else text.replace("\x18", " ")


def _jd_expected(line: str, user: str) -> list[tuple]:
    """(user, item, event type, timestamp, query) of one well-formed JDsearch line."""
    query, candidates, labels, queries, wids, types, gaps = line.split("\t")
    queries, wids, types = queries.split("_"), wids.split("_"), types.split("_")
    gaps = [float(g) for g in gaps.split("_")]
    assert len(queries) == len(wids) == len(types) == len(gaps) - 1
    events, now = [], 0.0
    for q, wid, kind, gap in zip(queries, wids, types, gaps):
        now += gap
        events.append((user, wid, JD_TYPES[kind], now, _jd_query(q)))
    now += gaps[-1]  # the extra gap: history -> the row's own search
    for wid, label in zip(candidates.split("_"), labels.split("_"), strict=True):
        if label != "0.0":
            events.append((user, wid, JD_LABELS[label], now, _jd_query(query)))
    return events


def test_jdsearch_sample_rows_become_history_then_engaged_candidates():
    folder = shared_dataset("jdsearch-sample")
    assert [Path(f).name for f in R.list_input_files(str(folder), "jdsearch")] == [JD_FILE]
    header, *lines = (folder / JD_FILE).read_text(encoding="utf-8").splitlines()
    assert header.split("\t") == list(R.JDSEARCH_COLUMNS)
    fields = [line.split("\t") for line in lines]
    # SOURCE.md: 3 rows; 90 / 89 / 83 candidates, 1 / 2 / 2 positives, history 182 / 46 / 2.
    assert [len(f[1].split("_")) for f in fields] == [90, 89, 83]
    assert [sum(x != "0.0" for x in f[2].split("_")) for f in fields] == [1, 2, 2]
    assert [len(f[4].split("_")) for f in fields] == [182, 46, 2]
    expected = [e for i, line in enumerate(lines) for e in _jd_expected(line, f"jd-{i + 1}")]
    assert len(expected) == 182 + 1 + 46 + 2 + 2 + 2
    table = R.read_events(str(folder), "jdsearch")
    assert table.schema == S.READER_SCHEMA
    got = [(r["user_id"], r["item_id"], r["event_type"], r["timestamp"], r["query"])
           for r in table.to_pylist()]
    assert got == expected
    assert _reasons(table) == {None: len(expected)}
    assert collections.Counter(e[2] for e in expected) == {"cart": 152, "click": 67,
                                                          "purchase": 16}
    assert sum(e[4] is None for e in expected) == sum(f[3].split("_").count("-1") for f in fields)
    last = got[-1]  # row 3's search: history gaps 0, 27, then 49660 s to the search
    assert last[3] == 0 + 27 + 49660 and last[4] == fields[2][0].replace("\x18", " ")


def test_jdsearch_featurizes_with_its_relative_times(tmp_path):
    folder = shared_dataset("jdsearch-sample")
    config = FeaturizeConfig(input=str(folder), format="jdsearch", output=str(tmp_path / "artifacts"), num_buckets=1)
    manifest = run_featurize(config, log=lambda _: None, in_process=True)
    assert (manifest["rows_read"], manifest["rows_rejected"], manifest["users"]) == (235, 0, 3)
    assert manifest["rows_kept"] + manifest["rows_duplicate"] == 235
    assert manifest["search"]["with_queries"] > 0  # the queries became part of the search index


# ---------------------------------------------------------------- jdsearch, broken rows

JD_HEADER = "\t".join(R.JDSEARCH_COLUMNS)


def _jd_line(query="7\x188", candidates="c1_c2", labels="1.0_0.0", queries="-1_5",
             wids="w1_w2", types="CLICK_ORD", gaps="0_10_20") -> str:
    return "\t".join([query, candidates, labels, queries, wids, types, gaps])


def test_jdsearch_broken_rows_are_kept_with_their_reason(tmp_path):
    mismatched = _jd_line(types="CLICK")
    short = "7\tc1\t1.0"
    file = tmp_path / "behaviour.txt"
    file.write_text("\n".join([
        JD_HEADER,
        _jd_line(labels="2.0_3.0", types="FLW_CART"),  # jd-1: graded labels, follow
        mismatched,  # jd-2: two history items, one type
        _jd_line(candidates="", labels="", queries="", wids="", types="", gaps="0"),  # jd-3
        _jd_line(gaps="0_x_20", wids="w1_-1", types="JUMP_ORD"),  # jd-4
        short,  # too few fields: read apart, after the block
    ]) + "\n")
    rows = [(r["user_id"], r["item_id"], r["event_type"], r["timestamp"], r["query"],
             r["invalid_reason"]) for r in R.read_events(str(file), "jdsearch").to_pylist()]
    assert rows[:3] == [("jd-1", "w1", "fav", 0.0, None, None),
                        ("jd-1", "w2", "cart", 10.0, "5", None),
                        ("jd-1", "c1", "cart", 30.0, "7 8", None)]
    assert rows[3] == ("jd-1", "c2", "purchase", 30.0, "7 8", None)
    assert [r[:3] + r[4:] for r in rows[4:7]] == [
        ("jd-2", "w1", "click", mismatched, S.WRONG_COLUMN_COUNT),
        ("jd-2", "w2", None, mismatched, S.WRONG_COLUMN_COUNT),  # every event of the row
        ("jd-2", "c1", "click", mismatched, S.WRONG_COLUMN_COUNT)]
    assert rows[7] == ("jd-3", None, None, None, None, S.MISSING_ITEM_ID)  # nothing: one row
    assert [r[1:3] + r[5:] for r in rows[8:11]] == [
        ("w1", "JUMP", S.UNKNOWN_EVENT_TYPE), (None, "purchase", S.MISSING_ITEM_ID),
        ("c1", "click", S.BAD_TIMESTAMP)]  # a bad gap leaves every later time unknown
    assert rows[8][3] == 0.0 and rows[10][3] is None
    assert rows[11][0] == "jd-5" and rows[11][4:] == (short, S.WRONG_COLUMN_COUNT)
    assert len(rows) == 12


def test_jdsearch_users_are_numbered_across_blocks(tmp_path):
    lines = [_jd_line(wids=f"w{i}_x{i}") for i in range(3_000)]
    file = tmp_path / "many.txt"
    file.write_text("\n".join([JD_HEADER] + lines) + "\n")
    batches = list(R.iter_file_batches(str(file), "jdsearch", batch_rows=500))
    assert len(batches) > 1
    rows = pa.concat_tables(batches).to_pylist()
    assert len(rows) == 3 * len(lines) and {r["invalid_reason"] for r in rows} == {None}
    firsts = [(r["user_id"], r["item_id"]) for r in rows[::3]]
    assert firsts == [(f"jd-{i + 1}", f"w{i}") for i in range(len(lines))]


def test_new_formats_are_listed_and_side_files_skipped(tmp_path):
    assert {"bestbuy", "jdsearch"} <= set(R.FORMATS)
    (tmp_path / "behaviour.txt").write_text(JD_HEADER + "\n" + _jd_line() + "\n")
    (tmp_path / "product_meta_data.txt").write_text("wid\tname\n")
    assert [Path(f).name for f in R.list_input_files(str(tmp_path), "jdsearch")] == [
        "behaviour.txt"]
    with pytest.raises(ValueError, match="side file"):
        R.list_input_files(str(tmp_path / "product_meta_data.txt"), "jdsearch")
