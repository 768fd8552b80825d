#!/usr/bin/env bash
# The forgetting demo: configs/forgetting-demo.toml unguarded and with each prevention guard
# (replay, distillation from the frozen base, EWC, L2-SP), then WikiText-2 perplexity of each
# run's written weights on 8192 tokens (tuneguard eval, window 256), and the README's table:
# task validation loss, general perplexity rise against the base model, seconds per step.
#
#   cargo build --release -p tuneguard-cli && scripts/forgetting-demo.sh
#
# Environment: TUNEGUARD (binary, default target/release/tuneguard), OUT (default
# runs/forgetting-demo-compare), VARIANTS (default "none replay kd ewc l2sp"), and the guards'
# settings REPLAY_RATIO (0.2), KD_LAMBDA (1.0), KD_T (2.0), EWC_LAMBDA, L2SP_LAMBDA.
# Takes 20-40 minutes on 2 CPU cores (five runs of 40 steps).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TUNEGUARD:-target/release/tuneguard}
OUT=${OUT:-runs/forgetting-demo-compare}
VARIANTS=${VARIANTS:-none replay kd ewc l2sp}
GENERAL=../data/forgetting/wikitext2_replay.jsonl
REPLAY_RATIO=${REPLAY_RATIO:-0.2}
KD_LAMBDA=${KD_LAMBDA:-1.0}
KD_T=${KD_T:-2.0}
EWC_LAMBDA=${EWC_LAMBDA:-20}
L2SP_LAMBDA=${L2SP_LAMBDA:-20}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
for v in $VARIANTS; do
  case $v in
    none) extra=() ;;
    replay) extra=("replay.data=$GENERAL" "replay.ratio=$REPLAY_RATIO") ;;
    kd) extra=("replay.data=$GENERAL" "replay.ratio=$REPLAY_RATIO" "distill.lambda=$KD_LAMBDA" "distill.temperature=$KD_T" "distill.on=replay") ;;
    ewc) extra=("ewc.lambda=$EWC_LAMBDA" "ewc.data=$GENERAL") ;;
    l2sp) extra=("l2sp.lambda=$L2SP_LAMBDA") ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
  echo "== $v: ${extra[*]:-(no guard)}" >&2
  "$BIN" train configs/forgetting-demo.toml "output.dir=$OUT/$v" "${extra[@]}" --overwrite 2> "$OUT/$v.log" || { tail -5 "$OUT/$v.log" >&2; exit 1; }
  tail -3 "$OUT/$v.log" >&2
  "$BIN" eval perplexity data/eval/wikitext2_test.jsonl --adapter "$OUT/$v" --window 256 --max-tokens 8192 --bootstrap 0 --json > "$OUT/$v.eval.json"
done
[ -f "$OUT/base.eval.json" ] || "$BIN" eval perplexity data/eval/wikitext2_test.jsonl --window 256 --max-tokens 8192 --bootstrap 0 --json > "$OUT/base.eval.json"
python3 - "$OUT" $VARIANTS <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
base = json.load(open(out / "base.eval.json"))["perplexity"]
rows = []
for v in sys.argv[2:]:
    s = json.load(open(out / v / "summary.json"))
    e = json.load(open(out / f"{v}.eval.json"))
    lines = [json.loads(l) for l in open(out / v / "metrics.jsonl")]
    steps = [l for l in lines if l["kind"] == "train"]
    per_step = sum(l["tokens"] / l["tokens_per_s"] for l in steps) / len(steps)
    g = s["forgetting"]["sets"][0]
    rows.append((v, s["val_loss_base"], s["val_loss_final"], s["early_stopping"]["best_step"], g["rise"], e["perplexity"], e["perplexity"] / base - 1, per_step))
none = next((r for r in rows if r[0] == "none"), None)
print(f"base model: WikiText-2 perplexity {base:.3f} (8192 tokens, window 256)\n")
print("| guard | task val loss (base → written) | improvement kept | written step | WikiText-2 rise, 2048 tokens (guard) | WikiText-2 ppl, 8192 tokens | rise | s/step |")
print("|---|---|---|---|---|---|---|---|")
for v, b, f, step, rise, ppl, rise8k, per in rows:
    kept = f"{100 * (b - f) / (none[1] - none[2]):.0f} %" if none else "-"
    cut = f" ({rise8k / none[6]:.2f}·R)" if none and v != "none" and none[6] > 0 else ""
    print(f"| {v} | {b:.4f} → {f:.4f} | {kept} | {step} | {100 * rise:+.1f} % | {ppl:.3f} | {100 * rise8k:+.1f} %{cut} | {per:.2f} |")
PY
