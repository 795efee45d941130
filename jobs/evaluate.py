"""Evaluate a checkpoint on a featurize artifacts directory, with baselines.

    python jobs/evaluate.py --data DIR --checkpoint OUT/best [--split test|valid]
        [--mask-history | --no-mask-history] [--sampled-negatives FILE] [--output FILE]

Prints a table (model, popularity, most-recent) of full-ranking HR/NDCG/MRR@K and
catalogue coverage; with --sampled-negatives (``user neg1 ... neg99`` lines, raw ids, as
S3-Rec's LastFM_sample.txt) also metrics among those fixed candidates, labelled sampled.
--output writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="featurize artifacts directory the checkpoint was trained on")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (e.g. OUT/best)")
    p.add_argument("--split", default="test", help="test | valid (default test)")
    p.add_argument("--mask-history", action=argparse.BooleanOptionalAction, default=True,
                   help="mask every earlier item of the user (S3-Rec protocol; default on)")
    p.add_argument("--sampled-negatives", help="fixed negatives file: also report sampled metrics")
    p.add_argument("--ks", default="5,10,20", help="cut-offs, comma-separated (default 5,10,20)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--no-baselines", action="store_true", help="skip the popularity / most-recent rows")
    p.add_argument("--output", help="write the metrics as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from seqrec_ray.train.evaluation import EvaluateConfig, format_table, run_evaluation

    try:
        ks = tuple(int(k) for k in args.ks.split(","))
    except ValueError:
        print(f"error: --ks must be comma-separated integers, got {args.ks!r}", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        config = EvaluateConfig(
            data_dir=args.data, checkpoint_dir=args.checkpoint, split=args.split, mask_history=args.mask_history,
            sampled_negatives=args.sampled_negatives, ks=ks, batch_size=args.batch_size, device=device,
            baselines=not args.no_baselines,
        )
        result = run_evaluation(config)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
