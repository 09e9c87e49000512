#!/usr/bin/python3
"""Evaluate the glmlite demo model through the glmlite binary (tools/demo only).

Owns the four checks the model card reports:
  1. tool calls: 20 held-out tool-needing prompts (eval_prompts.json from make_data.py, drawn from
     a separate random stream and absent from training), rendered with the GLM-4.7 template with
     thinking on and all three tools in the preamble; glmlite generates greedily; a prompt passes
     when the output holds a well-formed <tool_call> to the right tool with the right arguments
     (calculator: the same expression up to spaces; convert_units: equal value, same unit names;
     date_diff: the same ISO dates). The same prompts without any tools preamble are scored too.
  2. definitions: 20 questions about words defined in the training data, phrased in ways training
     never used; an answer names the right sense when it contains at least half of the content
     words of the word's first WordNet gloss (the sense it was trained on), and at least two of
     them when the gloss has two or more. Answers are printed. Then the same check on 40 other
     training words in five further phrasings (OTHER_PHRASES), to tell a phrasing that misleads
     the model from words it does not know.
  3. perplexity: glmlite's held-out perplexity (from `glmlite logits`) vs train.py's, both over the
     assistant tokens (and over all tokens), relative difference must be < 0.5%.
  4. agreement: PyTorch (model.py loaded from the shipped bf16 values, computed in f32) vs glmlite
     logits on held-out conversations, relative L2 < 1e-4.

usage: eval.py --model models/demo --data DIR [--glmlite ./glmlite] [--train-result FILE] [--json OUT]
"""
import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import chatfmt  # noqa: E402
import make_data  # noqa: E402

STOP = {"the", "and", "for", "with", "that", "this", "from", "into", "which", "being", "have", "has", "are",
        "was", "were", "its", "their", "than", "then", "some", "something", "someone", "such", "used", "made",
        "make", "other", "more", "most", "very", "often", "especially", "usually", "that", "them", "they",
        "what", "when", "where", "who", "whom", "whose", "will", "would", "can", "could", "not", "any"}


class Glmlite:
    def __init__(self, exe, model_dir):
        self.exe, self.model_dir = exe, model_dir
        self.greedy = []
        h = subprocess.run([exe, "help"], capture_output=True, text=True)
        if "--temp" in h.stdout + h.stderr:
            self.greedy = ["--temp", "0"]

    def generate(self, ids, n, stops):
        p = subprocess.run([self.exe, "run", "-m", self.model_dir, "--tokens", ",".join(map(str, ids)), "-n", str(n)]
                           + self.greedy, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"glmlite run failed: {p.stderr[:400]}")
        out = []
        for t in re.findall(r"-?\d+", p.stdout):
            out.append(int(t))
            if int(t) in stops:
                break
        return out

    def logits(self, ids):
        with tempfile.NamedTemporaryFile(suffix=".f32") as f:
            p = subprocess.run([self.exe, "logits", "-m", self.model_dir, "--tokens", ",".join(map(str, ids)),
                                "-o", f.name], capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"glmlite logits failed: {p.stderr[:400]}")
            return np.fromfile(f.name, dtype="<f4").reshape(len(ids), -1)


