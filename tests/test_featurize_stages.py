"""Pure featurization stages on hand-built tables (no Ray): every expected value here is
worked out by hand from the rows in the test."""

from __future__ import annotations

import math
import re

import numpy as np
import pyarrow as pa
import pytest

from seqrec_ray import schema as S
from seqrec_ray.data import events as E
from seqrec_ray.data import sequences as Q
from seqrec_ray.data import vocab as V
from seqrec_ray.data.pipeline import ManifestError, check_counts
from seqrec_ray.data.profiles import ProfileConfig, build_profiles
from seqrec_ray.data.splits import SplitConfig, assign_splits, parse_time
from seqrec_ray.data.validate import ValidateConfig, count_reasons, validate
from seqrec_ray.data.vocab import Vocab

T0 = 1_511_740_800.0  # 2017-11-27T00:00:00Z, a Monday


def reader_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=S.READER_SCHEMA)


def ev(user, item, ts, etype="view", **extra) -> dict:
    return {"user_id": user, "item_id": item, "event_type": etype, "timestamp": ts, **extra}


def kept_events(rows: list[dict]) -> pa.Table:
    """Validated events with input order keys, as the bucket pass sees them."""
    kept, rejects = validate(reader_table(rows), ValidateConfig())
    assert rejects.num_rows == 0
    return kept.append_column(E.ORDER, E.order_keys(0, 0, kept.num_rows))


def prepared(rows: list[dict], gap: float = 1800.0) -> pa.Table:
    table, _ = E.drop_duplicates(E.sort_events(kept_events(rows)))
    return E.sessionize(table, gap)


# ---------------------------------------------------------------- validate


def test_validate_gives_each_bad_row_its_first_reason():
    rows = [
        ev("u1", "i1", T0),  # good
        {**ev("u1", "i1", T0), "invalid_reason": "wrong_column_count"},  # reader's reason wins
        ev(None, "i1", T0),
        ev("", "i1", T0),
        ev("u1", None, T0),
        ev("u1", "i1", T0, etype="teleport"),
        ev("u1", "i1", float("nan")),
        ev("u1", "i1", float("inf")),
        ev("u1", "i1", 15.0),  # 1970
        ev("u1", "i1", 5e9),  # 2128
        ev("u1", "i1", T0, price=-0.01),
        ev("u1", "i1", T0, price=0.0),  # free is fine
        ev(None, None, float("nan"), etype="teleport"),  # several faults: the first
    ]
    kept, rejects = validate(reader_table(rows), ValidateConfig())
    assert kept.num_rows == 2
    assert S.INVALID_REASON not in kept.column_names
    assert rejects["reason"].to_pylist() == [
        "wrong_column_count", "missing_user_id", "missing_user_id", "missing_item_id",
        "unknown_event_type", "bad_timestamp", "bad_timestamp", "timestamp_out_of_range",
        "timestamp_out_of_range", "negative_price", "missing_user_id"]
    assert count_reasons(rejects) == {
        "wrong_column_count": 1, "missing_user_id": 3, "missing_item_id": 1,
        "unknown_event_type": 1, "bad_timestamp": 2, "timestamp_out_of_range": 2,
        "negative_price": 1}


def test_positional_formats_accept_small_timestamps():
    rows = [ev("u", "a", 0.0, "purchase"), ev("u", "b", 1.0, "purchase")]
    kept, _ = validate(reader_table(rows), ValidateConfig.for_format("s3rec"))
    assert kept.num_rows == 2
    _, rejects = validate(reader_table(rows), ValidateConfig.for_format("taobao"))
    assert rejects.num_rows == 2


@pytest.mark.parametrize("kwargs, word", [
    ({"min_timestamp": 10.0, "max_timestamp": 5.0}, "min_timestamp (10.0)"),
    ({"min_timestamp": float("nan")}, "min_timestamp"),
])
def test_validate_config_names_bad_value(kwargs, word):
    with pytest.raises(ValueError, match=re.escape(word)):
        ValidateConfig(**kwargs)


# ---------------------------------------------------------------- buckets, order, dedupe


