#!/usr/bin/env bash
# Evaluation speed of `tuneguard eval perplexity` vs the transformers guide's sliding-window loop
# ("Perplexity of fixed-length models") in PyTorch, back to back on this machine: the first
# TOKENS tokens of WikiText-2 test (data/eval), float32 default model, 2 threads, window/stride
# 1024/512 and 512/512. Tokens scored per second of evaluation (model loading excluded for both).
# Runs tuneguard, PyTorch, tuneguard, PyTorch (ABAB) and reports medians and ratios.
# Needs the PyTorch baseline venv: `SKIP_BENCH=1 bash ../shared/bench/pytorch/run.sh` once.
# Usage: scripts/bench-eval-vs-pytorch.sh [ROUNDS] [TOKENS]   (default 2, 8192)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE="${BASE:-$HOME/.cache/tuneguard-pytorch-baseline}"
SHARED="${TUNEGUARD_SHARED:-$ROOT/../shared}"
# Each run waits until the machine is idle (the baseline's wait_quiet.py), when it is there.
quiet() { [ -f "$SHARED/bench/pytorch/wait_quiet.py" ] && python3 "$SHARED/bench/pytorch/wait_quiet.py" 0.10 300 3 >/dev/null 2>&1 || true; }
ROUNDS="${1:-2}"
TOKENS="${2:-8192}"
BIN="${TUNEGUARD:-$ROOT/target/release/tuneguard}"
OUT="$(mktemp -d)"
[ -x "$BASE/venv/bin/python" ] || { echo "error: no PyTorch venv at $BASE/venv; run: SKIP_BENCH=1 bash ../shared/bench/pytorch/run.sh" >&2; exit 2; }
[ -x "$BIN" ] || { echo "error: no $BIN; run: cargo build --release -p tuneguard-cli" >&2; exit 2; }
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cat > "$OUT/guide.py" <<'PY'
import json, sys, time, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model_dir, data, n_tokens, window, stride = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
text = "\n\n".join(json.loads(l)["text"] for l in open(data))
ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids[:, :n_tokens]
t0 = time.perf_counter()
nlls, prev_end, scored = [], 0, 0
with torch.no_grad():
    for begin in range(0, ids.size(1), stride):
        end = min(begin + window, ids.size(1))
        trg = end - prev_end
        x = ids[:, begin:end]
        y = x.clone(); y[:, :-trg] = -100
        nlls.append(model(x, labels=y).loss)
        scored += trg - (1 if begin == 0 else 0)
        prev_end = end
        if end == ids.size(1):
            break
dt = time.perf_counter() - t0
print(json.dumps({"engine": "pytorch", "window": window, "stride": stride, "tokens_scored": scored, "seconds": dt, "tokens_per_s": scored / dt,
                  "perplexity": float(torch.exp(torch.stack(nlls).mean()))}))
PY
for i in $(seq "$ROUNDS"); do
  for ws in "1024 512" "512 512"; do
    set -- $ws
    echo "round $i/$ROUNDS window $1 stride $2: tuneguard" >&2
    quiet
    "$BIN" eval perplexity "$ROOT/data/eval/wikitext2_test.jsonl" --window "$1" --stride "$2" --max-tokens "$TOKENS" --bootstrap 0 --threads 2 --json \
      | python3 -c 'import json,sys; j=json.load(sys.stdin); print(json.dumps({"engine":"tuneguard","window":j["window"],"stride":j["stride"],"tokens_scored":j["tokens_scored"],"seconds":j["seconds"],"tokens_per_s":j["tokens_scored"]/j["seconds"],"perplexity":j["perplexity"]}))' >> "$OUT/runs.jsonl"
    echo "round $i/$ROUNDS window $1 stride $2: pytorch" >&2
    quiet
    "$BASE/venv/bin/python" "$OUT/guide.py" "$BASE/smollm2-135m-instruct-hf" "$ROOT/data/eval/wikitext2_test.jsonl" "$TOKENS" "$1" "$2" 2>/dev/null >> "$OUT/runs.jsonl"
  done
done
python3 - "$OUT/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("| window / stride | tuneguard tokens/s | PyTorch tokens/s | ratio | perplexity (tuneguard / guide loop) |")
print("|---|---|---|---|---|")
for w, s in [(1024, 512), (512, 512)]:
    tg = [r for r in runs if r["engine"] == "tuneguard" and r["window"] == w and r["stride"] == s]
    pt = [r for r in runs if r["engine"] == "pytorch" and r["window"] == w and r["stride"] == s]
    a, b = statistics.median(r["tokens_per_s"] for r in tg), statistics.median(r["tokens_per_s"] for r in pt)
    print(f"| {w} / {s} | {a:.1f} | {b:.1f} | {a / b:.2f}× | {tg[0]['perplexity']:.4f} / {pt[0]['perplexity']:.4f} |")
PY