def parse_output(text):
    """Generated text (thinking on) -> (reasoning, content, calls [(name, {k: v})], well_formed)."""
    reasoning, _, rest = text.partition("</think>")
    if not _:
        rest, reasoning = reasoning, ""
    calls, ok = [], True
    content = rest.split("<tool_call>")[0]
    for m in re.finditer(r"<tool_call>(.*?)(</tool_call>|$)", rest, re.S):
        body, closed = m.group(1), m.group(2)
        if not closed:
            ok = False
        name = body.split("<arg_key>")[0].strip()
        args = dict(re.findall(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", body, re.S))
        if body.count("<arg_key>") != len(args):
            ok = False
        calls.append((name, args))
    for tok in ("<|user|>", "<|observation|>", "<|endoftext|>"):
        content = content.split(tok)[0]
    return reasoning.strip(), content.strip(), calls, ok


def call_matches(want, name, args):
    if name != want["name"]:
        return False
    wa = want["arguments"]
    if set(args) != set(wa):
        return False
    for k, v in wa.items():
        got = args[k].strip()
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                if abs(float(got) - float(v)) > 1e-9:
                    return False
            except ValueError:
                return False
        elif k == "expression":
            if got.replace(" ", "") != v.replace(" ", ""):
                return False
        elif got != v:
            return False
    return True


# phrasings of the extra definition check: neither make_data.DEF_PHRASES (training) nor
# make_data.DEF_EVAL_PHRASES (the 20 evaluation questions)
OTHER_PHRASES = make_data.DEF_OTHER_PHRASES


def trained_words(data_dir, by_word):
    """The words whose definition answer occurs in the training conversations."""
    with open(os.path.join(data_dir, "train.jsonl"), encoding="utf-8") as f:
        text = f.read()
    return [w for w in by_word if f"The word {w} (" in text]


def content_words(s):
    return [w for w in re.findall(r"[a-z]+", s.lower()) if len(w) >= 3 and w not in STOP]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--data", required=True, help="make_data.py output (held-out split, eval prompts)")
    ap.add_argument("--glmlite", default="./glmlite")
    ap.add_argument("--train-result", help="train_result.json from train.py (perplexity to compare)")
    ap.add_argument("--json", help="write the scores here")
    ap.add_argument("--max-new", type=int, default=96)
    ap.add_argument("--quick", action="store_true", help="only the tool-call and definition checks")
    a = ap.parse_args()
    g = Glmlite(a.glmlite, a.model)
    vocab, merges, added = chatfmt.load_tokenizer(os.path.join(a.model, "tokenizer.json"))
    enc = chatfmt.Encoder(vocab, merges, added)
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    stops = set(cfg["eos_token_id"])
    with open(os.path.join(a.data, "eval_prompts.json")) as f:
        ev = json.load(f)
    res = {}

    def gen_text(req):
        ids = enc.encode(chatfmt.render(req))
        return enc.decode(g.generate(ids, a.max_new, stops))

    # 1. tool calls
    for label, tools in (("tools_with_preamble", make_data.ALL_TOOLS), ("tools_no_preamble", None)):
        ok_n = shape_n = 0
        print(f"== tool calls ({label})")
        for item in ev["tools"]:
            req = {"messages": [{"role": "user", "content": item["prompt"]}], "add_generation_prompt": True}
            if tools:
                req["tools"] = tools
            out = gen_text(req)
            reasoning, content, calls, wf = parse_output(out)
            good = wf and len(calls) >= 1 and call_matches(item["call"], *calls[0])
            ok_n += good
            shape_n += wf and len(calls) >= 1 and calls[0][0] == item["call"]["name"] and \
                set(calls[0][1]) == set(item["call"]["arguments"])
            print(f"[{'PASS' if good else 'FAIL'}] {item['prompt']!r} -> {out!r}")
        res[label] = ok_n
        res[label + "_right_tool_and_argument_names"] = shape_n
        print(f"{label}: {ok_n}/20 right tool with right arguments; {shape_n}/20 well-formed calls to the right "
              f"tool with the right argument names")

    # 2. definitions: the 20 evaluation questions, then 40 more training words (not among those 20)
    # in five other phrasings that neither training nor the evaluation set uses
    with open(os.path.join(a.data, "stats.json")) as f:
        n_words = json.load(f)["words"]
    by_word = {e["word"]: e for e in make_data.load_wordnet(n_words)}
    eval_words = {item["word"] for item in ev["definitions"]}
    rng = random.Random(77)
    more = rng.sample(sorted(w for w in trained_words(a.data, by_word) if w not in eval_words), 40)
    extra = [{"prompt": OTHER_PHRASES[i % len(OTHER_PHRASES)].format(w=w), "word": w, "def": by_word[w]["def"]}
             for i, w in enumerate(more)]
    for label, items in (("definitions", ev["definitions"]), ("definitions_other_phrasings", extra)):
        ok_n = 0
        print(f"== {label}")
        answers = []
        for item in items:
            req = {"messages": [{"role": "user", "content": item["prompt"]}], "add_generation_prompt": True}
            out = gen_text(req)
            _, content, _, _ = parse_output(out)
            want = set(content_words(item["def"]))
            have = set(content_words(content))
            hit = len(want & have)
            frac = hit / max(1, len(want))
            # at least half of the gloss's content words, and at least two of them when it has two or
            # more (one shared word such as "words" is chance, not the sense)
            good = frac >= 0.5 and hit >= min(2, len(want))
            ok_n += good
            answers.append({"q": item["prompt"], "a": content, "gloss": item["def"], "pass": good})
            print(f"[{'PASS' if good else 'FAIL'}] {item['prompt']!r} -> {content!r}  (gloss: {item['def']!r}, "
                  f"overlap {frac:.2f})")
        res[label] = ok_n
        res[label.replace("definitions", "definition_answers")] = answers
        print(f"{label}: {ok_n}/{len(items)}")

    if a.quick:
        return
    # 3. perplexity over the held-out split (assistant tokens and all tokens), and 4. agreement
    d = np.load(os.path.join(a.data, "heldout.npz"))
    o, ids_all, mask_all = d["offsets"], d["ids"], d["mask"]
    nll_a = nll_all = 0.0
    n_a = n_all = 0
    tm = None
    try:
        import torch
        import model as M
        torch.set_num_threads(2)
        tm = M.load_hf(a.model)
    except ImportError:
        print("torch not installed: skipping the agreement check")
    agree = []
    for k in range(len(o) - 1):
        ids = ids_all[o[k]:o[k + 1]].astype(np.int64)
        mk = mask_all[o[k]:o[k + 1]].astype(bool)
        lg = g.logits(ids.tolist()).astype(np.float64)
        lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
        nll = lse[:-1] - lg[np.arange(len(ids) - 1), ids[1:]]
        nll_all += nll.sum()
        n_all += len(nll)
        nll_a += nll[mk[1:]].sum()
        n_a += int(mk[1:].sum())
        if tm is not None and k < 40:
            with torch.no_grad():
                t = tm(torch.from_numpy(ids)[None]).double().numpy()[0]
            agree.append(float(np.linalg.norm(lg - t) / np.linalg.norm(t)))
    res["glmlite_heldout_assistant_ppl"] = math.exp(nll_a / n_a)
    res["glmlite_heldout_all_ppl"] = math.exp(nll_all / n_all)
    res["heldout_assistant_tokens"] = n_a
    print(f"glmlite held-out perplexity: assistant tokens {res['glmlite_heldout_assistant_ppl']:.4f} ({n_a} tokens), "
          f"all tokens {res['glmlite_heldout_all_ppl']:.4f} ({n_all})")
    if a.train_result:
        with open(a.train_result) as f:
            tr = json.load(f)
        for key in ("assistant", "all"):
            t = tr[f"heldout_{key}_ppl"]
            rel = abs(res[f"glmlite_heldout_{key}_ppl"] - t) / t
            res[f"ppl_{key}_rel_diff"] = rel
            print(f"train.py held-out {key} ppl {t:.4f}: relative difference {rel:.2e} "
                  f"({'PASS' if rel < 0.005 else 'FAIL'} < 0.5%)")
    if agree:
        res["agreement_max_rel_l2"] = max(agree)
        res["agreement_sequences"] = len(agree)
        print(f"PyTorch vs glmlite logits over {len(agree)} held-out conversations: max relative L2 "
              f"{max(agree):.2e} ({'PASS' if max(agree) < 1e-4 else 'FAIL'} < 1e-4)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
