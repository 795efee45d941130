"""Item content and item cold start: the catalogue artifact, content-aware item vectors,
the cold-item protocol, vocabulary growth and ``--init-from`` (no Ray: the in-process
featurize and training paths, which share every pass and step with the Ray ones)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_dataset

from seqrec_ray.data.artifacts import load_sequences
from seqrec_ray.data.catalogue import TokenConfig, item_tokens, load_catalogue, load_catalogue_rejects
from seqrec_ray.data.pipeline import featurize_in_process
from seqrec_ray.data.vocab import load_vocab
from seqrec_ray.models import EncoderConfig, build_encoder
from seqrec_ray.sim.demo_shop import DemoShop
from seqrec_ray.train.baselines import ContentScorer, train_item_counts
from seqrec_ray.train.config import TrainConfig

SHOP = DemoShop(users=40, categories=4, items_per_category=8, events_per_user=10)


def _catalogue(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(line + "\n" for line in extra_lines))
    return path


def _train(artifacts: Path, out: Path, epochs: int = 3, **options) -> Path:
    from seqrec_ray.train.loop import run_in_process

    fields = dict(model="gru", dim=16, hidden=32, epochs=epochs, batch_size=16, lr=0.01, max_len=10, patience=0,
                  eval_batch_size=64, run_name="content-test", torch_threads=1, content_buckets=2048, max_item_tokens=8)
    config = TrainConfig(**{**fields, **options})
    return Path(run_in_process(config, artifacts, out, progress=False)["best_checkpoint"])


def test_catalogue_items_join_the_vocabulary_and_bad_rows_are_quarantined(tmp_path):
    rows = SHOP.catalogue() + [SHOP.item_row(1, "listed-not-sold")]
    items = _catalogue(tmp_path / "items.jsonl", rows + [{"item_id": "item-0-1", "title": "again"},
                                                         {"item_id": "cheap", "price": -2.0}],
                       extra_lines=("{not json", '["a list"]'))
    manifest = featurize_in_process(SHOP.events(), str(tmp_path / "a"), items=str(items), num_buckets=1)
    summary = manifest["catalogue"]
    assert summary["rows_read"] == len(rows) + 4 and summary["rows_kept"] == len(rows)
    assert summary["rejected_by_reason"] == {"bad_price": 1, "duplicate_item_id": 1, "malformed_row": 2}
    assert summary["items_not_in_log"] == 1
    rejects = load_catalogue_rejects(str(tmp_path / "a"))
    assert sorted(rejects["reason"].to_pylist()) == ["bad_price", "duplicate_item_id", "malformed_row", "malformed_row"]
    assert "{not json" in rejects["raw"].to_pylist()
    vocab = load_vocab(str(tmp_path / "a"))
    sold = {e.item_id for e in SHOP.events()}
    assert vocab.num_items == 2 + len(sold) + 1
    new = vocab.item_index("listed-not-sold")
    assert new == vocab.num_items - 1 and vocab.item_counts[new] == 0  # after every logged item
    assert vocab.category_raw_ids[vocab.item_category[new]] == "cat-1"
    stored = load_catalogue(str(tmp_path / "a"))
    assert stored.num_rows == len(rows)
    assert all(vocab.item_index(r) == i for r, i in zip(stored["item_id"].to_pylist(), stored["index"].to_pylist()))
    # The catalogue is part of the data: other content is another data_version.
    other = _catalogue(tmp_path / "other.jsonl", [dict(r, title="changed") for r in rows])
    again = featurize_in_process(SHOP.events(), str(tmp_path / "b"), items=str(other), num_buckets=1)
    assert again["data_version"] != manifest["data_version"]


def test_a_catalogue_without_a_usable_row_is_an_error_naming_it(tmp_path):
    from seqrec_ray.data.catalogue import CatalogueError

    items = _catalogue(tmp_path / "items.jsonl", [{"item_id": "x", "price": -1.0}])
    with pytest.raises(CatalogueError, match="items.jsonl: no usable catalogue row"):
        featurize_in_process(SHOP.events(), str(tmp_path / "a"), items=str(items), num_buckets=1)


def test_the_cold_item_protocol_removes_only_training_events_of_the_picked_items(tmp_path):
    plain = featurize_in_process(SHOP.events(), str(tmp_path / "plain"), num_buckets=1)
    cold = featurize_in_process(SHOP.events(), str(tmp_path / "cold"), num_buckets=1,
                                sequence=_split(cold_items=0.25, cold_seed=3))
    removed = cold["cold_item_train_events_removed"]
    assert removed > 0 and cold["rows_kept"] == plain["rows_kept"]
    assert cold["events_in_sequences"] == plain["events_in_sequences"] - removed
    assert cold["split"] == {"protocol": "leave_one_out", "cold_items": 0.25, "cold_seed": 3}
    vocab = load_vocab(str(tmp_path / "cold"))
    counts = train_item_counts(load_sequences(str(tmp_path / "cold")), vocab.num_items)
    no_train = {vocab.item_raw_ids[i] for i in np.flatnonzero(counts == 0) if i >= 2}
    assert 0 < len(no_train) < vocab.num_items - 2
    # Valid and test events are untouched: the same targets as without the protocol.
    plain_seq, cold_seq = load_sequences(str(tmp_path / "plain")), load_sequences(str(tmp_path / "cold"))
    plain_vocab = load_vocab(str(tmp_path / "plain"))
    for split in (1, 2):
        assert _targets(plain_seq, plain_vocab, split) == _targets(cold_seq, vocab, split)
    again = featurize_in_process(SHOP.events(), str(tmp_path / "again"), num_buckets=1,
                                 sequence=_split(cold_items=0.25, cold_seed=3))
    assert again["cold_item_train_events_removed"] == removed  # the same items every run


def _split(**fields):
    from seqrec_ray.data.sequences import SequenceConfig
    from seqrec_ray.data.splits import SplitConfig

    return SequenceConfig(split=SplitConfig(**fields))


def _targets(sequences, vocab, split: int) -> dict[str, str]:
    out = {}
    for row in sequences.to_pylist():
        for item, s in zip(row["items"], row["splits"]):
            if s == split:
                out[row["user_id"]] = vocab.item_raw_ids[item]
    return out


def test_content_gives_an_item_never_seen_in_training_a_finite_history_dependent_score():
    config = EncoderConfig("transformer", num_items=8, dim=16, hidden=32, content_fields=("category", "brand"),
                           content_buckets=512, max_item_tokens=4, id_dropout=0.2)
    torch.manual_seed(0)
    model = build_encoder(config)
    rows = [{}, {}] + [{"category_id": f"c{i % 2}", "brand": f"b{i % 2}"} for i in range(6)]
    tokens = torch.from_numpy(item_tokens(rows, TokenConfig(fields=config.content_fields, buckets=512, max_tokens=4)))
    has_id = torch.tensor([True] * 7 + [False])  # item 7: in the catalogue only, never trained
    model.embed.content.set_items(tokens, has_id)
    model.eval()
    histories = {"c0": torch.tensor([[2, 4, 6]]), "c1": torch.tensor([[3, 5, 3]])}
    scores = {k: model.score({"items": v})[0, 7] for k, v in histories.items()}
    assert all(torch.isfinite(s) for s in scores.values()) and scores["c0"] != scores["c1"]
    # Its vector is the OOV row plus its content: no ID row of its own is ever read.
    expected = model.embed.items.weight[1] + model.embed.content(torch.tensor([7]))[0]
    assert torch.allclose(model.item_embeddings()[7], expected)
    with torch.no_grad():
        model.embed.items.weight[7].fill_(100.0)
    assert torch.allclose(model.item_embeddings()[7], expected)
    # A live item appended by content only scores like a catalogue-only item with the same content.
    first = model.embed.content.extend(tokens[7:8])
    assert first == 8 and torch.allclose(model.item_embeddings()[8], expected)


def test_id_dropout_reads_known_items_as_oov_in_training_only():
    config = EncoderConfig("gru", num_items=50, dim=8, hidden=8, content_fields=("category",), content_buckets=64,
                           max_item_tokens=2, id_dropout=0.5)
    content = build_encoder(config).embed.content
    idx = torch.arange(2, 50).repeat(40)
    content.train()
    dropped = (content.id_rows(idx) == 1).float().mean().item()
    assert 0.4 < dropped < 0.6
    content.eval()
    assert torch.equal(content.id_rows(idx), idx)
    assert content.id_rows(torch.tensor([0])).item() == 0  # padding stays padding


def test_a_content_model_trains_and_its_checkpoint_carries_the_item_tokens(tmp_path):
    from seqrec_ray.train.checkpoint import load_checkpoint

    items = _catalogue(tmp_path / "items.jsonl", SHOP.catalogue())
    featurize_in_process(SHOP.events(), str(tmp_path / "a"), items=str(items), num_buckets=1)
    ckpt = _train(tmp_path / "a", tmp_path / "run")
    loaded = load_checkpoint(ckpt)
    assert loaded.model_config.content_fields == ("category", "brand", "price", "attributes", "title")
    tokens = loaded.model.embed.content.item_tokens
    vocab = load_vocab(str(tmp_path / "a"))
    same = [vocab.item_index(f"item-2-{j}") for j in range(3)]
    shared = set(tokens[same[0]].tolist()) & set(tokens[same[1]].tolist()) - {0}
    assert len(shared) >= 3  # category, brand, price, attributes of the same category
    none = _train(tmp_path / "a", tmp_path / "run-ids", epochs=1, item_content="none")
    assert load_checkpoint(none).model.embed.content is None


def test_the_content_baseline_prefers_items_sharing_the_last_items_content(tmp_path):
    rows = [{}, {}, {"category_id": "x", "brand": "p"}, {"category_id": "x", "brand": "q"},
            {"category_id": "y", "brand": "p"}, {"category_id": "x", "brand": "p"}]
    tokens = item_tokens(rows, TokenConfig(fields=("category", "brand")))
    scorer = ContentScorer(tokens, np.array([0, 0, 5, 9, 1, 0]))
    scores = scorer({"items": torch.tensor([[0, 3, 2]])})[0]  # last item: 2 (x, p)
    assert scores[5] > scores[3] > scores[4]  # both tokens > one (popular) > one (rare)
    assert 2.0 <= scores[5] < 3.0 and 1.0 <= scores[3] < 2.0


def test_vocabulary_growth_keeps_old_indices_and_init_from_grows_the_tables(tmp_path):
    from seqrec_ray.train.checkpoint import load_checkpoint

    day1 = DemoShop(users=40, categories=3, items_per_category=8, events_per_user=10)
    day2 = DemoShop(users=40, categories=4, items_per_category=8, events_per_user=10, seed=1)
    items1 = _catalogue(tmp_path / "items1.jsonl", day1.catalogue())
    items2 = _catalogue(tmp_path / "items2.jsonl", day2.catalogue())
    first = featurize_in_process(day1.events(), str(tmp_path / "day1"), items=str(items1), num_buckets=1)
    second = featurize_in_process(day2.events(), str(tmp_path / "day2"), items=str(items2), num_buckets=1,
                                  base_vocab=str(tmp_path / "day1"))
    old, new = load_vocab(str(tmp_path / "day1")), load_vocab(str(tmp_path / "day2"))
    assert new.item_raw_ids[: old.num_items] == old.item_raw_ids and new.num_items > old.num_items
    assert new.category_raw_ids[: old.num_categories] == old.category_raw_ids
    assert first["data_version"] != second["data_version"]
    ckpt1 = _train(tmp_path / "day1", tmp_path / "run1", epochs=2)
    with pytest.raises(ValueError, match="not the first items"):  # a vocabulary built afresh
        featurize_in_process(day2.events(), str(tmp_path / "fresh"), items=str(items2), num_buckets=1)
        _train(tmp_path / "fresh", tmp_path / "bad", epochs=1, init_from=str(ckpt1))
    ckpt2 = _train(tmp_path / "day2", tmp_path / "run2", epochs=1, init_from=str(ckpt1), lr=1e-9)
    before, after = load_checkpoint(ckpt1).model, load_checkpoint(ckpt2).model
    rows = before.embed.items.weight.shape[0]
    assert after.embed.items.weight.shape[0] == new.num_items
    assert torch.allclose(after.embed.items.weight[:rows], before.embed.items.weight[:rows], atol=1e-5)
    assert torch.allclose(after.embed.content.tokens.weight, before.embed.content.tokens.weight, atol=1e-5)
    with pytest.raises(ValueError, match="a different model"):
        _train(tmp_path / "day2", tmp_path / "run3", epochs=1, init_from=str(ckpt1), item_content="none")


def test_catalogue_readers_feed_featurize_on_the_real_beauty_file(tmp_path):
    from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize

    data = shared_dataset("amazon-beauty")
    lines = (data / "Beauty.txt").read_text().splitlines()[:300]
    (tmp_path / "Beauty.txt").write_text("\n".join(lines) + "\n")
    config = FeaturizeConfig(input=str(tmp_path / "Beauty.txt"), format="s3rec", output=str(tmp_path / "a"),
                             num_buckets=1, items=str(data / "Beauty_item2attributes.json"),
                             items_format="s3rec-attributes")
    manifest = run_featurize(config, log=lambda _: None, in_process=True)
    sold = {item for line in lines for item in line.split()[1:]}
    assert manifest["catalogue"]["rows_kept"] == 12101 and manifest["catalogue"]["rows_rejected"] == 0
    assert manifest["catalogue"]["items_not_in_log"] == 12101 - len(sold)
    vocab = load_vocab(str(tmp_path / "a"))
    assert vocab.num_items == 2 + 12101  # every listed item is rankable, sold or not
    assert all(vocab.item_counts[vocab.item_index(i)] > 0 for i in sold)
    table = load_catalogue(str(tmp_path / "a"))
    assert table.num_rows == 12101 and table["attributes"].null_count == 0


def test_the_content_loss_adds_the_same_cross_entropy_over_the_content_only_table():
    from seqrec_ray.models.losses import FullSoftmaxTask, SampledSoftmaxTask, proposal_distribution

    config = EncoderConfig("gru", num_items=10, dim=8, hidden=8, content_fields=("category",), content_buckets=64,
                           max_item_tokens=2)
    torch.manual_seed(0)
    model = build_encoder(config)
    rows = [{}, {}] + [{"category_id": f"c{i % 3}"} for i in range(8)]
    tokens = torch.from_numpy(item_tokens(rows, TokenConfig(fields=("category",), buckets=64, max_tokens=2)))
    model.embed.content.set_items(tokens, torch.tensor([True] * 9 + [False]))
    model.eval()
    batch = {"items": torch.tensor([[0, 2, 5, 3]]), "targets": torch.tensor([[0, 5, 3, 8]])}
    table, content = model.item_and_content_embeddings()
    assert torch.allclose(table, model.item_embeddings())
    assert torch.allclose(content[9], model.embed.items.weight[1] + model.embed.content(torch.tensor([9]))[0])
    assert torch.allclose(content[4] - content[7], torch.zeros(8), atol=1e-6)  # same content, same vector
    plain, weighted = FullSoftmaxTask(model)(batch), FullSoftmaxTask(model, content_weight=0.5)(batch)
    h = model(batch)[0, 1:]  # positions with targets
    logits = h @ content.T
    logits[:, :2] = float("-inf")
    logits[:, 9] = float("-inf")  # catalogue-only: no negative
    expected = plain + 0.5 * torch.nn.functional.cross_entropy(logits, torch.tensor([5, 3, 8]))
    assert torch.allclose(weighted, expected, atol=1e-5) and weighted > plain
    q = proposal_distribution(10, "uniform", None)
    sampled = SampledSoftmaxTask(model, q, 16, seed=0, content_weight=1.0)(batch, negatives=torch.arange(2, 9))
    assert torch.isfinite(sampled) and sampled > SampledSoftmaxTask(model, q, 16, seed=0)(batch, negatives=torch.arange(2, 9))
    with pytest.raises(ValueError, match="content_weight needs a model with item content"):
        FullSoftmaxTask(build_encoder(EncoderConfig("gru", num_items=10, dim=8, hidden=8)), content_weight=1.0)
