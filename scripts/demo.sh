#!/usr/bin/env bash
# The main job end to end on the embedded default: local Ray, the simulator's data,
# the embedded SQLite store. simulate -> featurize -> train -> evaluate -> serve -> request.
# Everything lands in ./runs/demo (override with SEQREC_DEMO_DIR). Set SEQREC_DEMO_KEEP_SERVING=1
# to leave the service running on http://127.0.0.1:8000 afterwards.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup_venv.sh"
venv="${SEQREC_VENV:-$here/.venv}"
py="$venv/bin/python"
out="${SEQREC_DEMO_DIR:-$here/runs/demo}"
users="${SEQREC_DEMO_USERS:-2000}"
days="${SEQREC_DEMO_DAYS:-14}"
epochs="${SEQREC_DEMO_EPOCHS:-5}"
cd "$here"
# A fresh run each time: a kept ray_runs/ would make train resume the previous run.
rm -rf "$out"
mkdir -p "$out"

echo "== 1/5 simulate: $users shoppers x $days days of organic logs"
"$py" jobs/simulate.py --users "$users" --days "$days" --output "$out/logs" --seed 7

echo "== 2/5 featurize on Ray Data (+ load the embedded profile store)"
"$py" jobs/featurize.py --input "$out/logs" --format events --output "$out/artifacts" \
  --store "$out/store.db" --items "$out/logs.items.parquet"  # the simulator's catalogue (item content)

echo "== 3/5 train an LSTM on Ray Train (2 workers)"
"$py" jobs/train.py --data "$out/artifacts" --model lstm --output "$out/train" \
  --num-workers 2 --epochs "$epochs" --run-name demo-lstm --storage "$out/ray_runs" \
  --lr 0.01 --dropout 0.1 --emb-dropout 0.1 --batch-size 64  # a small log: learn fast, regularise little

echo "== 4/5 evaluate (full ranking, test split) against the baselines"
"$py" jobs/evaluate.py --data "$out/artifacts" --checkpoint "$out/train/best" --split test \
  --no-mask-history --output "$out/eval_test.json"

echo "== 5/5 serve on Ray Serve and ask for recommendations"
keep=()
[ "${SEQREC_DEMO_KEEP_SERVING:-0}" = 1 ] && keep=(--keep-serving)
"$py" jobs/serve_demo.py --checkpoint "$out/train/best" --store "$out/store.db" \
  --artifacts "$out/artifacts" "${keep[@]}"
