#!/usr/bin/env python3
"""Reference values for tuneguard-metrics, computed by the implementations users compare against:
scikit-learn (accuracy_score, precision_recall_fscore_support, confusion_matrix), transformers'
squad_metrics (the SQuAD v2.0 script's exact match and token F1) and Google's rouge-score
(ROUGE-L). Writes crates/metrics/tests/data/reference.json; the Rust test
crates/metrics/tests/reference.rs reads it. Never edit the JSON by hand: rerun this script.

    python3 -m venv ~/.cache/tuneguard-ref-venv
    ~/.cache/tuneguard-ref-venv/bin/pip install scikit-learn==1.9.1 rouge-score==0.1.2 "transformers<5" (4.57.6 here: squad_metrics left transformers in 5.0)
    ~/.cache/tuneguard-ref-venv/bin/python scripts/reference/metrics_reference.py

The inputs are generated here with a fixed seed, plus hand-picked edge cases (labels absent
from the data, no positive prediction, a single class, zero division as 0, 1 and NaN).
"""
import json, math, os, random, sys
import warnings

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.exceptions import UndefinedMetricWarning
from rouge_score import rouge_scorer
from transformers.data.metrics import squad_metrics
import transformers

warnings.simplefilter("ignore", UndefinedMetricWarning)
warnings.simplefilter("ignore", UserWarning)
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "metrics", "tests", "data", "reference.json")


def num(x):
    """JSON has no NaN: write it as null."""
    x = float(x)
    return None if math.isnan(x) else x


def classification_cases():
    rng = random.Random(20261202)
    cases = []
    for n, k in [(30, 2), (50, 3), (200, 5), (7, 4)]:
        t = [rng.randrange(k) for _ in range(n)]
        p = [x if rng.random() < 0.6 else rng.randrange(k) for x in t]
        cases.append({"name": f"random_{n}_items_{k}_classes", "y_true": t, "y_pred": p})
    cases += [
        # class 2 never predicted, class 3 never true: precision and recall zero divisions
        {"name": "never_predicted_and_never_true", "y_true": [0, 1, 2, 2, 1, 0], "y_pred": [0, 1, 1, 0, 3, 3]},
        # labels given that are absent from both (empty classes), in an unsorted order
        {"name": "empty_classes", "y_true": [1, 1, 2, 2], "y_pred": [1, 2, 2, 2], "labels": [4, 2, 1, 0]},
        # a subset of the labels
        {"name": "labels_subset", "y_true": [0, 1, 2, 0, 1, 2, 2], "y_pred": [0, 2, 1, 0, 0, 2, 2], "labels": [2, 0]},
        # binary with no positive prediction and no positive item
        {"name": "binary_no_positive_prediction", "y_true": [0, 1, 0, 1], "y_pred": [0, 0, 0, 0]},
        {"name": "binary_all_negative", "y_true": [0, 0, 0], "y_pred": [0, 0, 0]},
        {"name": "single_item", "y_true": [3], "y_pred": [3]},
        # only absent classes asked for: every support 0
        {"name": "only_absent_labels", "y_true": [0, 1, 1], "y_pred": [1, 1, 0], "labels": [5, 6]},
    ]
    return cases


def classification(case):
    t, p, labels = case["y_true"], case["y_pred"], case.get("labels")
    out = {"accuracy": accuracy_score(t, p), "prf": []}
    present = sorted(set(t) | set(p))
    averages = [None, "micro", "macro", "weighted"] + (["binary"] if len(present) <= 2 else [])
    for zd in [0.0, 1.0, np.nan]:
        for beta in [1.0, 0.5, 2.0]:
            for avg in averages:
                kw = {} if avg == "binary" or labels is None else {"labels": labels}
                if avg == "binary" and 1 not in present and len(present) == 2:
                    continue  # pos_label=1 is not a label: scikit-learn refuses, as the Rust test checks
                pr, rc, f, s = precision_recall_fscore_support(t, p, beta=beta, average=avg, zero_division=zd, **kw)
                row = {"zero_division": "nan" if isinstance(zd, float) and math.isnan(zd) else ("one" if zd == 1.0 else "zero"),
                       "beta": beta, "average": avg or "none"}
                if avg is None:
                    row.update(precision=[num(x) for x in pr], recall=[num(x) for x in rc], f_score=[num(x) for x in f],
                               support=[int(x) for x in s])
                else:
                    row.update(precision=num(pr), recall=num(rc), f_score=num(f))
                out["prf"].append(row)
    try:
        out["confusion_matrix"] = confusion_matrix(t, p, labels=labels).tolist()
    except ValueError as e:
        out["confusion_matrix_error"] = str(e)
    return out


TEXT_CASES = [
    ("The Eiffel Tower", ["Eiffel Tower", "the tower"]),
    ("eiffel tower, paris", ["The Eiffel Tower."]),
    ("an apple a day", ["apple day"]),
    ("A", ["the"]),
    ("", [""]),
    ("", ["something"]),
    ("42", ["forty-two", "42."]),
    ("Café au lait!", ["cafe au lait"]),
    ("the cat sat on the mat", ["the cat on a mat"]),
    ("the the the", ["the cat"]),
    ("New York City, NY", ["New York", "NYC"]),
    ("Don't stop—believing", ["dont stop believing"]),
    ("1,000,000 dollars", ["$1,000,000"]),
    ("Élan vital über alles", ["élan VITAL uber alles"]),
    ("red green blue red", ["blue red green red red"]),
    ("   spaced    out  ", ["spaced out"]),
]


def text(pred, refs):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    per_ref = [scorer.score(r, pred)["rougeL"] for r in refs]
    return {
        "prediction": pred,
        "references": refs,
        "exact_match": max(squad_metrics.compute_exact(r, pred) for r in refs),
        "token_f1": max(squad_metrics.compute_f1(r, pred) for r in refs),
        "normalized": squad_metrics.normalize_answer(pred),
        "rouge_l": [{"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure} for s in per_ref],
    }


def main():
    import importlib.metadata as md
    doc = {
        "generated_by": "scripts/reference/metrics_reference.py",
        "versions": {"scikit-learn": sklearn.__version__, "rouge-score": md.version("rouge-score"),
                     "transformers": transformers.__version__, "python": sys.version.split()[0]},
        "classification": [dict(c, expected=classification(c)) for c in classification_cases()],
        "text": [text(p, r) for p, r in TEXT_CASES],
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