def test_user_buckets_are_stable_and_independent_of_chunking():
    users = pa.array([f"user-{i}" for i in range(2000)] + ["", "é", "user-1"])
    whole = E.user_buckets(users, 7)
    chunked = E.user_buckets(pa.chunked_array([users[:1000], users[1000:]]), 7)
    np.testing.assert_array_equal(whole, chunked)
    assert whole.min() >= 0 and whole.max() < 7
    assert whole[-1] == whole[1]  # the same id, the same bucket
    counts = np.bincount(whole[:2000], minlength=7)
    assert counts.min() > 2000 / 7 * 0.7  # spread out, not all in one bucket


def test_sort_events_groups_users_and_keeps_input_order_on_ties():
    table = kept_events([ev("b", "x", T0 + 5), ev("a", "y", T0 + 1), ev("b", "z", T0 + 5),
                         ev("a", "w", T0), ev("b", "v", T0 + 1)])
    out = E.sort_events(table)
    assert list(zip(out["user_id"].to_pylist(), out["item_id"].to_pylist())) == [
        ("b", "v"), ("b", "x"), ("b", "z"), ("a", "w"), ("a", "y")]


def test_drop_duplicates_is_exact_and_keeps_the_first():
    rows = [
        ev("u", "a", T0, price=1.0),
        ev("u", "b", T0, price=1.0),
        ev("u", "a", T0, price=1.0),  # duplicate of row 0, not adjacent to it
        ev("u", "a", T0, price=2.0),  # differs in price: kept
        ev("u", "a", T0, "cart", price=1.0),  # differs in type: kept
        ev("v", "a", T0, price=1.0),  # another user: kept
        ev("u", "a", T0 + 1, price=1.0),  # another time: kept
        ev("u", "b", T0),  # no price: differs from row 1
        ev("u", "b", T0),  # duplicate of the row above (nulls compare equal)
    ]
    out, dropped = E.drop_duplicates(E.sort_events(kept_events(rows)))
    assert dropped == 2
    assert sorted(out[E.ORDER].to_pylist()) == [0, 1, 3, 4, 5, 6, 7]


def test_sessionize_splits_on_gaps_and_keeps_source_sessions():
    rows = [
        ev("u", "a", T0), ev("u", "b", T0 + 1800),  # exactly the gap: same session
        ev("u", "c", T0 + 3601),  # 1801 s later: new session
        ev("s", "a", T0, session_id="S1"), ev("s", "b", T0 + 10_000, session_id="S1"),
        ev("s", "c", T0 + 10_001, session_id="S2"),
        ev("s", "d", T0 + 10_002),  # no source id after a sourced one: new session
    ]
    out = prepared(rows)
    got = {(u, i): (sid, k) for u, i, sid, k in zip(
        out["user_id"].to_pylist(), out["item_id"].to_pylist(),
        out["session_id"].to_pylist(), out[E.SESSION_INDEX].to_pylist())}
    assert got == {("u", "a"): ("u:0", 0), ("u", "b"): ("u:0", 0), ("u", "c"): ("u:1", 1),
                   ("s", "a"): ("S1", 0), ("s", "b"): ("S1", 0), ("s", "c"): ("S2", 1),
                   ("s", "d"): ("s:2", 2)}


# ---------------------------------------------------------------- vocab


