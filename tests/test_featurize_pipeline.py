"""The featurize pipeline on a real local Ray, on real datasets and on broken files."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import shared_dataset

from seqrec_ray import schema as S
from seqrec_ray.data import artifacts as A
from seqrec_ray.data import events as E
from seqrec_ray.data import readers
from seqrec_ray.data import sequences as Q
from seqrec_ray.data import vocab as V
from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize
from seqrec_ray.data.sequences import SequenceConfig
from seqrec_ray.data.splits import SplitConfig
from seqrec_ray.data.validate import ValidateConfig, validate
from seqrec_ray.data.vocab import load_vocab
from seqrec_ray.store import open_store


def quiet(_line: str) -> None:
    pass


def assert_reconciles(manifest: dict) -> None:
    assert manifest["rows_read"] == (manifest["rows_kept"] + manifest["rows_rejected"]
                                     + manifest["rows_duplicate"] + manifest["rows_forgotten"])
    assert sum(manifest["rejected_by_reason"].values()) == manifest["rows_rejected"]


def single_process_sequences(path: str, fmt: str, sequence: SequenceConfig) -> pa.Table:
    """The same stages in one process on the whole log: what the buckets must add up to."""
    kept, _ = validate(readers.read_events(path, fmt), ValidateConfig.for_format(fmt))
    kept = kept.append_column(E.ORDER, E.order_keys(0, 0, kept.num_rows))
    events, _ = E.drop_duplicates(E.sort_events(kept))
    events = E.sessionize(events, sequence.session_gap_seconds)
    items, cats = V.build_vocabs(V.count_pairs(events), V.VocabConfig())
    return Q.encode_sequences(Q.build_raw_sequences(events, sequence), items, cats)


def test_taobao_end_to_end_matches_one_process_and_loads_store(ray_local, tmp_path):
    data = shared_dataset("taobao-userbehavior")
    sequence = SequenceConfig(max_seq_len=50)
    store_path = tmp_path / "store.db"
    config = FeaturizeConfig(input=str(data), format="taobao", output=str(tmp_path / "out"),
                             sequence=sequence, num_buckets=5, batch_rows=40_000,
                             store=str(store_path), history_limit=20)
    manifest = run_featurize(config, log=quiet)
    assert manifest == A.load_manifest(config.output)
    assert_reconciles(manifest)
    assert manifest["rows_read"] == readers.read_events(str(data), "taobao").num_rows
    assert manifest["rejected_by_reason"] == {"timestamp_out_of_range": 1}  # a 1970 row
    assert manifest["rows_duplicate"] > 0  # the three samples overlap

    got = A.load_sequences(config.output).sort_by(S.USER_ID)
    want = single_process_sequences(str(data), "taobao", sequence).sort_by(S.USER_ID)
    assert got.num_rows == manifest["users"] == want.num_rows
    assert got.equals(want)
    profiles = A.load_profiles(config.output)
    assert profiles.num_rows == manifest["users"]
    assert pc.sum(profiles["n_events"]).as_py() == manifest["rows_kept"]
    lengths = pc.list_value_length(got["items"]).to_numpy()
    assert lengths.max() == 50 and lengths.sum() == manifest["events_in_sequences"]
    vocab = load_vocab(config.output)
    assert vocab.num_items == manifest["vocab_sizes"]["items"] == manifest["items"] + 2
    assert A.load_rejects(config.output)["timestamp"].to_pylist() == [15.0]

    heavy = profiles.sort_by([("n_events", "descending")]).slice(0, 1).to_pylist()[0]
    row = got.filter(pc.equal(got[S.USER_ID], heavy[S.USER_ID])).to_pylist()[0]
    with open_store(str(store_path)) as store:
        assert store.stats().users_with_profile == manifest["users"]
        assert store.get_profile(heavy[S.USER_ID])["n_events"] == heavy["n_events"]
        history = store.get_history(heavy[S.USER_ID], 100)
    assert len(history) == min(20, heavy["n_events"])
    assert [e.timestamp for e in history] == row["timestamps"][-len(history):]
    assert [vocab.item_index(e.item_id) for e in history] == row["items"][-len(history):]


def write_broken_input(directory) -> dict[str, str]:
    """A CSV and a Parquet file of events, good rows mixed with bad; returns tag -> reason."""
    directory.mkdir()
    good = "u1,g1,view,1511740800,1.5,\nu1,g2,purchase,1511740900,9.99,\nu2,g1,cart,1511740950,,\n"
    bad = {
        "b1": ",b1,view,1511740800,,",  # missing user
        "b2": "u3,b2,teleport,1511740800,,",
        "b3": "u3,b3,view,yesterday,,",
        "b4": "u3,b4,view,15,,",  # 1970
        "b5": "u3,b5,view,1511740800,-3,",
        "b6": "u3,b6,view,1511740800,cheap,",
        "b7": "u3,b7,view,1511740800,,,EXTRA",
        "b8": "u3,,view,1511740800,,",  # missing item; its tag lives in the reason only
    }
    csv = "user_id,item_id,event_type,timestamp,price,query\n" + good
    csv += "\n".join(bad.values()) + "\n" + "u1,g1,view,1511740800,1.5,\n"  # a duplicate
    (directory / "a.csv").write_text(csv)
    pq.write_table(pa.table({
        "user_id": ["u4", "u4", "u4", None, "u4"],
        "item_id": ["g1", "g3", "g3", "p1", "p2"],
        "event_type": ["search", "click", "click", "view", "fav"],
        "timestamp": [1511741000.0, 1511742000.0, 1511742000.0, 1511741000.0, 4.2e9],
        "query": ["red shoes", None, None, None, None],
    }), directory / "b.parquet")
    reasons = {"b1": "missing_user_id", "b2": "unknown_event_type", "b3": "bad_timestamp",
               "b4": "timestamp_out_of_range", "b5": "negative_price", "b6": "bad_price",
               "b7": "wrong_column_count", "b8": "missing_item_id",
               "p1": "missing_user_id", "p2": "timestamp_out_of_range"}
    return reasons


def test_broken_rows_land_in_rejects_with_their_reason(ray_local, tmp_path):
    expected = write_broken_input(tmp_path / "in")
    config = FeaturizeConfig(input=str(tmp_path / "in"), format="events",
                             output=str(tmp_path / "out"), num_buckets=3)
    manifest = run_featurize(config, log=quiet)
    assert_reconciles(manifest)
    assert manifest["rows_read"] == 12 + 5
    assert manifest["rows_rejected"] == len(expected)
    assert manifest["rows_duplicate"] == 2  # one in the CSV, one in the Parquet file
    assert manifest["rows_kept"] == 5
    assert manifest["rejected_by_reason"] == dict(Counter(expected.values()))
    rejects = A.load_rejects(config.output)
    by_tag = {}
    for row in rejects.to_pylist():
        tag = row["item_id"] or "b8"
        if row["reason"] == "wrong_column_count":
            assert "EXTRA" in row["query"]  # the raw line is kept
        by_tag[tag] = row["reason"]
    assert by_tag == expected
    seqs = {r[S.USER_ID]: r for r in A.load_sequences(config.output).to_pylist()}
    vocab = load_vocab(config.output)
    assert {u: [vocab.item_raw_id(i) for i in r["items"]] for u, r in seqs.items()} == {
        "u1": ["g1", "g2"], "u2": ["g1"], "u4": ["g1", "g3"]}
    assert seqs["u4"]["event_types"] == [S.EVENT_TYPE_INDEX["search"], S.EVENT_TYPE_INDEX["click"]]
    profile = {p[S.USER_ID]: p for p in A.load_profiles(config.output).to_pylist()}
    assert profile["u1"]["mean_price"] == pytest.approx((1.5 + 9.99) / 2)
    assert profile["u4"]["n_search"] == 1 and profile["u4"]["mean_price"] is None


@pytest.mark.parametrize("dataset, filename", [("amazon-beauty", "Beauty.txt"),
                                               ("lastfm", "LastFM.txt")])
def test_leave_one_out_reproduces_the_s3rec_file(ray_local, tmp_path, dataset, filename):
    raw_file = shared_dataset(dataset) / filename
    config = FeaturizeConfig(input=str(raw_file), format="s3rec", output=str(tmp_path / "out"),
                             sequence=SequenceConfig(max_seq_len=1_000_000))
    manifest = run_featurize(config, log=quiet)
    assert_reconciles(manifest)
    lines = [line.split() for line in raw_file.read_text().splitlines() if line.strip()]
    assert manifest["users"] == len(lines) and manifest["rows_duplicate"] == 0
    vocab = load_vocab(config.output)
    rows = {r[S.USER_ID]: r for r in A.load_sequences(config.output).to_pylist()}
    for user, *items in lines:
        row = rows[user]
        assert [vocab.item_raw_id(i) for i in row["items"]] == items
        if len(items) >= 3:
            assert row["splits"] == [0] * (len(items) - 2) + [1, 2]
        else:  # S3-Rec keeps such users; they have no targets
            assert row["splits"] == [0] * len(items)


def test_temporal_split_keeps_the_future_out_of_training(ray_local, tmp_path):
    data = shared_dataset("taobao-userbehavior") / "UserBehavior_head_fattydelivery.csv"
    ts = readers.read_events(str(data), "taobao")[S.TIMESTAMP].to_numpy()
    valid_cutoff, cutoff = (float(np.quantile(ts, q)) for q in (0.7, 0.85))
    split = SplitConfig("temporal", cutoff=cutoff, valid_cutoff=valid_cutoff)
    config = FeaturizeConfig(input=str(data), format="taobao", output=str(tmp_path / "out"),
                             sequence=SequenceConfig(max_seq_len=100_000, split=split))
    manifest = run_featurize(config, log=quiet)
    assert manifest["split"] == {"protocol": "temporal", "cutoff": cutoff,
                                 "valid_cutoff": valid_cutoff}
    seqs = A.load_sequences(config.output)
    times = pc.list_flatten(seqs["timestamps"]).to_numpy()
    splits = pc.list_flatten(seqs["splits"]).to_numpy()
    assert times[splits == 0].max() < valid_cutoff
    assert times[splits == 1].min() >= valid_cutoff and times[splits == 1].max() < cutoff
    assert times[splits == 2].min() >= cutoff
    assert (splits == 2).sum() > 0 and (splits == 1).sum() > 0
    with open(f"{config.output}/manifest.json") as f:
        assert json.load(f)["config"]["sequence"]["split"]["protocol"] == "temporal"
