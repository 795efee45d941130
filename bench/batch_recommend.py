"""Batch-recommend benchmark: users/s of the Ray Data actor pool against the in-process
encoder+ranker loop on one core (torch.set_num_threads(1)), same data, same run.

    python bench/batch_recommend.py                                  # Amazon Beauty x 4 = 89,452 users
    python bench/batch_recommend.py --data out/beauty --checkpoint runs/beauty/best

Without --data, Amazon Beauty (../shared/data) is featurized into a temporary directory;
without --checkpoint, a freshly initialised model of --model with the training defaults
is saved there (inference cost does not depend on the weights). --tile repeats every user
under new ids so the job is long enough to measure throughput, not start-up. Both paths do the same
work end to end: read the sequences, load the checkpoint, encode, rank, write Parquet.
The Ray figure includes starting the actor pool; Ray's own start (ray.init) is reported
apart. Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BEAUTY = REPO_ROOT.parent / "shared" / "data" / "amazon-beauty" / "Beauty.txt"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="artifacts directory (default: featurize Amazon Beauty into a temp dir)")
    p.add_argument("--checkpoint", help="checkpoint directory (default: an untrained --model checkpoint)")
    p.add_argument("--model", default="lstm", help="lstm | gru | transformer, for the default checkpoint")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--num-actors", type=int, default=2)
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--tile", type=int, default=4, help="repeat every user this many times (new ids), default 4")
    args = p.parse_args(argv)
    if min(args.k, args.batch_size, args.num_actors, args.tile) < 1 or args.cpus_per_actor <= 0:
        p.error("--k, --batch-size, --num-actors and --tile must be >= 1 and --cpus-per-actor > 0")
    if args.data is None and not BEAUTY.exists():
        p.error(f"no --data given and {BEAUTY} is missing")
    return args


def featurize_beauty(out_dir: Path) -> Path:
    from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize

    started = time.perf_counter()
    run_featurize(FeaturizeConfig(input=str(BEAUTY), format="s3rec", output=str(out_dir)), log=lambda line: None)
    print(f"featurized {BEAUTY.name} in {time.perf_counter() - started:.1f}s -> {out_dir}", file=sys.stderr)
    return out_dir


def tile_users(data: Path, times: int, out_dir: Path) -> Path:
    """A copy of the artifacts whose sequences hold every user ``times`` times (ids suffixed
    ``#t``), one Parquet part per copy: a bigger batch job on the same vocabulary."""
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from seqrec_ray.data.artifacts import load_sequences

    sequences = load_sequences(str(data))
    shutil.copytree(data / "vocab", out_dir / "vocab")
    shutil.copy(data / "manifest.json", out_dir / "manifest.json")
    (out_dir / "sequences").mkdir()
    for t in range(times):
        users = pc.binary_join_element_wise(sequences["user_id"], pa.scalar(str(t)), "#")
        pq.write_table(sequences.set_column(0, "user_id", users), out_dir / "sequences" / f"part-{t:05d}.parquet")
    return out_dir


def untrained_checkpoint(data: Path, model: str, out_dir: Path) -> Path:
    import dataclasses

    from seqrec_ray.data.artifacts import load_manifest
    from seqrec_ray.models import build_encoder
    from seqrec_ray.train.checkpoint import save_checkpoint
    from seqrec_ray.train.config import TrainConfig

    config = TrainConfig(model=model)
    encoder = build_encoder(config.encoder_config(load_manifest(str(data))["vocab_sizes"]))
    return save_checkpoint(out_dir, encoder, dataclasses.replace(config, run_name="bench-untrained"), data,
                           {"epoch": 0, "note": "untrained: for throughput only"})


def in_process(config) -> dict:
    """The same Recommender, one thread, one process; parquet written like the Ray path."""
    import pyarrow.parquet as pq
    import torch

    from seqrec_ray.train.batch_inference import Recommender, iter_sequence_batches

    torch.set_num_threads(1)
    started = time.perf_counter()
    recommender = Recommender(config.checkpoint, config.k, config.exclude_seen, torch_threads=1)
    tables = [recommender(batch) for batch in iter_sequence_batches(config.data, config.batch_size)]
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    users = 0
    for i, table in enumerate(tables):
        pq.write_table(table, out / f"part-{i:05d}.parquet")
        users += table.num_rows
    seconds = time.perf_counter() - started
    return {"users": users, "seconds": seconds, "users_per_s": users / seconds}


def main(argv=None) -> int:
    args = parse_args(argv)
    import ray

    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.train.batch_inference import BatchRecommendConfig, run_batch_recommend

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        # address="local": a fresh instance even when another Ray runs on this machine.
        init_ray("local", int(args.num_actors * args.cpus_per_actor + 0.999) + 1, log_to_driver=False)
        init_s = time.perf_counter() - started
        try:
            data = Path(args.data) if args.data else featurize_beauty(tmp / "artifacts")
            checkpoint = Path(args.checkpoint) if args.checkpoint else untrained_checkpoint(data, args.model, tmp / "ckpt")
            if args.tile > 1:
                data = tile_users(data, args.tile, tmp / "tiled")

            def config(name: str) -> BatchRecommendConfig:
                return BatchRecommendConfig(data=str(data), checkpoint=str(checkpoint), output=str(tmp / name), k=args.k,
                                            batch_size=args.batch_size, num_actors=args.num_actors,
                                            cpus_per_actor=args.cpus_per_actor)

            config("ray").check_paths()
            model = json.loads((checkpoint / "model.json").read_text())["encoder"]
            local = in_process(config("local"))
            remote = run_batch_recommend(config("ray"), log=lambda line: print(line, file=sys.stderr))
        finally:
            ray.shutdown()
    ratio = remote["users_per_s"] / local["users_per_s"]
    print(f"model: {model}, k={args.k}, batch {args.batch_size}, {os.cpu_count()} CPUs here")
    print(f"in-process, 1 thread : {local['users']:>7} users in {local['seconds']:7.2f}s = {local['users_per_s']:9.1f} users/s")
    print(f"Ray, {args.num_actors} actors x {args.cpus_per_actor:g} CPU: {remote['users']:>7} users in "
          f"{remote['seconds']:7.2f}s = {remote['users_per_s']:9.1f} users/s (ray.init {init_s:.1f}s not included)")
    print(f"ratio Ray / in-process: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