def test_vocab_min_count_order_pad_oov_and_categories():
    rows = ([ev("u", "a", T0 + i, category_id="c1") for i in range(3)]
            + [ev("u", "b", T0 + 10 + i, category_id="c2") for i in range(2)]
            + [ev("u", "b", T0 + 20, category_id="c1"), ev("u", "b", T0 + 21, category_id="c1")]
            + [ev("u", "z", T0 + 30, category_id="c3")]  # z: count 1
            + [ev("v", "c", T0 + i) for i in range(3)]  # no category at all
            + [ev("v", "d", T0 + 40, category_id="c2"), ev("v", "d", T0 + 41, category_id="c9"),
               ev("v", "d", T0 + 42, category_id="c9"), ev("v", "d", T0 + 43, category_id="c2")])
    table = kept_events(rows)
    halves = [V.count_pairs(table.slice(0, 6)), V.count_pairs(table.slice(6))]
    pairs = V.combine_counts(halves)
    assert sorted(pairs.to_pylist(), key=str) == sorted(
        V.count_pairs(table).to_pylist(), key=str)
    items, cats = V.build_vocabs(pairs, V.VocabConfig(min_item_count=2, min_category_count=2))
    # counts: a 3, b 4, c 3, d 4, z 1 -> by count desc then raw id: b, d, a, c; z is oov.
    assert items["raw_id"].to_pylist() == ["<pad>", "<oov>", "b", "d", "a", "c"]
    assert items["index"].to_pylist() == [0, 1, 2, 3, 4, 5]
    assert items["count"].to_pylist() == [0, 1, 4, 4, 3, 3]
    # categories: c1 5, c2 4, c9 2, c3 1 (dropped, min 2)
    assert cats["raw_id"].to_pylist() == ["<pad>", "<oov>", "c1", "c2", "c9"]
    assert cats["count"].to_pylist() == [0, 1, 5, 4, 2]
    # b: c1 twice vs c2 twice -> tie, smaller raw id c1; d: c2 2, c9 2 -> c2; c: none -> 1
    assert items["category_index"].to_pylist() == [0, 1, 2, 3, 2, 1]
    encoded = V.encode(pa.array(["a", "z", None, "never-seen", "b"]), items)
    assert encoded.to_pylist() == [4, 1, 1, 1, 2]
    vocab = Vocab(item_raw_ids=tuple(items["raw_id"].to_pylist()), category_raw_ids=tuple(cats["raw_id"].to_pylist()),
                  item_category=items["category_index"].to_numpy(), item_counts=items["count"].to_numpy())
    assert [vocab.item_raw_id(i) for i in encoded.to_pylist()] == [
        "a", "<oov>", "<oov>", "<oov>", "b"]
    assert vocab.item_index("d") == 3 and vocab.item_index("z") == 1
    assert vocab.category_index("c9") == 4 and vocab.category_index(None) == 1


def test_vocab_without_any_category():
    table = kept_events([ev("u", "a", T0), ev("u", "b", T0 + 1), ev("v", "a", T0)])
    pairs = V.combine_counts([V.count_pairs(table.slice(0, 2)), V.count_pairs(table.slice(2))])
    items, cats = V.build_vocabs(pairs, V.VocabConfig())
    assert items["raw_id"].to_pylist() == ["<pad>", "<oov>", "a", "b"]
    assert items["count"].to_pylist() == [0, 0, 2, 1]
    assert items["category_index"].to_pylist() == [0, 1, 1, 1]
    assert cats["raw_id"].to_pylist() == ["<pad>", "<oov>"]


def test_vocab_config_rejects_zero():
    with pytest.raises(ValueError, match="min_item_count must be an integer >= 1, got 0"):
        V.VocabConfig(min_item_count=0)


# ---------------------------------------------------------------- time features, splits


def test_gap_buckets_hours_and_weekdays():
    ts = np.array([T0, T0, T0 + 1, T0 + 4, T0 + 104, T0 + 1e12, T0 + 2e12, T0 + 2e12 + 3])
    first = np.array([True, False, False, False, False, False, True, False])
    # gaps: -, 0, 1, 3, 100, ~1e12, -, 3 -> 2+floor(log2(1+gap)): 2, 3, 4, 8, capped 31
    assert Q.gap_buckets(ts, first).tolist() == [1, 2, 3, 4, 8, 31, 1, 4]
    moments = np.array([T0, T0 + 23 * 3600 + 3599, T0 + 86400 * 6 + 13 * 3600, 0.0])
    assert Q.hours_of_day(moments).tolist() == [0, 23, 13, 0]
    assert Q.weekdays(moments).tolist() == [0, 0, 6, 3]  # Mon, Mon, Sun, Thu 1970-01-01


def test_leave_one_out_splits():
    # users of length 1, 2, 3 and 5, events in order
    lengths = np.array([1, 2, 2, 3, 3, 3, 5, 5, 5, 5, 5])
    from_end = np.array([0, 1, 0, 2, 1, 0, 4, 3, 2, 1, 0])
    out = assign_splits(np.zeros(11), from_end, lengths, SplitConfig())
    assert out.tolist() == [0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 2]


