#!/usr/bin/python3
"""Deterministic chat data for the glmlite demo model (tools/demo only).

Owns: the conversation generators (WordNet definitions, calculator / unit-conversion / date tool
tasks with tool results and final answers, greetings, multi-turn mixes), the train / held-out
split, the BPE tokenizer trained on the training text, and the token files train.py reads.

Sources: WordNet 3.0 (Debian `wordnet-base`, WordNet licence: free use, copy, modify and
distribute with the copyright notice) for words and glosses; everything else is generated here.

Every conversation is rendered with the GLM-4.7 chat template (chatfmt.render, checked against
the C renderer by --check-render) and stored as ids plus a 0/1 loss mask that is 1 exactly on the
tokens the assistant generates: everything after `<|assistant|><think>` / `<|assistant|></think>`
up to and including the role token that ends the turn (the model's stop token).

usage: make_data.py --out DIR [--seed 1234] [--merges 3000] [--words 300] [--convs 20000] [--check-render ./glmlite]
writes DIR/{train,heldout}.jsonl (request + text), DIR/{train,heldout}.npz (ids, mask, offsets),
DIR/tokenizer.json, DIR/tokenizer_config.json, DIR/eval_prompts.json, DIR/stats.json
"""
import argparse
import datetime
import json
import os
import random
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import bpe_train  # noqa: E402
import chatfmt  # noqa: E402
import tiny_bpe  # noqa: E402

WORDNET = "/usr/share/wordnet"
CHAT_TEMPLATE = os.path.join(HERE, "..", "..", "..", "shared", "data", "glm-4.7-flash", "chat_template.jinja")

# ----------------------------------------------------------------------------------------------
# tools

CALC = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression",
    "parameters": {"type": "object", "properties": {
        "expression": {"type": "string", "description": "The expression, for example 17*23"}},
        "required": ["expression"]}}}
CONV = {"type": "function", "function": {
    "name": "convert_units", "description": "Convert a value from one unit to another",
    "parameters": {"type": "object", "properties": {
        "value": {"type": "number"}, "from_unit": {"type": "string"}, "to_unit": {"type": "string"}},
        "required": ["value", "from_unit", "to_unit"]}}}
DATE = {"type": "function", "function": {
    "name": "date_diff", "description": "Count the days between two dates (YYYY-MM-DD)",
    "parameters": {"type": "object", "properties": {
        "start_date": {"type": "string"}, "end_date": {"type": "string"}},
        "required": ["start_date", "end_date"]}}}
ALL_TOOLS = [CALC, CONV, DATE]

# unit name -> (dimension, factor to the base unit); temperatures are special-cased
UNITS = {
    "kilometers": ("len", 1000.0), "miles": ("len", 1609.344), "meters": ("len", 1.0), "feet": ("len", 0.3048),
    "inches": ("len", 0.0254), "centimeters": ("len", 0.01), "yards": ("len", 0.9144),
    "kilograms": ("mass", 1.0), "pounds": ("mass", 0.45359237), "grams": ("mass", 0.001), "ounces": ("mass", 0.028349523125),
    "liters": ("vol", 1.0), "gallons": ("vol", 3.785411784), "milliliters": ("vol", 0.001), "cups": ("vol", 0.2365882365),
    "hours": ("time", 3600.0), "minutes": ("time", 60.0), "seconds": ("time", 1.0), "days": ("time", 86400.0),
    "celsius": ("temp", None), "fahrenheit": ("temp", None), "kelvin": ("temp", None),
}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def convert(v, a, b):
    da, fa = UNITS[a]
    if da == "temp":
        c = v if a == "celsius" else (v - 32) * 5 / 9 if a == "fahrenheit" else v - 273.15
        return c if b == "celsius" else c * 9 / 5 + 32 if b == "fahrenheit" else c + 273.15
    return v * fa / UNITS[b][1]


def fmt_num(x):
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    return f"{x:.4f}".rstrip("0").rstrip(".")


