#!/usr/bin/env python3
"""Writes the data of the forgetting demo (configs/forgetting-demo.toml) from the shared copies:

- data/forgetting/superni_titlegen.jsonl: the first 249 rows, in file order, of the
  Super-NaturalInstructions task task288_gigaword_summarization (headline generation, category
  "Title Generation", instance license MIT) from superni_en_shared.jsonl; fields id, task,
  category, instance_license, instruction, context, response.
- data/forgetting/wikitext2_replay.jsonl: articles 40-59 of the WikiText-2 test split
  (data/eval/wikitext2_test.jsonl; id, title, text), the general-domain text that [replay]
  mixes in and [ewc] estimates its Fisher on. The forgetting guard measures perplexity on the
  first tokens of article 0, so the two never overlap.

usage: scripts/make-forgetting-demo-data.py [SHARED_DATA_DIR]   (default: ../shared/data)
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
shared = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "data"
out = root / "data" / "forgetting"
out.mkdir(parents=True, exist_ok=True)

keep = ("id", "task", "category", "instance_license", "instruction", "context", "response")
rows = []
with open(shared / "instruction" / "superni_en_shared.jsonl", encoding="utf-8") as f:
    for line in f:
        r = json.loads(line)
        if r["task"] == "task288_gigaword_summarization":
            rows.append({k: r[k] for k in keep})
        if len(rows) == 249:
            break
with open(out / "superni_titlegen.jsonl", "w", encoding="utf-8") as g:
    for r in rows:
        g.write(json.dumps(r, ensure_ascii=False) + "\n")

articles = [json.loads(l) for l in open(root / "data" / "eval" / "wikitext2_test.jsonl", encoding="utf-8")]
with open(out / "wikitext2_replay.jsonl", "w", encoding="utf-8") as g:
    for r in articles[40:]:
        g.write(json.dumps({"id": r["id"], "title": r["title"], "text": r["text"]}, ensure_ascii=False) + "\n")
print(f"wrote {len(rows)} task rows and {len(articles) - 40} replay articles to {out}")
