"""Readers on the real datasets in ../shared/data and on deliberately broken files.

Expected counts are computed here from the raw files with plain Python, independently of
the pyarrow code under test.
"""

from __future__ import annotations

import collections
import datetime as dt
import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared_dataset

from seqrec_ray import schema as S
from seqrec_ray.data import readers as R


def _lines(path: Path) -> list[str]:
    """Non-blank lines, as the readers define a row."""
    return [line for line in path.read_text().splitlines() if line != ""]


def _counts(table: pa.Table, column: str) -> dict:
    return dict(collections.Counter(table[column].to_pylist()))


def _reasons(table: pa.Table) -> list:
    return table[S.INVALID_REASON].to_pylist()


# ---------------------------------------------------------------- real datasets


def test_taobao_real_files_every_row_and_behaviour():
    folder = shared_dataset("taobao-userbehavior")
    files = R.list_input_files(str(folder), "taobao")
    assert [Path(f).name for f in files] == sorted(p.name for p in folder.glob("*.csv"))
    for file in files:
        lines = _lines(Path(file))
        table = R.read_events(file, "taobao")
        assert table.schema == S.READER_SCHEMA
        assert table.num_rows == len(lines)
        mapping = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "purchase"}
        expected = collections.Counter(mapping[line.split(",")[3]] for line in lines)
        assert _counts(table, S.EVENT_TYPE) == dict(expected)
        assert set(_reasons(table)) == {None}
        first = lines[0].split(",")
        assert table.slice(0, 1).to_pylist()[0] == {
            "user_id": first[0], "item_id": first[1], "event_type": mapping[first[3]],
            "timestamp": float(first[4]), "session_id": None, "category_id": first[2],
            "price": None, "query": None, "invalid_reason": None,
        }


def test_taobao_directory_equals_its_files_and_batches_keep_order():
    folder = shared_dataset("taobao-userbehavior")
    whole = R.read_events(str(folder), "taobao")
    assert whole.num_rows == sum(len(_lines(p)) for p in folder.glob("*.csv"))
    file = str(folder / "UserBehavior_timeslice_rdav27.csv")
    batches = list(R.iter_file_batches(file, "taobao", batch_rows=7_000))
    assert all(b.num_rows == 7_000 for b in batches[:-1]) and 0 < batches[-1].num_rows <= 7_000
    assert pa.concat_tables(batches).equals(R.read_events(file, "taobao"))
    globbed = R.list_input_files(str(folder / "*head*.csv"), "taobao")
    assert [Path(f).name for f in globbed] == ["UserBehavior_head_fattydelivery.csv"]


def test_yoochoose_real_files_are_sessions_of_clicks():
    folder = shared_dataset("yoochoose-clicks-100k")
    for file in R.list_input_files(str(folder), "yoochoose"):
        lines = _lines(Path(file))
        assert lines[0].split("\t") == ["SessionId", "ItemId", "Time"]
        table = R.read_events(file, "yoochoose")
        assert table.num_rows == len(lines) - 1
        assert _counts(table, S.EVENT_TYPE) == {"click": len(lines) - 1}
        assert set(_reasons(table)) == {None}
        assert table[S.USER_ID].equals(table[S.SESSION_ID])
        session, item, time = lines[-1].split("\t")
        last = table.slice(table.num_rows - 1).to_pylist()[0]
        assert (last["user_id"], last["item_id"], last["timestamp"]) == (session, item, float(time))


def test_diginetica_purchases_with_categories_and_anonymous_users():
    folder = shared_dataset("diginetica-purchases")
    files = R.list_input_files(str(folder), "diginetica")
    assert [Path(f).name for f in files] == ["train-purchases.csv"]
    lines = _lines(folder / "train-purchases.csv")[1:]
    categories = dict(line.split(";") for line in _lines(folder / "product-categories.csv")[1:])
    table = R.read_events(str(folder), "diginetica")
    assert table.num_rows == len(lines)
    assert _counts(table, S.EVENT_TYPE) == {"purchase": len(lines)}
    assert set(_reasons(table)) == {None}
    rows = table.to_pylist()
    for line, row in zip(lines, rows):
        session, user, timeframe, date, _order, item = line.split(";")
        midnight = dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()
        assert row["timestamp"] == pytest.approx(midnight + int(timeframe) / 1000.0)
        assert row["user_id"] == (f"session-{session}" if user == "NA" else user)
        assert (row["session_id"], row["item_id"]) == (session, item)
        assert row["category_id"] == categories.get(item)
    assert sum(r["user_id"].startswith("session-") for r in rows) == sum(
        line.split(";")[1] == "NA" for line in lines
    ) > 0


