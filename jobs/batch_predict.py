"""Purchase propensity, churn risk and top next-purchase items for every user, as Parquet.

    python jobs/batch_predict.py --data out/taobao --checkpoint runs/taobao/best --output out/predictions
    python jobs/batch_predict.py --data out/taobao --checkpoint runs/taobao/best --output out/p --at 2017-12-03
    ray job submit --working-dir . -- python jobs/batch_predict.py --data /shared/out --checkpoint /shared/ckpt --output /shared/p

The checkpoint must have the propensity / churn heads (train.py --outcome-loss > 0); their
calibration comes with it. Ray Data reads DATA/sequences and runs ``map_batches`` over a
pool of --num-actors actors (each loads the checkpoint once). OUTPUT gets part-*.parquet
with ``user_id``, ``propensity`` and ``churn`` (calibrated probabilities over the horizons
the model was trained for), ``items`` (raw ids, best first) and ``scores``, plus
_summary.json (users, time, the prediction time and horizons). Scores as of --at (default:
just after the log's last event): only events before it are inputs. Prints the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from seqrec_ray import cli


def build_parser() -> argparse.ArgumentParser:
    """One flag per BatchPredictConfig field, then the job's Ray flags."""
    from seqrec_ray.data.splits import parse_time
    from seqrec_ray.train.batch_predict import BatchPredictConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_flags(p, BatchPredictConfig, flags={"at": cli.Flag(type=parse_time)})
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.train.batch_predict import BatchPredictConfig, run_batch_predict

    try:
        if args.num_cpus is not None and args.num_cpus < 1:
            raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
        config = cli.build(BatchPredictConfig, args)
        config.check_paths()  # fail before starting Ray
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        return cli.fail(exc)
    needed = config.num_actors * config.cpus_per_actor
    init_ray(args.address, args.num_cpus or max(os.cpu_count() or 1, int(needed + 0.999) + 1))
    summary = run_batch_predict(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
