#!/usr/bin/env python3
"""Compares two run folders of the same recipe, seed and thread count: adapter bytes,
rejected/quarantine files, every metrics.jsonl line and summary.json, ignoring timing fields
(tokens_per_s, seconds, *_s, started, command_line) and the output folder. Exit 1 on a difference.

    scripts/compare-runs.py runs/before runs/after
"""
import json, sys, filecmp, os

TIMING = {"tokens_per_s", "seconds", "started", "command_line"}

def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in TIMING and not k.endswith("_s") and "time" not in k}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v

def main(a, b):
    bad = 0
    for f in ["adapter/adapter_model.safetensors", "adapter/adapter_config.json", "rejected.jsonl", "quarantine.jsonl"]:
        pa, pb = os.path.join(a, f), os.path.join(b, f)
        if os.path.exists(pa) or os.path.exists(pb):
            same = os.path.exists(pa) and os.path.exists(pb) and filecmp.cmp(pa, pb, shallow=False)
            print(f"{'same' if same else 'DIFFERENT'}: {f}")
            bad += not same
    la = [strip(json.loads(l)) for l in open(os.path.join(a, "metrics.jsonl"))]
    lb = [strip(json.loads(l)) for l in open(os.path.join(b, "metrics.jsonl"))]
    same = la == lb
    print(f"{'same' if same else 'DIFFERENT'}: metrics.jsonl ({len(la)} and {len(lb)} lines, timing fields aside)")
    bad += not same
    sa, sb = (strip(json.load(open(os.path.join(d, "summary.json")))) for d in (a, b))
    for s in (sa, sb):
        s.get("recipe", {}).get("output", {}).pop("dir", None)
    same = sa == sb
    print(f"{'same' if same else 'DIFFERENT'}: summary.json (timing fields and output dir aside)")
    bad += not same
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