@pytest.mark.parametrize("name,data_file", [("amazon-beauty", "Beauty.txt"),
                                            ("lastfm", "LastFM.txt")])
def test_s3rec_files_are_positioned_purchases_and_side_files_ignored(name, data_file):
    folder = shared_dataset(name)
    assert [Path(f).name for f in R.list_input_files(str(folder), "s3rec")] == [data_file]
    assert [Path(f).name for f in R.list_input_files(str(folder / "*"), "s3rec")] == [data_file]
    table = R.read_events(str(folder), "s3rec")
    sequences = collections.defaultdict(list)
    for row in table.to_pylist():
        assert row["invalid_reason"] is None and row["event_type"] == "purchase"
        sequences[row["user_id"]].append((row["timestamp"], row["item_id"]))
    lines = _lines(folder / data_file)
    assert table.num_rows == sum(len(line.split()) - 1 for line in lines)
    assert len(sequences) == len(lines)
    for line in lines:
        user, *items = line.split()
        assert sequences[user] == [(float(i), item) for i, item in enumerate(items)]
    if name == "amazon-beauty":  # the counts DESIGN.md quotes for S3-Rec's Beauty
        assert (len(sequences), table.num_rows) == (22_363, 198_502)
        assert len(set(table[S.ITEM_ID].to_pylist())) == 12_101


def test_s3rec_negative_sample_file_is_refused_as_data():
    folder = shared_dataset("lastfm")
    with pytest.raises(ValueError, match="LastFM_sample.txt"):
        R.list_input_files(str(folder / "LastFM_sample.txt"), "s3rec")


# ---------------------------------------------------------------- broken files

TAOBAO_BROKEN = [  # (line, expected reason)
    ("1,10,100,pv,1511544070", None),
    (",10,100,pv,1511544070", "missing_user_id"),
    ("  ,10,100,cart,1511544070", "missing_user_id"),
    ("1,,100,fav,1511544070", "missing_item_id"),
    ("1,10,100,jump,1511544070", "unknown_event_type"),
    ("1,10,100,,1511544070", "unknown_event_type"),
    ("1,10,100,buy,yesterday", "bad_timestamp"),
    ("1,10,100,buy,", "bad_timestamp"),
    ("1,10,100,buy,nan", "bad_timestamp"),
    ("1,10,100,buy,inf", "bad_timestamp"),
    ("1,10,100,buy,-Infinity", "bad_timestamp"),
    ("1,10,100,buy,1e999", "bad_timestamp"),
    ("1,10,100,pv", "wrong_column_count"),
    ("1,10,100,pv,1511544070,extra", "wrong_column_count"),
    ("garbage", "wrong_column_count"),
    ('"1,10",100,pv,1511544070', None),  # no quoting in this format: a quote is a character
    ('"1,10,100,pv,1511544070', None),  # an unbalanced quote must not swallow later lines
    ("2,20,,BUY,1511544071", None),
]


def _write(path: Path, lines: list[str], blank_every: int = 0) -> Path:
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if blank_every and i % blank_every == 0:
            out.append("")  # blank lines hold no row
    path.write_text("\n".join(out) + "\n")
    return path


def test_taobao_broken_rows_are_kept_and_marked(tmp_path):
    file = _write(tmp_path / "broken.csv", [line for line, _ in TAOBAO_BROKEN], blank_every=4)
    table = R.read_events(str(file), "taobao")
    assert table.num_rows == len(TAOBAO_BROKEN)
    expected = collections.Counter(reason for _, reason in TAOBAO_BROKEN)
    assert collections.Counter(_reasons(table)) == expected
    by_line = {}
    for row in table.to_pylist():
        if row["invalid_reason"] == "wrong_column_count":
            by_line[row["query"]] = row  # the raw line is kept for the rejects
    assert set(by_line) == {line for line, r in TAOBAO_BROKEN if r == "wrong_column_count"}
    assert by_line["1,10,100,pv"]["user_id"] == "1"  # a best-effort parse of the rest
    unknown = [r["event_type"] for r in table.to_pylist() if r["invalid_reason"] ==
               "unknown_event_type"]
    assert sorted(unknown, key=str) == [None, "jump"]  # the raw value, null when empty
    good = [r for r in table.to_pylist() if r["invalid_reason"] is None]
    assert [(r["user_id"], r["event_type"], r["category_id"]) for r in good] == [
        ("1", "view", "100"), ('"1', "view", "100"), ('"1', "view", "100"),
        ("2", "purchase", None)]


