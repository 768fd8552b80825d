#!/usr/bin/env bash
# Inference speed of tuneguard vs PyTorch/transformers, measured back to back on this machine:
# prefill of a 512-token prompt and greedy decode of 128 tokens after a 64-token prompt, batch 1,
# 2 threads, float32 weights of the default model (same shapes as shared/bench/pytorch/bench_infer.py).
# Runs tuneguard, PyTorch, tuneguard, PyTorch (ABAB) and reports medians and ratios.
# Needs the PyTorch baseline venv: `SKIP_BENCH=1 bash ../shared/bench/pytorch/run.sh` once.
# Usage: scripts/bench-infer-vs-pytorch.sh [ROUNDS]   (default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${TUNEGUARD_SHARED:-$ROOT/../shared}"
BASE="${BASE:-$HOME/.cache/tuneguard-pytorch-baseline}"
ROUNDS="${1:-2}"
OUT="$(mktemp -d)"
[ -x "$BASE/venv/bin/python" ] || { echo "error: no PyTorch venv at $BASE/venv; run: SKIP_BENCH=1 bash $SHARED/bench/pytorch/run.sh" >&2; exit 2; }
"$ROOT/scripts/fetch-default-model.sh" >/dev/null
cd "$ROOT" && cargo bench -p tuneguard-model --bench infer --no-run 2>/dev/null
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
for i in $(seq "$ROUNDS"); do
  echo "round $i/$ROUNDS: tuneguard" >&2
  (cd "$ROOT" && cargo bench -q -p tuneguard-model --bench infer -- --threads 2 --reps 3 2>/dev/null | tail -1) >> "$OUT/tuneguard.jsonl"
  echo "round $i/$ROUNDS: pytorch" >&2
  (cd "$SHARED/bench/pytorch" && SMOLLM2_HF_DIR="$BASE/smollm2-135m-instruct-hf" BENCH_RESULTS="$OUT/pytorch.jsonl" \
     "$BASE/venv/bin/python" bench_infer.py --reps 3 >/dev/null 2>&1)
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
d = sys.argv[1]
tg = [json.loads(l) for l in open(d + "/tuneguard.jsonl")]
pt = [json.loads(l) for l in open(d + "/pytorch.jsonl")]
rows = [
    ("prefill 512 tokens, last-position logits (tokens/s)", "prefill_tokens_per_s_last_logits", "prefill_tokens_per_s_last_logits"),
    ("prefill 512 tokens, all logits (tokens/s)", "prefill_tokens_per_s_all_logits", "prefill_tokens_per_s_all_logits"),
    ("decode after 64-token prompt, 127 steps (tokens/s)", "decode_tokens_per_s", "manual_decode_tokens_per_s"),
    ("generate 128 incl. prefill (tokens/s)", "generate_tokens_per_s_incl_prefill", "generate_tokens_per_s"),
    ("peak RSS (MiB)", "peak_rss_mib", "peak_rss_mib"),
]
print("| figure | tuneguard | PyTorch | ratio |")
print("|---|---|---|---|")
for name, a, b in rows:
    x = statistics.median(r[a] for r in tg); y = statistics.median(r[b] for r in pt)
    print(f"| {name} | {x:.1f} | {y:.1f} | {x / y:.2f}x |")
print(f"\n{len(tg)} tuneguard and {len(pt)} PyTorch runs, alternating; medians of per-run medians.")
PY
