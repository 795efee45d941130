"""The query-aware model: query tokens, training windows with searches, the joint loss,
learning query -> item through the real featurize and training path, and
jobs/evaluate_search.py on a small log with hand-checked metrics."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize
from seqrec_ray.data.row_split import RowSplitConfig, split_rows
from seqrec_ray.models import EncoderConfig, build_encoder
from seqrec_ray.models.losses import FullSoftmaxTask, SampledSoftmaxTask
from seqrec_ray.models.query import QueryTable, query_hash, query_ngrams, query_token_ids, token_matrix
from seqrec_ray.train.checkpoint import load_checkpoint
from seqrec_ray.train.examples import training_windows
from seqrec_ray.train.loop import TrainConfig, run_in_process
from seqrec_ray.train.search_eval import SearchEvalConfig, run_search_evaluation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
import evaluate_search  # noqa: E402

HEADER = ["user", "sku", "category", "query", "click_time", "query_time"]


def test_query_hash_and_tokens_are_stable_and_typo_tolerant():
    assert query_hash("  Gears of WAR! ") == query_hash("gears of war") > 1
    assert query_hash("gears of war") != query_hash("war of gears") and query_hash("  !! ") == 0
    grams = query_ngrams("Halo 3")
    assert grams == ["w:halo", "w:3", "b:halo 3", "c:<ha", "c:hal", "c:alo", "c:lo>", "c:<3>"]
    right, typo = set(query_token_ids("gears of war", 4096, 64)), set(query_token_ids("geers of war", 4096, 64))
    assert len(right & typo) >= len(right) / 2  # a misspelt word keeps most of its trigrams
    assert query_token_ids("", 4096, 64) == [] and len(query_token_ids("a b c d e f", 4096, 4)) == 4
    assert token_matrix(["halo", None], 4096, 3).tolist()[1] == [0, 0, 0]


def test_query_table_looks_up_hashes_and_leaves_unknown_ones_empty():
    table = QueryTable(max_tokens=2)
    table.set(torch.tensor([30, 10]), torch.tensor([[3, 4], [1, 0]]))
    assert table.lookup(torch.tensor([10, 30, 20, 99])).tolist() == [[1, 0], [3, 4], [0, 0], [0, 0]]
    with pytest.raises(ValueError, match="tokens must be"):
        table.set(torch.tensor([1]), torch.zeros(1, 3, dtype=torch.int64))


def seq_row(uid, items, queries):
    n = len(items)
    return dict(user_id=uid, items=items, event_types=[2] * n, categories=[1] * n,
                gap_buckets=[1] + [3] * (n - 1), splits=[0] * n, queries=queries)


def test_training_windows_carry_target_queries_and_first_searches():
    sequences = pa.Table.from_pylist([
        seq_row("a", [2, 3, 4], [7, 0, 8]),  # searched first event, then a browse, then a search
        seq_row("b", [5], [9]),  # one searched event: a window with no inputs
        seq_row("c", [6], [0]),  # one event, no search: nothing to learn
        seq_row("d", [2, 3], [0, 7]),  # first event not searched
    ])
    rows = training_windows(sequences, max_len=3).to_pylist()
    assert [(r["items"], r["targets"], r["target_queries"], r["first_target"], r["first_query"]) for r in rows] == [
        ([0, 2, 3], [0, 3, 4], [0, 0, 8], 2, 7),
        ([0, 0, 0], [0, 0, 0], [0, 0, 0], 5, 9),
        ([0, 0, 2], [0, 0, 3], [0, 0, 7], 0, 0),
    ]
    # A long sequence: only the oldest window holds the first event.
    long = training_windows(pa.Table.from_pylist([seq_row("e", [2, 3, 4, 5, 6], [7, 0, 0, 0, 0])]), max_len=2)
    assert long.column("first_target").to_pylist() == [2, 0]


def _query_encoder(**kw):
    encoder = build_encoder(EncoderConfig("transformer", num_items=6, dim=8, hidden=16, query_buckets=64,
                                          max_query_tokens=4, **kw))
    encoder.embed.query_table.set(torch.tensor([7, 9]), torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0]]))
    return encoder


@pytest.mark.parametrize("make_task", [lambda e: FullSoftmaxTask(e, mask_history=True),
                                       lambda e: SampledSoftmaxTask(e, torch.full((6,), 0.25), 4, seed=0)])
def test_the_joint_loss_trains_the_query_part_and_always_touches_it(make_task):
    task = make_task(_query_encoder())
    searched = {"items": torch.tensor([[0, 2, 3], [0, 0, 0]]), "targets": torch.tensor([[0, 3, 4], [0, 0, 0]]),
                "target_queries": torch.tensor([[0, 0, 7], [0, 0, 0]]),
                "first_target": torch.tensor([0, 5]), "first_query": torch.tensor([0, 9])}
    plain = {k: v for k, v in searched.items() if k in ("items", "targets")}
    with_search, without = task(searched), task(plain)
    assert torch.isfinite(with_search) and with_search > without  # two search examples add their loss
    with_search.backward()
    assert task.encoder.embed.query.tokens.weight.grad[[1, 2, 3]].abs().sum() > 0
    task.zero_grad()
    # No search in the batch: the query part still gets a (zero) gradient, as DDP needs.
    task({**plain, "target_queries": torch.zeros(2, 3, dtype=torch.int64)}).backward()
    assert task.encoder.embed.query.tokens.weight.grad is not None
    # Only a first-event search: still a finite, positive loss.
    only = {"items": torch.zeros(1, 1, dtype=torch.int64), "targets": torch.zeros(1, 1, dtype=torch.int64),
            "target_queries": torch.zeros(1, 1, dtype=torch.int64),
            "first_target": torch.tensor([5]), "first_query": torch.tensor([9])}
    assert task(only) > 0


def test_encode_uses_the_query_only_where_a_row_has_one():
    encoder = _query_encoder().eval()
    items = torch.tensor([[2, 3], [2, 3], [0, 0]])
    tokens = torch.tensor([[1, 2, 0, 0], [0, 0, 0, 0], [3, 0, 0, 0]])
    plain = encoder.encode({"items": items})
    searched = encoder.encode({"items": items, "query_tokens": tokens})
    assert not torch.allclose(searched[0], plain[0]) and torch.equal(searched[1], plain[1])
    assert torch.equal(plain[2], torch.zeros(8))  # no events: the zero state
    by_hash = encoder.encode({"items": items, "target_query": torch.tensor([7, 0, 9])})
    assert torch.allclose(by_hash, searched)


def _write_clicks(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """Best Buy rows (user, sku, query, click time); the query is typed 5 s before."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for user, sku, query, when in rows:
            writer.writerow([user, sku, "abcat0701002", query, when + ".500", when[:-2] + "00.100"])
    return path