def test_taobao_broken_rows_survive_small_blocks_and_gzip(tmp_path):
    lines = [line for line, _ in TAOBAO_BROKEN] * 300
    plain = _write(tmp_path / "many.csv", lines)
    packed = tmp_path / "many.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for file in (plain, packed):
        batches = list(R.iter_file_batches(str(file), "taobao", batch_rows=97))
        table = pa.concat_tables(batches)
        assert table.num_rows == len(lines)
        assert collections.Counter(_reasons(table)) == collections.Counter(
            reason for _, reason in TAOBAO_BROKEN * 300)


def test_invalid_utf8_is_marked_not_fatal(tmp_path):
    # Valid multi-byte text runs past the 1 MiB read chunks, so some character is split
    # across two chunks: it must not be taken for bad bytes.
    good = [f"\u4e2d{i},\u6587{i},3,pv,{1511544070 + i}".encode() for i in range(70_000)]
    broken = [b"1,2\xff,3,pv,5", b"1,2\xff,3", b"\xfe\xfe,7,3,buy,5"]
    file = tmp_path / "mixed.csv"
    file.write_bytes(b"\n".join(good[:35_000] + broken + good[35_000:]) + b"\n")
    table = R.read_events(str(file), "taobao")
    assert table.num_rows == len(good) + len(broken)
    assert collections.Counter(_reasons(table)) == {
        None: len(good), "bad_encoding": 2, "wrong_column_count": 1}
    assert table[S.USER_ID][0].as_py() == "\u4e2d0"


def test_yoochoose_broken_rows_and_wrong_header(tmp_path):
    file = _write(tmp_path / "clicks.txt", [
        "SessionId\tItemId\tTime", "1\t5\t1396860669.277", "\t5\t1396860669", "1\t\t1",
        "1\t5\tnan", "1\t5", "1\t5\t1\t9", "2\t6\t1396860670"])
    table = R.read_events(str(file), "yoochoose")
    assert collections.Counter(_reasons(table)) == collections.Counter(
        [None, None, "missing_user_id", "missing_item_id", "bad_timestamp",
         "wrong_column_count", "wrong_column_count"])
    wrong = _write(tmp_path / "wrong.txt", ["user\titem\ttime", "1\t5\t1"])
    with pytest.raises(ValueError, match="wrong.txt.*header"):
        R.read_events(str(wrong), "yoochoose")
    header_only = _write(tmp_path / "empty.txt", ["SessionId\tItemId\tTime"])
    assert R.read_events(str(header_only), "yoochoose").num_rows == 0


def test_diginetica_broken_rows(tmp_path):
    header = "sessionId;userId;timeframe;eventdate;ordernumber;itemId"
    _write(tmp_path / "train-purchases.csv", [
        header, "1;7;1000;2016-05-06;1;42", "2;NA;0;2016-05-06;2;43",
        ";NA;0;2016-05-06;2;43", "3;7;0;2016-05-06;3;", "4;7;0;2016-13-45;4;44",
        "5;7;soon;2016-05-06;5;44", "6;7;0;2016-05-06;6"])
    (tmp_path / "product-categories.csv").write_text("itemId;categoryId\n42;9\n")
    rows = R.read_events(str(tmp_path), "diginetica").to_pylist()
    assert [r["invalid_reason"] for r in rows] == [
        None, None, "missing_user_id", "missing_item_id", "bad_timestamp", "bad_timestamp",
        "wrong_column_count"]
    assert rows[0]["timestamp"] == 1462492800.0 + 1.0 and rows[0]["category_id"] == "9"
    assert rows[1]["user_id"] == "session-2" and rows[1]["category_id"] is None


