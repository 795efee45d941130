"""The seams between stages: what each side assumes of the other, checked with real parts.

- ``seqrec_ray.models`` is a library of torch and the standard library only (no ray, no
  numpy, no I/O), and its copies of the contract constants agree with ``schema``;
- train/serve parity: a user's events read back from the store that featurize loaded and
  turned into model inputs by the serving code equal that user's featurized sequence,
  position by position (so a served model sees what it was trained on).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

from seqrec_ray import schema as S
from seqrec_ray.models import config as model_config
from seqrec_ray.store.base import StoredEvent

MODELS_DIR = REPO_ROOT / "seqrec_ray" / "models"
ALLOWED_TOP_LEVEL = {"torch", "__future__", *sys.stdlib_module_names}


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file (relative imports stay inside models)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_model_modules_import_only_torch_and_the_standard_library(path):
    outside = _imported_modules(path) - ALLOWED_TOP_LEVEL
    assert not outside, f"{path.name} imports {sorted(outside)}"


def test_importing_the_models_loads_no_ray_and_nothing_of_seqrec_outside_models():
    code = ("import sys, seqrec_ray.models, seqrec_ray.models.scoring, seqrec_ray.models.losses; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') "
            "or (m.startswith('seqrec_ray.') and not m.startswith('seqrec_ray.models'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"


def test_the_models_copies_of_contract_constants_agree_with_schema():
    assert model_config.PAD_INDEX == S.PAD_INDEX
    assert model_config.OOV_INDEX == S.OOV_INDEX
    assert model_config.FIRST_ITEM_INDEX == S.FIRST_ID_INDEX
    assert model_config.NUM_EVENT_TYPES == S.NUM_EVENT_TYPE_INDICES
    assert model_config.NUM_GAP_BUCKETS == S.NUM_GAP_BUCKETS
    assert model_config.SEQUENCE_FEATURES == S.SEQUENCE_FEATURES


def _parity_log() -> list[StoredEvent]:
    """A small log with what makes parity hard: items rare enough to be OOV, events without
    a category (their item's is used) or with a category the item does not usually have,
    equal timestamps (input order decides), gaps from a second to weeks, every event type."""
    rng = np.random.default_rng(7)
    events = []
    for u in range(40):
        t = 1.7e9 + u * 1000.0
        for j in range(int(rng.integers(3, 30))):
            item = int(rng.zipf(1.6)) % 60
            category = None if j % 5 == 0 else (f"c{item % 7}" if j % 7 else f"c{(item + 1) % 7}")
            events.append(StoredEvent(user_id=f"u{u}", item_id=f"i{item}", event_type=S.EVENT_TYPES[j % 6],
                                      timestamp=t, category_id=category,
                                      query=f"c{item % 7}" if S.EVENT_TYPES[j % 6] == "search" else None))
            t += float(rng.choice([0.0, 1.0, 45.0, 3600.0, 86_400.0 * 9]))
    return events


def test_served_features_equal_the_featurized_sequence_position_by_position(tmp_path):
    from seqrec_ray.data.artifacts import load_sequences
    from seqrec_ray.data.pipeline import FeaturizeConfig, featurize_in_process
    from seqrec_ray.data.vocab import VocabConfig, load_vocab
    from seqrec_ray.serve.features import history_features
    from seqrec_ray.store import open_store

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    config = FeaturizeConfig(input="-", format="events", output="-", store=store_url,
                             vocab=VocabConfig(min_item_count=3))
    featurize_in_process(_parity_log(), str(tmp_path / "artifacts"), config)
    vocab = load_vocab(str(tmp_path / "artifacts"))
    sequences = {row["user_id"]: row for row in load_sequences(str(tmp_path / "artifacts")).to_pylist()}
    oov_positions = 0
    with open_store(store_url) as store:
        for user, row in sequences.items():
            history = [e.as_dict() for e in store.get_history(user, 1000)]
            served = history_features(history, vocab, max_len=1000)
            for name in S.SEQUENCE_FEATURES:
                assert served[name].tolist() == list(row[name]), f"{user} {name}"
            oov_positions += int((served["items"] == S.OOV_INDEX).sum())
    assert len(sequences) == 40 and oov_positions > 0  # the rare-item rule was exercised