def test_temporal_split_has_no_leakage():
    ts = np.array([10.0, 99.9, 100.0, 149.0, 150.0, 151.0, 5.0])
    config = SplitConfig("temporal", cutoff=150.0, valid_cutoff=100.0)
    out = assign_splits(ts, np.zeros(7), np.full(7, 7), config)
    assert out.tolist() == [0, 0, 1, 1, 2, 2, 0]
    assert ts[out == 0].max() < config.valid_cutoff and ts[out == 1].max() < config.cutoff
    no_valid = assign_splits(ts, np.zeros(7), np.full(7, 7), SplitConfig("temporal", cutoff=150.0))
    assert no_valid.tolist() == [0, 0, 0, 0, 2, 2, 0]


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "random"}, "unknown split protocol 'random'"),
    ({"protocol": "temporal"}, "needs a finite cutoff, got None"),
    ({"protocol": "temporal", "cutoff": 5.0, "valid_cutoff": 9.0}, "valid_cutoff (9.0)"),
    ({"cutoff": 5.0}, "only apply to the temporal split"),
])
def test_split_config_names_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SplitConfig(**kwargs)


def test_parse_time():
    assert parse_time("1511740800") == T0
    assert parse_time("2017-11-27") == T0
    assert parse_time("2017-11-27T01:00:00+01:00") == T0
    with pytest.raises(ValueError, match="not a time: 'yesterday'"):
        parse_time("yesterday")


# ---------------------------------------------------------------- sequences


def test_raw_sequences_truncate_after_splitting():
    rows = [ev("u", f"i{k}", T0 + 60 * k, "view" if k % 2 else "cart",
               category_id=f"c{k}") for k in range(5)]
    rows += [ev("w", "solo", T0 + 7)]
    raw = Q.build_raw_sequences(prepared(rows), Q.SequenceConfig(max_seq_len=3))
    by_user = {r["user_id"]: r for r in raw.to_pylist()}
    u = by_user["u"]
    assert u["item_ids"] == ["i2", "i3", "i4"] and u["n_events"] == 5
    assert u["category_ids"] == ["c2", "c3", "c4"]
    assert u["event_types"] == [3, 1, 3]  # cart = 3, view = 1
    assert u["splits"] == [0, 1, 2]
    assert u["gap_buckets"] == [7, 7, 7]  # 60 s gaps: 2 + floor(log2(61)) = 7
    assert u["timestamps"] == [T0 + 120, T0 + 180, T0 + 240]
    assert u["sessions"] == [0, 0, 0]
    w = by_user["w"]
    assert w["item_ids"] == ["solo"] and w["splits"] == [0] and w["gap_buckets"] == [1]


def test_encode_sequences_falls_back_to_item_category():
    rows = [ev("u", "a", T0, category_id="c1"), ev("u", "a", T0 + 1),
            ev("u", "rare", T0 + 2, category_id="c1"), ev("u", "a", T0 + 3, category_id="c2")]
    events = prepared(rows)
    items, cats = V.build_vocabs(V.count_pairs(events), V.VocabConfig(min_item_count=2))
    out = Q.encode_sequences(Q.build_raw_sequences(events, Q.SequenceConfig()), items, cats)
    assert out.schema == Q.SEQUENCE_SCHEMA
    row = out.to_pylist()[0]
    a, c1, c2 = 2, cats["raw_id"].to_pylist().index("c1"), cats["raw_id"].to_pylist().index("c2")
    assert row["items"] == [a, a, 1, a]
    # row 2 has no category: a's most frequent (c1 and c2 once each: tie -> c1)
    assert row["categories"] == [c1, c1, c1, c2]


# ---------------------------------------------------------------- profiles