def test_s3rec_broken_lines(tmp_path):
    file = _write(tmp_path / "Tiny.txt", ["1 5 6 7", "2", "   ", "3  8\t9 "])
    (tmp_path / "Tiny_sample.txt").write_text("1 99 98\n")
    (tmp_path / "Tiny_item2attributes.json").write_text("{}")
    table = R.read_events(str(tmp_path), "s3rec")
    rows = [(r["user_id"], r["item_id"], r["timestamp"], r["invalid_reason"])
            for r in table.to_pylist()]
    assert rows == [("1", "5", 0.0, None), ("1", "6", 1.0, None), ("1", "7", 2.0, None),
                    ("2", None, 0.0, "missing_item_id"), (None, None, 0.0, "missing_user_id"),
                    ("3", "8", 0.0, None), ("3", "9", 1.0, None)]
    assert R.list_input_files(str(file), "s3rec") == [str(file)]


def test_events_csv_and_parquet(tmp_path):
    csv = _write(tmp_path / "log.csv", [
        "user_id,item_id,event_type,timestamp,price,query,extra",
        'u1,i1,view,10,1.5,"red, shoes",x', "u2,i2,Search,11,,q,x", "u3,i3,view,12,abc,,x",
        "u4,i4,view,13,-inf,,x", "u5,i5,teleport,14,,,x", "u6,i6,view,,,,x", "u7,i7,view,15"])
    rows = R.read_events(str(csv), "events").to_pylist()
    assert [r["invalid_reason"] for r in rows] == [
        None, None, "bad_price", "bad_price", "unknown_event_type", "bad_timestamp",
        "wrong_column_count"]
    assert rows[0]["query"] == "red, shoes" and rows[0]["price"] == 1.5
    assert rows[1]["event_type"] == "search" and rows[1]["session_id"] is None
    parquet = tmp_path / "log.parquet"
    pq.write_table(pa.table({
        "user_id": [1, 2, 3], "item_id": ["a", "", "c"], "event_type": ["cart", "fav", "buy"],
        "timestamp": pa.array([1_000, 2_000, 3_000], pa.timestamp("ms")),
        "session_id": ["s", None, ""], "unused": [0, 0, 0]}), parquet)
    rows = R.read_events(str(parquet), "events").to_pylist()
    assert [(r["user_id"], r["timestamp"], r["session_id"], r["invalid_reason"])
            for r in rows] == [("1", 1.0, "s", None), ("2", 2.0, None, "missing_item_id"),
                               ("3", 3.0, None, "unknown_event_type")]
    assert R.read_events(str(tmp_path), "events").num_rows == 10


def test_events_without_a_required_column_is_a_clear_error(tmp_path):
    parquet = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "timestamp": [1.0]}), parquet)
    with pytest.raises(ValueError, match=r"log.parquet.*event_type"):
        R.read_events(str(parquet), "events")


# ---------------------------------------------------------------- clear errors


def test_missing_path_and_unknown_format_are_clear_errors(tmp_path):
    missing = str(tmp_path / "nowhere.csv")
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        R.list_input_files(missing, "taobao")
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        list(R.iter_file_batches(missing, "taobao"))
    with pytest.raises(FileNotFoundError, match=r"no taobao data files"):
        R.list_input_files(str(tmp_path), "taobao")
    with pytest.raises(FileNotFoundError, match=r"\*.zzz"):
        R.list_input_files(str(tmp_path / "*.zzz"), "taobao")
    with pytest.raises(ValueError, match="'csvx'.*taobao, yoochoose, diginetica, s3rec, bestbuy, jdsearch, events"):
        R.list_input_files(str(tmp_path), "csvx")
    with pytest.raises(ValueError, match="csvx"):
        R.read_events(str(tmp_path), "csvx")
    assert R.FORMATS == ("taobao", "yoochoose", "diginetica", "s3rec", "bestbuy", "jdsearch", "events")


def test_empty_and_blank_files_yield_no_rows(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "blank.csv").write_text("\n\n")
    (tmp_path / "empty.csv.gz").write_bytes(gzip.compress(b""))
    for name in ("empty.csv", "blank.csv", "empty.csv.gz"):
        for fmt in ("taobao", "events"):
            assert list(R.iter_file_batches(str(tmp_path / name), fmt)) == []
    table = R.read_events(str(tmp_path), "taobao")
    assert table.num_rows == 0 and table.schema == S.READER_SCHEMA
    with pytest.raises(ValueError, match="batch_rows"):
        list(R.iter_file_batches(str(tmp_path / "empty.csv"), "taobao", batch_rows=0))
