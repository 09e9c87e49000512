"""GLM-4.7 prompt rendering and a cached tokenizer for the demo-model tools (tools/demo only).

Owns: render(req) -> str, a Python transcription of the official chat template (SPEC section 7)
for the message shapes the demo data uses (string contents, reasoning_content, tool_calls with
mapping arguments, tool results), and Encoder, tiny_bpe's encoder with a per-piece cache so that
millions of tokens encode in seconds. make_data.py checks render() byte-for-byte against
`glmlite render` (or the C renderer) on a sample before it writes anything; eval.py uses the same
functions, so training, evaluation and the engine see identical text and ids.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tiny_bpe  # noqa: E402

TOOLS_HEAD = ("<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
              "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n")
TOOLS_TAIL = ("\n</tools>\n\nFor each function call, output the function name and arguments within the following "
              "XML format:\n<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}"
              "</arg_value><arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>...</tool_call>")

# Python's str.strip() whitespace set is what the template's |trim uses (jinja2 calls str.strip)


def _arg_text(v):
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def render_call(call):
    f = call["function"]
    s = "<tool_call>" + f["name"]
    for k, v in f["arguments"].items():
        s += "<arg_key>" + k + "</arg_key><arg_value>" + _arg_text(v) + "</arg_value>"
    return s + "</tool_call>"


def render(req):
    """req = {"messages", "tools"?, "enable_thinking"?, "add_generation_prompt"?} -> prompt text."""
    msgs = req["messages"]
    out = ["[gMASK]<sop>"]
    if req.get("tools"):
        out.append(TOOLS_HEAD + "\n".join(json.dumps(t, ensure_ascii=False) for t in req["tools"]) + TOOLS_TAIL)
    last_user = max([i for i, m in enumerate(msgs) if m["role"] == "user"], default=-1)
    for i, m in enumerate(msgs):
        r = m["role"]
        if r == "system":
            out.append("<|system|>" + m["content"])
        elif r == "user":
            out.append("<|user|>" + m["content"])
        elif r == "assistant":
            content = m.get("content") or ""
            reasoning = m.get("reasoning_content") or ""
            s = "<|assistant|>"
            if i > last_user and reasoning.strip():
                s += "<think>" + reasoning.strip() + "</think>"
            else:
                s += "</think>"
            if content.strip():
                s += content.strip()
            for c in m.get("tool_calls") or []:
                s += render_call(c)
            out.append(s)
        elif r == "tool":
            s = "" if i > 0 and msgs[i - 1]["role"] == "tool" else "<|observation|>"
            out.append(s + "<tool_response>" + m["content"] + "</tool_response>")
        else:
            raise ValueError(f"unknown role {r!r}")
    if req.get("add_generation_prompt"):
        out.append("<|assistant|>" + ("</think>" if req.get("enable_thinking") is False else "<think>"))
    return "".join(out)


class Encoder:
    """tiny_bpe.encode with the added tokens matched first and a cache per pre-tokenized piece."""

    def __init__(self, vocab, merges, added):
        self.vocab, self.added = vocab, list(added)
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.base = len(vocab)
        self.added_ids = {t: self.base + k for k, t in enumerate(self.added)}
        self.by_len = sorted(self.added, key=len, reverse=True)
        self.cache = {}
        self.inv = {v: k for k, v in vocab.items()}

    def _plain(self, seg, ids):
        for p in tiny_bpe.pre_tokenize(seg):
            r = self.cache.get(p)
            if r is None:
                r = [self.vocab[s] for s in tiny_bpe._bpe_word(tiny_bpe.byte_level(p), self.ranks)]
                self.cache[p] = r
            ids.extend(r)

    def encode(self, text):
        ids, i, start = [], 0, 0
        while True:
            j = text.find("<", i)
            k = text.find("[", i)
            k2 = text.find("/nothink", i)
            cands = [x for x in (j, k, k2) if x >= 0]
            if not cands:
                break
            i = min(cands)
            hit = next((t for t in self.by_len if text.startswith(t, i)), None)
            if hit:
                self._plain(text[start:i], ids)
                ids.append(self.added_ids[hit])
                i += len(hit)
                start = i
            else:
                i += 1
        self._plain(text[start:], ids)
        return ids

    def decode(self, ids):
        out = bytearray()
        for t in ids:
            if t >= self.base:
                if t - self.base < len(self.added):
                    out += self.added[t - self.base].encode()
            else:
                out += bytes(tiny_bpe.BYTE_DEC[c] for c in self.inv[t])
        return out.decode("utf-8", errors="replace")


def load_tokenizer(path):
    """(vocab, merges, added) back from a tokenizer.json written by tiny_bpe.write_tokenizer_json."""
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    merges = [tuple(m) for m in tj["model"]["merges"]]
    added = [a["content"] for a in sorted(tj["added_tokens"], key=lambda a: a["id"])]
    return vocab, merges, added
