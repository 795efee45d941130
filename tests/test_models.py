"""Encoders: causality, no padding leak, encode/score shapes, config validation."""

from __future__ import annotations

import pytest
import torch

from seqrec_ray.models import ENCODERS, EncoderConfig, build_encoder

V, C, T = 30, 6, 8


def make_encoder(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = dict(encoder=name, num_items=V, num_categories=C, max_len=T, dim=16, hidden=24, num_layers=2, num_heads=2)
    cfg.update(kw)
    return build_encoder(EncoderConfig(**cfg)).eval()


def random_features(B: int, lengths: list[int], width: int = T, seed: int = 0) -> dict[str, torch.Tensor]:
    """Left-padded (B, width) features with lengths[b] real events in row b."""
    g = torch.Generator().manual_seed(seed)
    feats = {
        "items": torch.randint(2, V, (B, width), generator=g),
        "event_types": torch.randint(1, 7, (B, width), generator=g),
        "categories": torch.randint(1, C, (B, width), generator=g),
        "gap_buckets": torch.randint(1, 32, (B, width), generator=g),
    }
    pad = torch.arange(width).unsqueeze(0) < (width - torch.tensor(lengths)).unsqueeze(1)  # (B, width)
    return {k: v.masked_fill(pad, 0) for k, v in feats.items()}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_causal_output_at_t_ignores_later_inputs(name):
    enc = make_encoder(name)
    a = random_features(3, [8, 6, 4], seed=1)
    b = {k: v.clone() for k, v in a.items()}
    t = 5
    for k in b:  # new (real) content after position t
        b[k][:, t + 1 :] = random_features(3, [8, 8, 8], seed=2)[k][:, t + 1 :]
    with torch.no_grad():
        ha, hb = enc(a), enc(b)
    assert torch.allclose(ha[:, : t + 1], hb[:, : t + 1], atol=1e-5)
    assert (ha[:, t + 1 :] - hb[:, t + 1 :]).abs().max() > 1e-6  # later positions do see it


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_padding_content_and_extra_left_padding_do_not_leak(name):
    enc = make_encoder(name, max_len=12)
    a = random_features(2, [5, 3], seed=3)
    with torch.no_grad():
        ha = enc(a)
        # Extra left padding (T 8 -> 12) leaves real positions unchanged.
        wider = {k: torch.cat([torch.zeros(2, 4, dtype=torch.long), v], dim=1) for k, v in a.items()}
        assert torch.allclose(enc(wider)[:, 4:][a["items"] != 0], ha[a["items"] != 0], atol=1e-5)
        # Garbage in the side features of pad positions is ignored too.
        noisy = {k: v.clone() for k, v in a.items()}
        for k in ("event_types", "categories", "gap_buckets"):
            noisy[k][a["items"] == 0] = 3
        assert torch.allclose(enc(noisy)[a["items"] != 0], ha[a["items"] != 0], atol=1e-5)
    assert torch.all(ha[a["items"] == 0] == 0)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encode_is_last_position_and_score_is_tied(name):
    enc = make_encoder(name)
    f = random_features(4, [8, 1, 3, 7])
    with torch.no_grad():
        h, u = enc(f), enc.encode(f)
        assert u.shape == (4, 16) and enc.item_embeddings().shape == (V, 16)
        assert torch.allclose(u, h[:, -1])
        assert torch.allclose(enc.score(f), u @ enc.item_embeddings().T)
        # Longer than max_len: encode keeps the last max_len events.
        long = {k: torch.cat([v[:, :3], v], dim=1) for k, v in f.items()}
        assert torch.allclose(enc.encode(long), u, atol=1e-5)


def test_switching_side_features_off_ignores_them():
    enc = make_encoder("lstm", use_event_type=False, use_gap=False, use_category=False)
    f = random_features(2, [8, 4])
    other = dict(f, event_types=f["event_types"].flip(1), categories=f["categories"].flip(1))
    with torch.no_grad():
        assert torch.allclose(enc.encode(f), enc.encode(other))
    assert enc.embed.event_types is None and enc.embed.categories is None and enc.embed.gaps is None
    with torch.no_grad():  # with them on, the same change moves the user vector
        on = make_encoder("lstm")
        assert not torch.allclose(on.encode(f), on.encode(other))


def test_pre_ln_transformer_runs_and_differs_from_post_ln():
    f = random_features(2, [8, 5])
    with torch.no_grad():
        pre, post = make_encoder("transformer", norm_first=True), make_encoder("transformer", norm_first=False)
        assert pre.encode(f).shape == (2, 16)
        assert not torch.allclose(pre.encode(f), post.encode(f))


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(encoder="mamba"), "encoder"),
        (dict(num_items=2), "num_items"),
        (dict(dim=0), "dim"),
        (dict(dropout=1.0), "dropout"),
        (dict(encoder="transformer", dim=10, num_heads=3), "num_heads"),
    ],
)
def test_config_errors_name_the_bad_value(kw, word):
    base = dict(encoder="lstm", num_items=V)
    base.update(kw)
    with pytest.raises(ValueError, match=word):
        EncoderConfig(**base)


def test_registry_is_explicit():
    assert set(ENCODERS) == {"lstm", "gru", "transformer"}
    assert type(make_encoder("gru").rnn).__name__ == "GRU" and type(make_encoder("lstm").rnn).__name__ == "LSTM"
