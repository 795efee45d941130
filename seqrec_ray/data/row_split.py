"""A random row split of a text log with a header line (Best Buy's protocol: a random
20 % of the rows kept apart for evaluation), reproducible from its seed."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowSplitConfig:
    input: str
    output: str
    test_share: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.test_share < 1.0:
            raise ValueError(f"test_share must be in (0, 1), got {self.test_share!r}")
        if not os.path.isfile(self.input):
            raise FileNotFoundError(f"input {self.input!r} is not a file")


def split_rows(config: RowSplitConfig) -> dict:
    """OUTPUT/train.EXT and OUTPUT/test.EXT, each with the header; every row lands in
    exactly one, a seeded ``test_share`` of them in test. Returns the row counts."""
    with open(config.input, encoding="utf-8", newline="") as f:
        header, *rows = f.readlines()
    rows = [r if r.endswith("\n") else r + "\n" for r in rows if r.strip()]
    in_test = np.random.default_rng(config.seed).random(len(rows)) < config.test_share
    ext = os.path.splitext(config.input)[1] or ".txt"
    os.makedirs(config.output, exist_ok=True)
    counts = {}
    for name, keep in (("train", ~in_test), ("test", in_test)):
        path = os.path.join(config.output, f"{name}{ext}")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(header if header.endswith("\n") else header + "\n")
            f.writelines(r for r, k in zip(rows, keep) if k)
        counts[name] = int(keep.sum())
    return {**counts, "seed": config.seed, "test_share": config.test_share, "output": config.output}