def test_profiles_aggregates_and_tags():
    day = 86400.0
    rows = [
        ev("buyer", "a", T0, "view", category_id="c2", price=10.0),
        ev("buyer", "a", T0 + 60, "cart", category_id="c2", price=20.0),
        ev("buyer", "b", T0 + 120, "purchase", category_id="c1"),
        ev("buyer", "c", T0 + 9000, "view", category_id="c1"),
        ev("buyer", "d", T0 + 9100, "fav", category_id="c3"),
        ev("old", "a", T0 - 40 * day, "click"), ev("old", "e", T0 - 39 * day, "search"),
    ]
    reference = T0 + 9100
    profiles = build_profiles(prepared(rows), reference, ProfileConfig(top_categories=2))
    got = {p["user_id"]: p for p in profiles.to_pylist()}
    b = got["buyer"]
    assert (b["n_events"], b["n_view"], b["n_cart"], b["n_purchase"], b["n_fav"],
            b["n_click"], b["n_search"]) == (5, 2, 1, 1, 1, 0, 0)
    assert b["distinct_items"] == 4 and b["distinct_categories"] == 3
    assert b["top_categories"] == ["c1", "c2"]  # c1 2, c2 2 (tie: raw id), c3 cut by k
    assert (b["first_seen"], b["last_seen"]) == (T0, T0 + 9100)
    assert math.isclose(b["purchase_rate"], 0.2) and math.isclose(b["mean_price"], 15.0)
    assert b["tags"] == ["new", "active", "buyer"]
    assert b["n_sessions"] == 2  # 60 s, 60 s, then 8880 s > 30 min, then 100 s
    o = got["old"]
    assert o["mean_price"] is None and o["top_categories"] == [] and o["n_click"] == 1
    assert o["tags"] == ["dormant", "browser"]
    untimed = build_profiles(prepared(rows), reference, ProfileConfig(time_tags=False))
    assert {p["user_id"]: p["tags"] for p in untimed.to_pylist()} == {
        "buyer": ["buyer"], "old": ["browser"]}


# ---------------------------------------------------------------- manifest arithmetic


def test_check_counts_reconciles_and_fails_loudly():
    read = [{"rows_read": 10, "rows_rejected": 3, "rows_kept": 7,
             "rejected_by_reason": {"bad_timestamp": 3}}]
    bucketed = [{"rows_in": 4, "rows_duplicate": 1, "users": 2},
                {"rows_in": 3, "rows_duplicate": 0, "users": 1}]
    encoded = [{"users": 2, "events": 3}, {"users": 1, "events": 3}]
    counts = check_counts(read, bucketed, encoded)
    assert counts == {"rows_read": 10, "rows_rejected": 3, "rows_duplicate": 1, "rows_forgotten": 0,
                      "rows_kept": 6}
    lost = [{"users": 2, "events": 3}, {"users": 1, "events": 2}]
    with pytest.raises(ManifestError, match="rows_kept == events in sequences .* fails"):
        check_counts(read, bucketed, lost)
    # Cold-item training events left out (the cold-item protocol) are accounted for.
    cold = [{"users": 2, "events": 3}, {"users": 1, "events": 2, "cold_removed": 1}]
    assert check_counts(read, bucketed, cold)["rows_kept"] == 6


def test_check_counts_includes_forgotten_rows():
    read = [{"rows_read": 10, "rows_rejected": 2, "rows_kept": 5, "rows_forgotten": 3,
             "rejected_by_reason": {"bad_timestamp": 2}}]
    bucketed = [{"rows_in": 5, "rows_duplicate": 1, "users": 2}]
    encoded = [{"users": 2, "events": 4}]
    counts = check_counts(read, bucketed, encoded)
    assert counts == {"rows_read": 10, "rows_rejected": 2, "rows_duplicate": 1,
                      "rows_forgotten": 3, "rows_kept": 4}
    uncounted = [{**read[0], "rows_forgotten": 2}]  # a row lost without a reason
    with pytest.raises(ManifestError, match="rows_rejected \\+ rows_forgotten fails"):
        check_counts(uncounted, bucketed, encoded)


# ---------------------------------------------------------------- edge cases


def test_ids_longer_than_max_id_length_are_rejected():
    longest, too_long = "x" * S.MAX_ID_LENGTH, "é" * (S.MAX_ID_LENGTH + 1)  # characters
    rows = [
        ev(longest, longest, T0, session_id=longest, category_id=longest),  # at the limit: kept
        ev(too_long, "i1", T0),
        ev("u1", too_long, T0),
        ev("u1", "i1", T0, session_id=too_long),
        ev("u1", "i1", T0, category_id=too_long),
        ev(None, too_long, T0),  # missing user comes first
        ev(too_long, "i1", T0, etype="teleport"),  # too long comes before the event type
    ]
    kept, rejects = validate(reader_table(rows), ValidateConfig())
    assert kept.num_rows == 1
    assert rejects["reason"].to_pylist() == [S.ID_TOO_LONG] * 4 + [S.MISSING_USER_ID, S.ID_TOO_LONG]