def _featurize(path: Path, out: Path) -> Path:
    run_featurize(FeaturizeConfig(input=str(path), format="bestbuy", output=str(out)), in_process=True)
    return out


def test_the_query_model_learns_which_product_a_query_means(tmp_path):
    # Three products, each searched by its own words, in any order (leave-one-out keeps
    # each shopper's last two for validation and test).
    rows = []
    for u in range(60):
        first, second = ("100", "halo reach"), ("200", "forza motorsport")
        if u % 2:
            first, second = second, first
        for day, (sku, query) in enumerate([first, ("300", "kinect"), second, first]):
            rows.append((f"u{u}", sku, query, f"2011-09-{1 + u % 20:02d} 1{day}:00:30"))
    art = _featurize(_write_clicks(tmp_path / "train.csv", rows), tmp_path / "art")
    config = TrainConfig(model="transformer", dim=16, hidden=32, epochs=25, patience=0, batch_size=32, lr=5e-3)
    run_in_process(config, art, tmp_path / "run", progress=False)
    # The latest epoch: validation (history masked, two of three items in every history)
    # is perfect from the first epoch on, so "best" is epoch 1.
    loaded = load_checkpoint(tmp_path / "run" / "latest")
    model, vocab = loaded.model, loaded.vocab
    assert model.config.uses_queries  # on by itself: the log has queries
    empty = torch.zeros(3, 1, dtype=torch.int64)
    texts = ["halo reach", "frza motorsprt", "kinect"]  # the second misspelt twice
    tokens = token_matrix(texts, model.config.query_buckets, model.config.max_query_tokens)
    with torch.no_grad():
        best = model.score({"items": empty, "query_tokens": tokens})[:, 2:].argmax(1) + 2
    assert [vocab.item_raw_id(int(i)) for i in best] == ["100", "200", "300"]