def call(name, args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


# ----------------------------------------------------------------------------------------------
# WordNet

def load_wordnet(n_words):
    """The n_words most sense-tagged single lowercase lemmas with their first sense's gloss."""
    pos_name = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
    data_file = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
    cands = []
    for p, fn in (("n", "index.noun"), ("v", "index.verb"), ("a", "index.adj"), ("r", "index.adv")):
        with open(os.path.join(WORDNET, fn), encoding="latin-1") as f:
            for ln in f:
                if ln.startswith(" "):
                    continue
                t = ln.split()
                lemma = t[0]
                if not lemma.isalpha() or not lemma.islower() or len(lemma) < 3:
                    continue
                p_cnt = int(t[3])
                tagged = int(t[5 + p_cnt])
                first = int(t[6 + p_cnt])
                cands.append((tagged, lemma, p, first))
    cands.sort(key=lambda c: (-c[0], c[1], c[2]))
    seen, out = set(), []
    handles = {}
    for tagged, lemma, p, off in cands:
        if lemma in seen:
            continue
        fh = handles.setdefault(p, open(os.path.join(WORDNET, data_file[p]), "rb"))
        fh.seek(off)
        line = fh.readline().decode("latin-1")
        gloss = line.split(" | ", 1)[1].strip()
        parts = [g.strip() for g in gloss.split(";")]
        definition = parts[0]
        examples = [g.strip('"') for g in parts[1:] if g.startswith('"')]
        if not definition or '"' in definition or len(definition) > 90 or len(definition.split()) < 2:
            continue
        seen.add(lemma)
        out.append({"word": lemma, "pos": pos_name[p], "def": definition, "examples": examples})
        if len(out) >= n_words:
            break
    for fh in handles.values():
        fh.close()
    return out


# Definition questions are composed from a core phrasing, an optional lead-in and an optional
# tail, so the model sees many ways of asking and learns that a word (not a number) means "define
# it". The evaluation's phrasings (DEF_EVAL_PHRASES, and DEF_OTHER_PHRASES in eval.py's second
# check) never occur in training: main() checks every training question against them, and no core
# uses their distinctive wording ("explain", "term", "understand", "keep hearing", "plain words",
# "do you know", "can you define", "definition for", "that word"). Some cores share a shape with
# an evaluation phrasing in other words (a quoted word, then a separate question; an imperative
# about "the word X" ending in ", please"): a reader who knows those shapes should not be lost.
DEF_CORES = ["What does the word \"{w}\" mean?", "Define {w}.", "What is the meaning of \"{w}\"?",
             "define {w}", "What does {w} mean?", "Meaning of {w}?", "What is the definition of {w}?",
             "Tell me what \"{w}\" means.", "What is {w}?", "What's {w}?", "what is {w}",
             "What is the word {w}?", "{w}?", "{w} meaning", "meaning of the word {w}",
             "What's the meaning of {w}?", "What do you mean by {w}?", "What is meant by {w}?",
             "What do people mean when they say {w}?", "Give the meaning of {w}.",
             "Could you tell me the meaning of {w}?", "Tell me the meaning of the word {w}.",
             "I don't know the word {w}. What does it mean?", "I read the word {w} today. What does it mean?",
             "How would you define {w}?", "How do you define the word {w}?", "Describe the word {w}.",
             "Describe what {w} means.", "What does {w} refer to?", "Look up {w} for me.",
             "Word: {w}. Meaning?", "I need the definition of {w}.", "Please give me the meaning of {w}.",
             "{w} - what does it mean?", "Tell me about the word {w}.", "What is the sense of {w}?",
             "Is {w} a word? What does it mean?", "Say what {w} means.", "Give a short definition of {w}.",
             "The word {w}: what does it mean?", "Meaning of \"{w}\", please.",
             # the word quoted in one sentence, the question in the next
             "I saw \"{w}\" in a book. What does it mean?", "Someone said \"{w}\" to me. What is it?",
             "My friend used the word \"{w}\". What does it mean?", "\"{w}\" came up today. Meaning?",
             "There is a word, \"{w}\". What is it?", "I found \"{w}\" in a text. What does it mean?",
             "People say \"{w}\" a lot. What is it?", "I heard \"{w}\" on the radio. What does it mean?",
             # an imperative about "the word / the name / the expression X", often with ", please"
             "Clarify the word {w}, please.", "Describe the word {w}, please.", "Interpret the word {w} for me.",
             "Go over the word {w} for me.", "Tell me about the expression {w}, please.",
             "Break down the word {w} for me.", "Clarify what {w} means.", "Give me the sense of {w}, please.",
             "Teach me the word {w}.", "Tell me what the name {w} stands for."]
# A core that writes the word bare is asked with it in double quotes this often: a quoted word is
# a different token from the same word after a space, and the answer must map one to the other.
DEF_QUOTE_SHARE = 0.3
DEF_LEADS = ["", "", "", "", "Hey, ", "Quick question: ", "Hi! ", "Sorry, ", "One more: ", "Hello. "]
DEF_TAILS = ["", "", "", "", " Thanks.", " Thank you!", " Keep it short.", " Just one sentence."]
DEF_EVAL_PHRASES = ["Could you explain the word {w} to me?", "I keep hearing \"{w}\". What is that?",
                    "Explain the term {w}, please.", "In plain words, {w} means what?",
                    "Help me understand what {w} is."]
DEF_OTHER_PHRASES = ["Give me a definition for {w}.", "{w}: what does that word mean?", "Do you know what {w} means?",
                     "Can you define the word {w}?", "Please define {w} for me."]


def def_question(word, rng):
    core = rng.choice(DEF_CORES)
    if "\"{w}\"" not in core and rng.random() < DEF_QUOTE_SHARE:
        core = core.replace("{w}", "\"{w}\"")
    core = core.format(w=word)
    lead = rng.choice(DEF_LEADS)
    if lead.endswith((", ", ": ")) and not core.startswith("I "):  # the question goes on the same sentence
        core = core[0].lower() + core[1:]
    return lead + core + rng.choice(DEF_TAILS)


def held_out_phrasing(question):
    """The held-out phrasing a question is written in, or None."""
    for p in DEF_EVAL_PHRASES + DEF_OTHER_PHRASES:
        pat = re.escape(p).replace(re.escape("{w}"), ".+")
        if re.search(pat, question, re.IGNORECASE):
            return p
    return None


def def_answer(e, rng):
    # The headword is written as most questions write it (" word": after a space, lower case), so
    # the model copies the same tokens instead of learning a capitalised or quoted twin of each word.
    a = f"The word {e['word']} ({e['pos']}) means: {e['def']}."
    if e["examples"] and rng.random() < 0.3:
        a += f" For example: \"{e['examples'][0]}\"."
    return a


def def_conv(e, rng, thinking):
    q = def_question(e["word"], rng)
    reason = rng.choice([f"The user asks what the word {e['word']} means. It is a {e['pos']}.",
                         f"The user wants a definition of the word {e['word']}. No tool is needed.",
                         f"The user asks for the meaning of {e['word']}. I know this word."])
    return [{"role": "user", "content": q},
            {"role": "assistant", "reasoning_content": reason if thinking else "", "content": def_answer(e, rng)}]


# ----------------------------------------------------------------------------------------------
# tool tasks: each returns (messages, expected call) — the call is what eval.py checks

OPS = [("+", ["plus", "+", "added to"]), ("-", ["minus", "-"]), ("*", ["times", "*", "multiplied by", "x"]),
       ("/", ["divided by", "/"])]
CALC_Q = ["What is {e}?", "What's {e}?", "Calculate {e}.", "How much is {e}?", "Compute {e}.", "what is {e}",
          "Can you work out {e}?", "Please calculate {e} for me.", "{e} = ?", "Solve {e}."]


def calc_task(rng):
    if rng.random() < 0.15:  # three operands
        a, b, c = rng.randint(1, 99), rng.randint(1, 99), rng.randint(1, 99)
        o1, o2 = rng.choice("+-*"), rng.choice("+-*")
        expr = f"{a}{o1}{b}{o2}{c}"
        spoken = f"{a} {o1} {b} {o2} {c}"
    else:
        op, words = rng.choice(OPS)
        hi = rng.choice([20, 100, 1000, 10000])
        a, b = rng.randint(1, hi), rng.randint(1, hi if op in "+-" else 100)
        if op == "/" and rng.random() < 0.7:
            a = b * rng.randint(1, 200)  # exact quotients most of the time
        w = rng.choice(words)
        expr = f"{a}{op}{b}"
        spoken = f"{a} {w} {b}" if w not in "+-*/" or rng.random() < 0.5 else f"{a}{w}{b}"
    val = eval(expr)  # digits and + - * / only
    q = rng.choice(CALC_Q).format(e=spoken)
    result = fmt_num(val) if isinstance(val, int) or abs(val - round(val)) < 1e-9 else f"{val:.6g}"
    reason = rng.choice([f"The user asks for {spoken}. I should use the calculator.",
                         "This is arithmetic, so I will call the calculator tool.",
                         f"The user wants the value of {spoken}. I should use the calculator."])
    final_reason = rng.choice([f"The calculator returned {result}.", f"The result is {result}."])
    final = rng.choice([f"{spoken} = {result}.", f"The answer is {result}.", f"{spoken} is {result}."])
    return q, reason, call("calculator", {"expression": expr}), result, final_reason, final


CONV_Q = ["Convert {v} {a} to {b}.", "How many {b} is {v} {a}?", "What is {v} {a} in {b}?",
          "{v} {a} to {b}?", "Please convert {v} {a} into {b}.", "How much is {v} {a} in {b}?"]


def conv_task(rng):
    dim = rng.choice(["len", "len", "mass", "vol", "time", "temp"])
    names = sorted(u for u, d in UNITS.items() if d[0] == dim)
    a, b = rng.sample(names, 2)
    v = rng.choice([rng.randint(1, 500), rng.randint(1, 100), round(rng.uniform(0.5, 100), 1)])
    if dim == "temp":
        v = rng.randint(-40, 120) if a != "kelvin" else rng.randint(200, 400)
    out = convert(v, a, b)
    res = f"{out:.4g}" if abs(out) < 1e5 else f"{out:.6g}"
    vs = fmt_num(v)
    q = rng.choice(CONV_Q).format(v=vs, a=a, b=b)
    reason = rng.choice([f"The user wants to convert {vs} {a} to {b}. I should use convert_units.",
                         "This is a unit conversion, so I will call convert_units."])
    final_reason = f"The tool says {res} {b}."
    final = rng.choice([f"{vs} {a} is {res} {b}.", f"{vs} {a} is about {res} {b}.", f"That is {res} {b}."])
    return q, reason, call("convert_units", {"value": v, "from_unit": a, "to_unit": b}), f"{res} {b}", final_reason, final


DATE_Q = ["How many days are there between {a} and {b}?", "How many days from {a} to {b}?",
          "Count the days between {a} and {b}.", "What is the number of days between {a} and {b}?",
          "How long is it from {a} to {b} in days?"]


def date_task(rng):
    d0 = datetime.date(1990, 1, 1) + datetime.timedelta(days=rng.randint(0, 15000))
    d1 = d0 + datetime.timedelta(days=rng.randint(1, 2000))
    named = rng.random() < 0.35

    def show(d):
        return f"{MONTHS[d.month - 1]} {d.day}, {d.year}" if named else d.isoformat()
    a, b = show(d0), show(d1)
    n = (d1 - d0).days
    q = rng.choice(DATE_Q).format(a=a, b=b)
    reason = rng.choice([f"The user asks how many days lie between {a} and {b}. I should use date_diff.",
                         "This needs a date calculation, so I will call date_diff."])
    final = rng.choice([f"There are {n} days between {a} and {b}.", f"It is {n} days.",
                        f"From {a} to {b} is {n} days."])
    return q, reason, call("date_diff", {"start_date": d0.isoformat(), "end_date": d1.isoformat()}), \
        f"{n} days", f"The tool returned {n} days.", final


TASKS = [calc_task, calc_task, conv_task, date_task]
TOOL_OF = {"calculator": CALC, "convert_units": CONV, "date_diff": DATE}


def tool_conv(task, rng, thinking, stop_after_call=False):
    q, reason, c, result, final_reason, final = task
    msgs = [{"role": "user", "content": q},
            {"role": "assistant", "reasoning_content": reason if thinking else "", "content": "", "tool_calls": [c]}]
    if not stop_after_call:
        msgs += [{"role": "tool", "content": result},
                 {"role": "assistant", "reasoning_content": final_reason if thinking else "", "content": final}]
    return msgs


def pick_tools(rng, needed):
    """A tools list for the preamble: the needed tool plus a random subset of the others, shuffled."""
    ts = [t for t in ALL_TOOLS if t is not needed and rng.random() < 0.6]
    if needed is not None:
        ts.append(needed)
    rng.shuffle(ts)
    return ts


GREET = [("Hello!", "Hello! How can I help you today?"), ("Hi", "Hi! What can I do for you?"),
         ("Who are you?", "I am a small demo model that runs in glmlite. I can define words and use tools "
          "for arithmetic, unit conversion and dates."),
         ("What can you do?", "I can explain the meaning of English words, and I can call tools to do "
          "arithmetic, convert units and count the days between dates."),
         ("Thank you!", "You are welcome!"), ("Thanks.", "You're welcome. Anything else?"),
         ("Good morning", "Good morning! How can I help?"), ("Bye", "Goodbye!")]


def greet_conv(rng, thinking):
    q, a = rng.choice(GREET)
    reason = rng.choice(["The user greets me or asks about me. No tool is needed.",
                         "This is small talk; I answer directly."])
    return [{"role": "user", "content": q},
            {"role": "assistant", "reasoning_content": reason if thinking else "", "content": a}]


# ----------------------------------------------------------------------------------------------

def make_request(rng, kind, words, thinking):
    """One conversation of a given kind; returns (request, eval info or None)."""
    tools = None
    if kind == "def":
        e = rng.choice(words)
        msgs = def_conv(e, rng, thinking)
        if rng.random() < 0.25:
            tools = pick_tools(rng, None) or [CALC]
    elif kind == "greet":
        msgs = greet_conv(rng, thinking)
    elif kind == "tool":
        t = rng.choice(TASKS)(rng)
        msgs = tool_conv(t, rng, thinking)
        if rng.random() < 0.4:
            tools = pick_tools(rng, TOOL_OF[t[2]["function"]["name"]])
    else:  # multi-turn: two or three exchanges; earlier reasoning is dropped by the template
        msgs = []
        for _ in range(rng.randint(2, 3)):
            r = rng.random()
            if r < 0.45:
                msgs += def_conv(rng.choice(words), rng, thinking)
            elif r < 0.9:
                t = rng.choice(TASKS)(rng)
                msgs += tool_conv(t, rng, thinking)
            else:
                msgs += greet_conv(rng, thinking)
        if rng.random() < 0.3:
            tools = list(ALL_TOOLS)
    if rng.random() < 0.08:
        msgs.insert(0, {"role": "system", "content": rng.choice(["You are a helpful assistant.",
                                                                  "You are a concise assistant."])})
    req = {"messages": msgs, "enable_thinking": thinking, "add_generation_prompt": False}
    if tools:
        req["tools"] = tools
    return req


ROLE_TOKENS = ("<|user|>", "<|observation|>", "<|system|>", "<|assistant|>", "<|endoftext|>")


def ids_and_mask(enc, text):
    """Token ids of text + <|endoftext|> and the loss mask over them (see the module docstring)."""
    ids = enc.encode(text + "<|endoftext|>")
    a_id = enc.added_ids["<|assistant|>"]
    stops = {enc.added_ids[t] for t in ROLE_TOKENS}
    mask = np.zeros(len(ids), dtype=np.uint8)
    state = 0  # 0: prompt, 1: the <think> / </think> right after <|assistant|> (prompt), 2: generated
    for i, t in enumerate(ids):
        if state == 2:
            mask[i] = 1
            if t in stops:
                state = 0
        elif state == 1:
            state = 2
        if t == a_id:
            state = 1
    return np.array(ids, dtype=np.int32), mask


def check_render(reqs, glmlite, model_dir):
    """Byte-compare chatfmt.render with `glmlite render` on a sample; returns the count checked."""
    import subprocess
    n = 0
    for r in reqs:
        p = subprocess.run([glmlite, "render", "-m", model_dir], input=json.dumps(r).encode(),
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            raise SystemExit(f"glmlite render failed: {p.stderr.decode()[:300]}")
        got = p.stdout.decode()
        want = chatfmt.render(r)
        if got != want and got.rstrip("\n") != want:
            raise SystemExit(f"render mismatch:\n C : {got!r}\n py: {want!r}")
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--merges", type=int, default=3000)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--convs", type=int, default=20000)
    ap.add_argument("--check-render", metavar="GLMLITE", help="glmlite binary to compare renders with")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    words = load_wordnet(a.words)
    # held-out: a fixed fraction of conversations (perplexity); eval prompts use words that occur
    # in training conversations and tool tasks drawn from a separate stream
    kinds = ["def"] * 40 + ["tool"] * 38 + ["greet"] * 4 + ["multi"] * 18
    reqs = []
    # every word gets at least three definition conversations, so every word is in the training data
    for e in words:
        for k in range(3):
            msgs = def_conv(e, rng, thinking=(k != 1))
            req = {"messages": msgs, "enable_thinking": k != 1, "add_generation_prompt": False}
            if rng.random() < 0.2:
                req["tools"] = pick_tools(rng, None) or [CALC]
            reqs.append(req)
    while len(reqs) < a.convs:
        reqs.append(make_request(rng, rng.choice(kinds), words, thinking=rng.random() < 0.7))
    rng.shuffle(reqs)
    n_held = len(reqs) // 25
    held, train = reqs[:n_held], reqs[n_held:]
    # the words defined in the training part (eval questions are about these)
    train_text = [chatfmt.render(r) for r in train]
    held_text = [chatfmt.render(r) for r in held]
    if a.check_render:
        print("render check:", check_render(train[:150] + held[:50], a.check_render, a.out), "requests identical")

    vocab, merges = bpe_train.train(train_text, a.merges, split_digits=True)
    added = tiny_bpe.glm_added_tokens()
    tiny_bpe.write_tokenizer_json(os.path.join(a.out, "tokenizer.json"), vocab, merges, added)
    tmpl = open(CHAT_TEMPLATE, encoding="utf-8").read()
    tiny_bpe.write_tokenizer_config(os.path.join(a.out, "tokenizer_config.json"), vocab, added, tmpl)
    enc = chatfmt.Encoder(vocab, merges, added)

    stats = {"n_vocab_bpe": len(vocab), "n_added": len(added), "words": len(words)}
    for name, rs, texts in (("train", train, train_text), ("heldout", held, held_text)):
        ids, masks, offs = [], [], [0]
        for t in texts:
            i, m = ids_and_mask(enc, t)
            ids.append(i)
            masks.append(m)
            offs.append(offs[-1] + len(i))
        np.savez(os.path.join(a.out, f"{name}.npz"), ids=np.concatenate(ids), mask=np.concatenate(masks),
                 offsets=np.array(offs, dtype=np.int64))
        with open(os.path.join(a.out, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            for r, t in zip(rs, texts):
                f.write(json.dumps({"request": r, "text": t}, ensure_ascii=False) + "\n")
        stats[name] = {"conversations": len(rs), "tokens": offs[-1], "loss_tokens": int(sum(m.sum() for m in masks))}

    # eval prompts: 20 tool tasks from a separate random stream (checked not to occur in training)
    # and 20 definition questions about training words in phrasings training never used
    train_qs = {m["content"] for r in train for m in r["messages"] if m["role"] == "user"}
    leaked = sorted(q for q in train_qs if held_out_phrasing(q))
    if leaked:
        raise SystemExit(f"training questions in a held-out phrasing: {leaked[:5]}")
    erng = random.Random(a.seed + 1)
    tool_eval = []
    while len(tool_eval) < 20:
        t = TASKS[len(tool_eval) % 4 if len(tool_eval) % 4 < 3 else 3](erng)
        if t[0] in train_qs:
            continue
        tool_eval.append({"prompt": t[0], "call": t[2]["function"]})
    train_all = "\n".join(train_text)
    trained_words = sorted(e["word"] for e in words if def_answer(e, random.Random(0)).split(" (")[0] + " (" in train_all)
    by_word = {e["word"]: e for e in words}
    def_eval = []
    for w in erng.sample(trained_words, 20):
        def_eval.append({"prompt": erng.choice(DEF_EVAL_PHRASES).format(w=w), "word": w, "pos": by_word[w]["pos"],
                         "def": by_word[w]["def"]})
    with open(os.path.join(a.out, "eval_prompts.json"), "w", encoding="utf-8") as f:
        json.dump({"tools": tool_eval, "definitions": def_eval}, f, indent=1, ensure_ascii=False)
    with open(os.path.join(a.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
