#!/usr/bin/env python3
"""Reference values for tuneguard-eval, computed with PyTorch and transformers on the HF float32
copy of SmolLM2-135M-Instruct (the Q4_1 GGUF dequantized by shared/bench/pytorch/convert_gguf_to_hf.py).
Writes crates/eval/tests/data/eval_reference.json, which is committed. Never edit the JSON by hand:
rerun this script.

    SKIP_BENCH=1 bash ../shared/bench/pytorch/run.sh   (the venv: torch 2.15.0, transformers 5.24.0, and the HF dir)
    ~/.cache/tuneguard-pytorch-baseline/venv/bin/pip install scikit-learn==1.9.1
    ~/.cache/tuneguard-pytorch-baseline/venv/bin/python scripts/reference/eval_reference.py \
        [--model ~/.cache/tuneguard-pytorch-baseline/smollm2-135m-instruct-hf]

Three things, all in float32 on CPU (2 threads, eval mode, no grad), log-probabilities summed in float64:

perplexity  WikiText-2 test (shared/data/general_text/wikitext2_test.jsonl, every row's "text" joined
            with "\\n\\n", tokenized without special tokens, first 2048 tokens). For each (window, stride):
            windows begin at 0, stride, 2*stride, ..., end = min(begin + window, len); a window scores the
            positions max(prev_end, begin + 1) .. end, position p predicted by the logits at window index
            p - 1 - begin; stop after the window that reaches len. Exact NLL sums, per window too.
            "guide" is the loop of the transformers guide "Perplexity of fixed-length models" as written
            (outputs.loss times num_valid_tokens - batch_size): where windows overlap it scores trg_len
            tokens but counts trg_len - 1, so it differs from the exact sum; where stride == window it agrees.
sst2        lm-evaluation-harness loglikelihood semantics (HFLM encoding: whole = tok(context + choice),
            ctx = tok(context), continuation = whole[len(ctx):], trailing context whitespace moved to the
            continuation) for every row of shared/data/classification/sst2_test.jsonl, context
            "{text}\\nQuestion: Is this sentence positive or negative?\\nAnswer:", choices " negative",
            " positive". pred = argmax ll; pred_norm = argmax ll / len(choice in characters) (acc_norm).
            Metrics by scikit-learn: accuracy, precision/recall/F1 per class (zero_division=0), macro F1,
            confusion matrix (rows true, columns predicted, labels [0, 1]).
generation  greedy, 32 new tokens at most, eos = tokenizer.eos_token_id, for the first 12 rows of
            shared/data/instruction/selfinstruct_seed_tasks.jsonl, the user message being the instruction
            (plus "\\n\\n" + context when there is one) through the model's chat template.
"""
import argparse, json, math, os, sys, time

import sklearn
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
OUT = os.path.join(ROOT, "crates", "eval", "tests", "data", "eval_reference.json")
WIKI = os.path.join(SHARED, "data", "general_text", "wikitext2_test.jsonl")
SST2 = os.path.join(SHARED, "data", "classification", "sst2_test.jsonl")
SEED_TASKS = os.path.join(SHARED, "data", "instruction", "selfinstruct_seed_tasks.jsonl")
DEFAULT_MODEL = os.path.expanduser("~/.cache/tuneguard-pytorch-baseline/smollm2-135m-instruct-hf")

PPL_TOKENS = 2048
PPL_CONFIGS = [(512, 256), (256, 256), (1024, 1024), (1024, 512)]
SST2_QUESTION = "\nQuestion: Is this sentence positive or negative?\nAnswer:"
SST2_CHOICES = [" negative", " positive"]
GEN_ROWS, GEN_MAX_NEW = 12, 32


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def logprobs(model, ids):
    """log_softmax of the logits for a 1-D list of ids: [len(ids), vocab], float32."""
    logits = model(torch.tensor([ids])).logits[0]
    return F.log_softmax(logits.float(), dim=-1)