def test_evaluate_search_on_a_small_log_by_hand(tmp_path, capsys):
    # Training clicks (each shopper at most 2 events, so leave-one-out holds none out):
    # "halo" -> A x3, B x1; "forza" -> C x2. Popularity: A 3, C 2, B 1.
    train = [("t1", "A", "halo", "2011-09-01 10:00:30"), ("t2", "A", "halo", "2011-09-01 11:00:30"),
             ("t3", "A", "halo", "2011-09-02 10:00:30"), ("t4", "B", "halo", "2011-09-02 11:00:30"),
             ("t5", "C", "forza", "2011-09-03 10:00:30"), ("t6", "C", "forza", "2011-09-03 11:00:30")]
    art = _featurize(_write_clicks(tmp_path / "train.csv", train), tmp_path / "art")
    run_in_process(TrainConfig(model="transformer", dim=8, hidden=16, epochs=1), art, tmp_path / "run", progress=False)
    test = _write_clicks(tmp_path / "test.csv", [
        ("u9", "A", "halo", "2011-09-05 10:00:30"), ("u9", "B", "forza", "2011-09-05 11:00:30"),
        ("u8", "B", "halo", "2011-09-05 12:00:30"), ("u7", "C", "zelda", "2011-09-05 13:00:30"),
        ("u6", "Z", "halo", "2011-09-05 14:00:30")])  # Z: never seen, a miss for every ranker
    checkpoint = str(tmp_path / "run" / "latest")  # no shopper has a validation event: no "best"
    result = run_search_evaluation(SearchEvalConfig(str(art), checkpoint, str(test)),
                                   progress=False)
    assert result["test_rows"] == 5 and result["unknown_targets"] == 1 and result["query_model"]
    # Popularity ranks A, C, B: targets A, B, B, C at 0, 2, 2, 1 (and Z nowhere).
    assert result["metrics"]["popularity"]["hr@1"] == pytest.approx(1 / 5)
    assert result["metrics"]["popularity"]["mrr@5"] == pytest.approx((1 + 1 / 3 + 1 / 3 + 1 / 2) / 5)
    # Exact query: halo -> A, B, then C; forza -> C, then A, B; zelda -> popularity:
    # targets at 0, 2, 1, 1.
    assert result["metrics"]["exact query"]["hr@1"] == pytest.approx(1 / 5)
    assert result["metrics"]["exact query"]["mrr@5"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 2) / 5)
    assert result["metrics"]["exact query"]["hr@10"] == pytest.approx(4 / 5)
    # BM25 over past queries: halo matches A and B, A with more weight; forza matches C;
    # zelda matches nothing (popularity): the same ranks as the exact query here.
    assert result["metrics"]["bm25"]["mrr@5"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 2) / 5)
    assert set(result["metrics"]) == {"popularity", "exact query", "bm25", "model, no query",
                                      "model, query only", "model"}
    # The job: the same table, a JSON and a plot.
    code = evaluate_search.main(["--data", str(art), "--checkpoint", checkpoint,
                                 "--test-file", str(test), "--output", str(tmp_path / "report")])
    assert code == 0 and "exact query" in capsys.readouterr().out
    saved = json.loads((tmp_path / "report" / "search_eval.json").read_text())
    assert saved["metrics"]["popularity"] == pytest.approx(result["metrics"]["popularity"])
    assert (tmp_path / "report" / "search_eval.png").stat().st_size > 0
    assert evaluate_search.main(["--data", str(art), "--checkpoint", str(tmp_path / "nope"),
                                 "--test-file", str(test)]) != 0


def test_split_rows_is_a_seeded_partition(tmp_path):
    rows = [(f"u{i}", str(i), "q", "2011-09-01 10:00:30") for i in range(200)]
    source = _write_clicks(tmp_path / "all.csv", rows)
    first = split_rows(RowSplitConfig(str(source), str(tmp_path / "s1"), test_share=0.25, seed=3))
    again = split_rows(RowSplitConfig(str(source), str(tmp_path / "s2"), test_share=0.25, seed=3))
    assert first["train"] + first["test"] == 200 and 25 <= first["test"] <= 75
    lines = {n: (tmp_path / "s1" / f"{n}.csv").read_text().splitlines() for n in ("train", "test")}
    assert lines["train"][0] == lines["test"][0] == ",".join(HEADER)
    assert sorted(lines["train"][1:] + lines["test"][1:]) == sorted(source.read_text().splitlines()[1:])
    assert (tmp_path / "s2" / "test.csv").read_text() == (tmp_path / "s1" / "test.csv").read_text()
    assert again["test"] == first["test"]
    with pytest.raises(ValueError, match="test_share"):
        RowSplitConfig(str(source), str(tmp_path / "x"), test_share=1.0)
