"""What a new-item boost buys on cold targets and costs on warm ones: one scoring pass, a sweep.

A model with item content scores an item without training events from its content alone
(``models/items.py``); evaluation and serving add ``new_item_boost`` to those scores
(``models.scoring.NEW_ITEM_BOOST``). This script scores a split once, then for each boost
ranks every user's target among all items (history masked, as ``jobs/evaluate.py``) and
prints HR@10 / NDCG@10 for users whose target is a cold item and for the rest, beside the
content baseline and, with ``--reference``, an ID-only checkpoint's warm figures (the
cold-item goal: cold HR@10 >= 2x the content baseline, warm within 2 % of ID only). Writes
``OUT/cold_start_tradeoff.json`` and a PNG of the trade-off curve.

    python bench/cold_start_tradeoff.py --data runs/beauty-cold --checkpoint runs/tf-cold/best \\
        --reference runs/tf-cold-ids/best --split valid --out runs/eval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BOOSTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
K = 10


def _ranks(score_fn, tensors: dict[str, torch.Tensor], boost: torch.Tensor | None, boosts, batch_size: int):
    """0-based target rank per user for each boost: {boost: (N,) int64}."""
    from seqrec_ray.train.metrics import mask_scores, target_ranks

    out = {b: [] for b in boosts}
    for start in range(0, len(tensors["target"]), batch_size):
        batch = {k: v[start:start + batch_size] for k, v in tensors.items()}
        scores = mask_scores(score_fn(batch), batch["target"], batch.get("history"))  # (B, V)
        for b in boosts:
            shifted = scores if boost is None or not b else scores + b * boost
            out[b].append(target_ranks(shifted, batch["target"]))
    return {b: torch.cat(r) for b, r in out.items()}


def _metrics(ranks: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    from seqrec_ray.train.metrics import RankingMetrics

    metrics = RankingMetrics((K,))
    metrics.add(ranks[mask])
    out = metrics.to_dict()
    return {"users": out["users"], "hr@10": out["hr@10"], "ndcg@10": out["ndcg@10"]}


def _model_scorer(checkpoint: str):
    from seqrec_ray.train.batches import trim_left_padding
    from seqrec_ray.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model.eval()

    @torch.no_grad()
    def score(batch):
        return model.score(trim_left_padding(batch)).float()

    return ckpt, score


def run(args: argparse.Namespace) -> dict:
    from seqrec_ray.data.artifacts import load_sequences
    from seqrec_ray.train.baselines import ContentScorer, train_item_counts
    from seqrec_ray.train.batches import table_to_tensors
    from seqrec_ray.train.evaluation import baseline_tokens
    from seqrec_ray.train.examples import eval_examples

    torch.set_num_threads(args.threads)
    ckpt, score = _model_scorer(args.checkpoint)
    sequences = load_sequences(args.data)
    tensors = table_to_tensors(eval_examples(sequences, args.split, ckpt.model_config.max_len))
    counts = train_item_counts(sequences, ckpt.model_config.num_items)
    cold_item = torch.from_numpy(counts == 0)
    cold_item[:2] = False
    cold_target = cold_item[tensors["target"]]
    if not bool(cold_target.any()):
        raise SystemExit(f"{args.data}: no {args.split} target is a cold item (featurize with --cold-items)")
    print(f"{args.split}: {len(cold_target):,} users, {int(cold_target.sum()):,} with a cold target; "
          f"{int(cold_item.sum()):,} items without training events", flush=True)
    ranks = _ranks(score, tensors, cold_item.float(), BOOSTS, args.batch_size)
    rows = [{"boost": b, "cold": _metrics(r, cold_target), "warm": _metrics(r, ~cold_target)} for b, r in ranks.items()]
    result = {"data": args.data, "checkpoint": args.checkpoint, "split": args.split, "boosts": rows}
    tokens = baseline_tokens(args.data, ckpt.vocab)
    if tokens is not None:
        content = _ranks(ContentScorer(tokens, counts), tensors, None, (0.0,), args.batch_size)[0.0]
        result["content_baseline"] = {"cold": _metrics(content, cold_target), "warm": _metrics(content, ~cold_target)}
    if args.reference:
        _, reference = _model_scorer(args.reference)
        ref = _ranks(reference, tensors, None, (0.0,), args.batch_size)[0.0]
        result["reference"] = {"checkpoint": args.reference, "cold": _metrics(ref, cold_target),
                               "warm": _metrics(ref, ~cold_target)}
    return result


def report(result: dict, out: Path) -> None:
    print(f"\n{'boost':>6} {'cold HR@10':>11} {'cold NDCG':>10} {'warm HR@10':>11} {'warm NDCG':>10}")
    for row in result["boosts"]:
        c, w = row["cold"], row["warm"]
        print(f"{row['boost']:6.2f} {c['hr@10']:11.4f} {c['ndcg@10']:10.4f} {w['hr@10']:11.4f} {w['ndcg@10']:10.4f}")
    for name in ("content_baseline", "reference"):
        if name in result:
            c, w = result[name]["cold"], result[name]["warm"]
            print(f"{name:>17}: cold {c['hr@10']:.4f} / {c['ndcg@10']:.4f}, warm {w['hr@10']:.4f} / {w['ndcg@10']:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "cold_start_tradeoff.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "cold_start_tradeoff.png")
    print(f"\nwrote {out / 'cold_start_tradeoff.json'} and {out / 'cold_start_tradeoff.png'}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    cold = [r["cold"]["hr@10"] for r in result["boosts"]]
    warm = [r["warm"]["hr@10"] for r in result["boosts"]]
    ax.plot(warm, cold, "o-", label="content model, new-item boost")
    for r, x, y in zip(result["boosts"], warm, cold):
        ax.annotate(f"{r['boost']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if "content_baseline" in result:
        b = result["content_baseline"]
        ax.axhline(2 * b["cold"]["hr@10"], color="grey", ls=":", label="2x content baseline (cold)")
        ax.plot([b["warm"]["hr@10"]], [b["cold"]["hr@10"]], "s", color="grey", label="content baseline")
    if "reference" in result:
        ref = result["reference"]["warm"]["hr@10"]
        ax.axvline(0.98 * ref, color="tab:red", ls=":", label="98 % of ID-only (warm)")
    ax.set_xlabel("warm targets HR@10")
    ax.set_ylabel("cold targets HR@10")
    ax.set_title(f"New-item boost trade-off ({result['split']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="artifacts featurized with --cold-items")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint with item content")
    parser.add_argument("--reference", help="an ID-only checkpoint of the same data (its warm figures)")
    parser.add_argument("--split", default="valid", choices=("valid", "test"))
    parser.add_argument("--out", default="runs/eval")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    report(run(args), Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
