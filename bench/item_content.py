"""What item content costs in training time: epochs with content embeddings vs ID-only.

    python bench/item_content.py --data runs/beauty-items            # featurized with --items
    python bench/item_content.py --data runs/beauty-items --model lstm --epochs 4

Trains the same model, data, seed and thread count in-process (the loop every Ray Train
worker runs) twice: ``--item-content none`` (the baseline) and ``all``, ``--epochs`` each
with no early stopping, and prints per-epoch train seconds, the median of each (the first
epoch is warm-up and left out), their ratio, and each run's validation NDCG@10 per epoch.
Run it on a quiet machine: the ratio means something only when both runs had the same CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ContentBenchConfig:
    data: str
    model: str = "transformer"
    epochs: int = 3
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        manifest = Path(self.data) / "manifest.json"
        if not manifest.is_file():
            raise ValueError(f"--data {self.data}: not a featurize artifacts directory (no manifest.json)")
        if json.loads(manifest.read_text()).get("catalogue") is None:
            raise ValueError(f"--data {self.data} was featurized without --items: nothing to compare")
        if self.epochs < 2:
            raise ValueError(f"epochs must be >= 2 (the first is warm-up), got {self.epochs}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def run(config: ContentBenchConfig, item_content: str, out: Path) -> list[dict]:
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    train = TrainConfig(model=config.model, epochs=config.epochs, patience=0, seed=config.seed,
                        torch_threads=config.threads, item_content=item_content, run_name=f"bench-{item_content}")
    print(f"[bench] {config.model}, item content {item_content!r}, {config.epochs} epochs ...", file=sys.stderr, flush=True)
    run_in_process(train, config.data, out, progress=True)
    return json.loads((out / "curves.json").read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="transformer")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    try:
        config = ContentBenchConfig(a.data, a.model, a.epochs, a.threads)
    except ValueError as err:
        p.error(str(err))
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-content-") as tmp:
        runs = {name: run(config, name, Path(tmp) / name) for name in ("none", "all")}
    print(f"\nitem content vs ID-only, {config.model} default knobs, {config.threads} torch thread(s), "
          f"in-process; load {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after "
          f"({time.time() - started:.0f} s)")
    medians = {}
    for name, history in runs.items():
        seconds = [round(r["seconds"], 1) for r in history]
        medians[name] = statistics.median(seconds[1:])
        ndcg = [round(r["valid"]["ndcg@10"], 4) for r in history]
        print(f"  item content {name:4s}: train epoch s {seconds}  median (after warm-up) {medians[name]:.1f}  "
              f"valid NDCG@10 per epoch {ndcg}")
    print(f"  content / ID-only train-epoch time: {medians['all'] / medians['none']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