def exact_perplexity(model, tokens, window, stride):
    n = len(tokens)
    nll_sum, scored, per_window, prev_end = 0.0, 0, [], 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        first = max(prev_end, begin + 1)
        if first < end:
            lp = logprobs(model, tokens[begin:end])
            pos = torch.arange(first, end)
            tok_lp = lp[pos - 1 - begin, torch.tensor(tokens[first:end])].double()
            w_nll = float(-tok_lp.sum())
            nll_sum += w_nll
            scored += end - first
            per_window.append({"begin": begin, "end": end, "scored_from": first, "nll_sum": w_nll})
        prev_end = end
        if end == n:
            break
    return {"window": window, "stride": stride, "nll_sum": nll_sum, "tokens_scored": scored,
            "perplexity": math.exp(nll_sum / scored), "windows": len(per_window), "per_window": per_window}


def guide_perplexity(model, tokens, window, stride):
    """The transformers guide's loop, verbatim in substance (max_length = window)."""
    input_all = torch.tensor([tokens])
    seq_len = input_all.size(1)
    nll_sum, n_tokens, prev_end_loc, n_windows = 0.0, 0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + window, seq_len)
        trg_len = end_loc - prev_end_loc  # may be different from stride on last loop
        input_ids = input_all[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        outputs = model(input_ids, labels=target_ids)
        neg_log_likelihood = outputs.loss
        num_valid_tokens = (target_ids != -100).sum().item()
        batch_size = target_ids.size(0)
        num_loss_tokens = num_valid_tokens - batch_size  # subtract batch_size due to internal label shift
        nll_sum += neg_log_likelihood * num_loss_tokens
        n_tokens += num_loss_tokens
        n_windows += 1
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    avg_nll = nll_sum / n_tokens
    return {"window": window, "stride": stride, "nll_sum": float(nll_sum), "n_tokens": n_tokens,
            "perplexity": float(torch.exp(avg_nll)), "windows": n_windows}


def perplexity_section(model, tok):
    text = "\n\n".join(r["text"] for r in rows(WIKI))
    all_ids = tok(text, add_special_tokens=False).input_ids
    tokens = all_ids[:PPL_TOKENS]
    out = {"data": "shared/data/general_text/wikitext2_test.jsonl", "rows_joined_with": "\n\n",
           "text_chars": len(text), "text_tokens": len(all_ids), "tokens_used": len(tokens),
           "first_token_ids": tokens[:16], "last_token_ids": tokens[-16:], "configs": [], "guide_perplexity": []}
    for window, stride in PPL_CONFIGS:
        e = exact_perplexity(model, tokens, window, stride)
        g = guide_perplexity(model, tokens, window, stride)
        out["configs"].append(e)
        out["guide_perplexity"].append(g)
        print(f"perplexity window={window} stride={stride}: exact {e['perplexity']:.6f} "
              f"({e['tokens_scored']} tokens, {e['windows']} windows)  guide {g['perplexity']:.6f} ({g['n_tokens']} tokens)",
              flush=True)
    return out


def encode_pair(tok, context, continuation):
    """lm-eval HFLM._encode_pair."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    ctx = tok(context, add_special_tokens=False).input_ids
    return ctx, whole[len(ctx):]


def loglikelihood(model, ctx, cont):
    inp = (ctx + cont)[:-1]
    lp = logprobs(model, inp)
    sel = lp[len(inp) - len(cont):]  # the positions predicting the continuation
    tok_lp = sel[torch.arange(len(cont)), torch.tensor(cont)]
    greedy = bool((sel.argmax(dim=-1) == torch.tensor(cont)).all())
    return float(tok_lp.double().sum()), greedy


def argmax(xs):
    return max(range(len(xs)), key=lambda i: xs[i])  # first index on ties, as numpy.argmax


def sst2_section(model, tok):
    items = []
    for r in rows(SST2):
        context = r["text"] + SST2_QUESTION
        lls, conts, greedy = [], [], []
        for choice in SST2_CHOICES:
            ctx, cont = encode_pair(tok, context, choice)
            ll, g = loglikelihood(model, ctx, cont)
            lls.append(ll); conts.append(cont); greedy.append(g)
        items.append({"id": r["id"], "label": r["label"], "ll": lls, "cont_tokens": conts, "is_greedy": greedy,
                      "pred": argmax(lls), "pred_norm": argmax([ll / len(c) for ll, c in zip(lls, SST2_CHOICES)])})
    labels = [it["label"] for it in items]
    preds = [it["pred"] for it in items]
    norm = [it["pred_norm"] for it in items]
    p, rc, f, s = precision_recall_fscore_support(labels, preds, labels=[0, 1], zero_division=0)
    out = {
        "data": "shared/data/classification/sst2_test.jsonl", "context_template": "{text}" + SST2_QUESTION,
        "choices": SST2_CHOICES, "n": len(items),
        "accuracy": sum(a == b for a, b in zip(labels, preds)) / len(items),
        "acc_norm": sum(a == b for a, b in zip(labels, norm)) / len(items),
        "per_class": {"labels": [0, 1], "precision": [float(x) for x in p], "recall": [float(x) for x in rc],
                      "f1": [float(x) for x in f], "support": [int(x) for x in s]},
        "macro_f1": float(f1_score(labels, preds, labels=[0, 1], average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(labels, preds, labels=[0, 1]).tolist(),
        "items": items,
    }
    print(f"sst2: accuracy {out['accuracy']:.4f} acc_norm {out['acc_norm']:.4f} macro_f1 {out['macro_f1']:.4f} "
          f"confusion {out['confusion_matrix']}", flush=True)
    return out


def chat_ids(tok, messages):
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def generation_section(model, tok):
    eos = tok.eos_token_id
    items = []
    for r in rows(SEED_TASKS)[:GEN_ROWS]:
        msg = r["instruction"] if not r["context"] else r["instruction"] + "\n\n" + r["context"]
        messages = [{"role": "user", "content": msg}]
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = chat_ids(tok, messages)
        assert ids == tok(prompt, add_special_tokens=False).input_ids, "chat template ids differ from the prompt's"
        inp = torch.tensor([ids])
        out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), do_sample=False,
                             max_new_tokens=GEN_MAX_NEW, eos_token_id=eos, pad_token_id=eos, repetition_penalty=1.0)
        new = out[0, len(ids):].tolist()
        items.append({"id": r["id"], "user_message": msg, "prompt": prompt, "prompt_ids": ids,
                      "generated_ids": new, "text": tok.decode(new, skip_special_tokens=True),
                      "stopped_on_eos": bool(new) and new[-1] == eos})
        print(f"generation {r['id']}: {len(new)} tokens, eos={items[-1]['stopped_on_eos']}: {items[-1]['text']!r}",
              flush=True)
    return {"data": "shared/data/instruction/selfinstruct_seed_tasks.jsonl", "max_new_tokens": GEN_MAX_NEW,
            "eos_token_id": eos, "eos_token": tok.eos_token, "items": items}


def dump(x, indent=0, width=240):
    """JSON with a container on one line when it fits in `width` characters."""
    flat = json.dumps(x, ensure_ascii=False, separators=(", ", ": "))
    if len(flat) <= width or not isinstance(x, (dict, list)) or not x:
        return flat
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(x, dict):
        body = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {dump(v, indent + 1, width)}" for k, v in x.items()]
        return "{\n" + ",\n".join(body) + "\n" + pad + "}"
    return "[\n" + ",\n".join(inner + dump(v, indent + 1, width) for v in x) + "\n" + pad + "]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="HF float32 model dir")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()  # dtype: transformers 5 name of torch_dtype
    assert model.dtype == torch.float32 and not model.training
    with torch.no_grad():
        doc = {
            "generated_by": "scripts/reference/eval_reference.py",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "scikit-learn": sklearn.__version__, "python": sys.version.split()[0]},
            "model": "SmolLM2-135M-Instruct Q4_1 GGUF dequantized to float32 (shared/bench/pytorch/convert_gguf_to_hf.py)",
            "perplexity": perplexity_section(model, tok),
            "sst2": sst2_section(model, tok),
            "generation": generation_section(model, tok),
        }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(dump(doc) + "\n")
    print(f"wrote {os.path.normpath(args.out)} ({os.path.getsize(args.out)} bytes) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