def _featurize_file(tmp_path, name: str, content: bytes | str, fmt: str = "taobao"):
    from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize

    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    config = FeaturizeConfig(input=str(path), format=fmt, output=str(tmp_path / "out"))
    return run_featurize(config, log=lambda _: None, in_process=True)


def test_no_valid_rows_raises_after_writing_the_rejects(tmp_path):
    from seqrec_ray.data.artifacts import load_rejects
    from seqrec_ray.data.pipeline import NoValidRowsError

    rows = "1,2,3,teleport,1511740800\n1,2,3,pv,15\n"
    with pytest.raises(NoValidRowsError, match="no valid rows") as err:
        _featurize_file(tmp_path, "logs.csv", rows)
    assert "2 rows read, 2 rejected (timestamp_out_of_range: 1, unknown_event_type: 1)" in str(err.value)
    assert str(tmp_path / "out" / "rejects") in str(err.value)
    assert load_rejects(str(tmp_path / "out"))["reason"].to_pylist() == [
        "unknown_event_type", "timestamp_out_of_range"]
    assert not (tmp_path / "out" / "manifest.json").exists()  # no artifacts to train on
    assert not (tmp_path / "out" / "_work").exists()


@pytest.mark.parametrize("name, content, fmt", [
    ("empty.csv", "", "taobao"),
    ("blank.csv", "\n\n  \n", "events"),
    ("header.csv", "user_id,item_id,event_type,timestamp\n", "events"),
    ("header-no-newline.csv", "user_id,item_id,event_type,timestamp", "events"),
    ("header.txt", "SessionId\tItemId\tTime\n", "yoochoose"),
])
def test_empty_or_header_only_input_has_no_valid_rows(tmp_path, name, content, fmt):
    from seqrec_ray.data.pipeline import NoValidRowsError

    with pytest.raises(NoValidRowsError, match="no valid rows.*holds no rows"):
        _featurize_file(tmp_path, name, content, fmt)


@pytest.mark.parametrize("name, content, fmt, what", [
    ("random.csv", bytes(range(256)) * 64, "taobao", "binary data (NUL bytes)"),
    ("table.csv", b"PAR1\x15\x04\x15\x00" + b"x" * 100, "events", "Parquet data"),
    ("packed.txt", b"\x1f\x8b\x08\x00" + b"\x01" * 100, "s3rec", "gzip-compressed"),
    ("controls.csv", b"\x01\x02\x03\x04,a,b\n" * 50, "taobao", "control bytes"),
    ("broken.parquet", b"user_id,item_id\n", "events", "unreadable as Parquet"),
])
def test_a_file_that_is_not_text_names_the_file_and_the_format(tmp_path, name, content, fmt, what):
    from seqrec_ray.data.pipeline import InputError

    with pytest.raises(InputError) as err:
        _featurize_file(tmp_path, name, content, fmt)
    message = str(err.value)
    assert str(tmp_path / name) in message and what in message
    assert f"the {fmt} format reads" in message and "Could not skip" not in message


def test_latin1_text_is_still_read_row_by_row(tmp_path):
    manifest = _featurize_file(tmp_path, "latin1.csv", "1,2,3,pv,1511740800\n1,caf\xe9,3,pv,1511740900\n"
                               .encode("latin-1"))
    assert (manifest["rows_kept"], manifest["rejected_by_reason"]) == (1, {"bad_encoding": 1})


def test_too_long_ids_are_counted_and_kept_in_rejects(tmp_path):
    from seqrec_ray.data.artifacts import load_rejects

    manifest = _featurize_file(tmp_path, "logs.csv",
                               f"1,2,3,pv,1511740800\n{'u' * 300},2,3,pv,1511740800\n")
    assert manifest["rejected_by_reason"] == {S.ID_TOO_LONG: 1} and manifest["rows_kept"] == 1
    assert load_rejects(str(tmp_path / "out"))["user_id"].to_pylist() == ["u" * 300]
