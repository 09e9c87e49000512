"""Tiny byte-level BPE: trainer, encoder and Hugging Face `tokenizer.json` writer (tools only).

Owns: the GLM-4 pre-tokenizer regex (SPEC section 3) hand-coded with unicodedata (Debian's python
has no `regex` module), GPT-2 bytes_to_unicode, a deterministic BPE trainer, a reference encoder
(added tokens matched first, then split, then merges by rank) and the tokenizer.json /
tokenizer_config.json layout GLM-4.7-Flash uses. The test checkpoints and the demo model both get
their tokenizer from here, so the engine's tokenizer is exercised on a real HF-format file.

API: train_bpe(texts, n_merges) -> (vocab, merges); encode(text, vocab, merges, added) -> ids;
write_tokenizer_json(path, vocab, merges, added_tokens); glm_added_tokens(); default_tokenizer().
"""
import json
import os
import unicodedata

GLM_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                   r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

ADDED_TOKENS_TSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                                "glm-4.7-flash", "added_tokens.tsv")

# The 36 GLM-4.7-Flash added tokens in id order (copy of added_tokens.tsv, so the tools also work
# where the shared data directory is absent; glm_added_tokens() checks the two agree when it can).
GLM_ADDED_TOKENS = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
    "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>", "<think>",
    "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<arg_key>",
    "</arg_key>", "<arg_value>", "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>",
    "<|image|>", "<|video|>",
]


def glm_added_tokens():
    for p in (ADDED_TOKENS_TSV,):
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                rows = [ln.rstrip("\n").split("\t") for ln in f.read().splitlines()[1:] if ln]
            toks = [r[1] for r in rows]
            if toks != GLM_ADDED_TOKENS:
                raise RuntimeError(f"{p} disagrees with tiny_bpe.GLM_ADDED_TOKENS")
            break
    return list(GLM_ADDED_TOKENS)


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable char map; its order defines ids 0..255."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_ENC = bytes_to_unicode()
BYTE_DEC = {c: b for b, c in BYTE_ENC.items()}
BYTE_ORDER = list(BYTE_ENC.values())  # id i <-> BYTE_ORDER[i]

# ---------------------------------------------------------------------------------------------
# pre-tokenizer: GLM_SPLIT_REGEX, alternative by alternative (leftmost-first, with the backtracking
# each alternative needs spelled out)

_WS = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | \
    {chr(c) for c in range(0x2000, 0x200B)}  # Unicode White_Space, what \s means in Oniguruma


def _is_l(c):
    return unicodedata.category(c)[0] == "L"


def _is_n(c):
    return unicodedata.category(c)[0] == "N"


def _is_s(c):
    return c in _WS


_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


def _fold(c):
    return "s" if c == "\u017f" else c.lower()  # U+017F LONG S simple-folds to 's'


def _match_at(t, i):
    n = len(t)
    c = t[i]
    # 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c == "'":
        for w in _CONTRACTIONS:
            if i + 1 + len(w) <= n and all(_fold(t[i + 1 + k]) == w[k] for k in range(len(w))):
                return i + 1 + len(w)
    # 2. [^\r\n\p{L}\p{N}]?\p{L}+
    j = None
    if _is_l(c):
        j = i
    elif c not in "\r\n" and not _is_n(c) and i + 1 < n and _is_l(t[i + 1]):
        j = i + 1
    if j is not None:
        while j < n and _is_l(t[j]):
            j += 1
        return j
    # 3. \p{N}{1,3}
    if _is_n(c):
        j = i
        while j < n and j - i < 3 and _is_n(t[j]):
            j += 1
        return j

    # 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    def sym(ch):
        return not _is_s(ch) and not _is_l(ch) and not _is_n(ch)
    j = None
    if c == " " and i + 1 < n and sym(t[i + 1]):
        j = i + 1
    elif sym(c):
        j = i
    if j is not None:
        while j < n and sym(t[j]):
            j += 1
        while j < n and t[j] in "\r\n":
            j += 1
        return j
    # c is whitespace from here on
    e = i
    while e < n and _is_s(t[e]):
        e += 1
    # 5. \s*[\r\n]+ : ends after the last CR/LF of the whitespace run
    for k in range(e - 1, i - 1, -1):
        if t[k] in "\r\n":
            return k + 1
    # 6. \s+(?!\S) ; 7. \s+
    if e == n:
        return e
    if e - 1 > i:
        return e - 1
    return e


def pre_tokenize(text):
    """Split like the GLM-4 regex with behaviour Isolated (every char belongs to some match)."""
    out, i = [], 0
    while i < len(text):
        j = _match_at(text, i)
        out.append(text[i:j])
        i = j
    return out


def byte_level(piece):
    return "".join(BYTE_ENC[b] for b in piece.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# training and encoding

def train_bpe(texts, n_merges):
    """Deterministic byte-level BPE training.

    Returns (vocab: dict token-string -> id, merges: list of (a, b)). Ids 0..255 are the byte tokens
    in bytes_to_unicode order; merged tokens follow in merge order. The most frequent adjacent pair
    wins; ties go to the lexicographically smallest pair so the result does not depend on hashing.
    """
    words = {}
    for text in texts:
        for p in pre_tokenize(text):
            w = tuple(byte_level(p))
            words[w] = words.get(w, 0) + 1
    vocab = {c: i for i, c in enumerate(BYTE_ORDER)}
    merges = []
    words = list(words.items())
    while len(merges) < n_merges:
        counts = {}
        for w, f in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + f
        if not counts:
            break
        best = max(counts.items(), key=lambda kv: (kv[1], _neg(kv[0])))[0]
        merges.append(best)
        tok = best[0] + best[1]
        if tok not in vocab:
            vocab[tok] = len(vocab)
        words = [(_merge_word(w, best, tok), f) for w, f in words]
    return vocab, merges


class _neg:
    """Inverts string ordering inside max() so ties pick the smallest pair."""
    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, o):
        return self.v > o.v

    def __eq__(self, o):
        return self.v == o.v


def _merge_word(w, pair, tok):
    out, i = [], 0
    while i < len(w):
        if i + 1 < len(w) and w[i] == pair[0] and w[i + 1] == pair[1]:
            out.append(tok)
            i += 2
        else:
            out.append(w[i])
            i += 1
    return tuple(out)


def _bpe_word(word, ranks):
    syms = list(word)
    while len(syms) > 1:
        best, bi = None, -1
        for k in range(len(syms) - 1):
            r = ranks.get((syms[k], syms[k + 1]))
            if r is not None and (best is None or r < best):
                best, bi = r, k
        if best is None:
            break
        pair = (syms[bi], syms[bi + 1])
        syms = list(_merge_word(tuple(syms), pair, pair[0] + pair[1]))
    return syms


def encode(text, vocab, merges, added_tokens=(), added_base=None):
    """Reference encoder: added tokens (longest literal first), then split + byte-level + BPE."""
    ranks = {tuple(m): i for i, m in enumerate(merges)}
    added_base = len(vocab) if added_base is None else added_base
    added = {t: added_base + k for k, t in enumerate(added_tokens)}
    by_len = sorted(added, key=len, reverse=True)
    ids, i, start = [], 0, 0

    def flush(seg):
        for p in pre_tokenize(seg):
            for s in _bpe_word(byte_level(p), ranks):
                ids.append(vocab[s])
    while i < len(text):
        hit = next((t for t in by_len if text.startswith(t, i)), None)
        if hit:
            flush(text[start:i])
            ids.append(added[hit])
            i += len(hit)
            start = i
        else:
            i += 1
    flush(text[start:])
    return ids


def decode(ids, vocab, added_tokens=(), added_base=None):
    inv = {v: k for k, v in vocab.items()}
    added_base = len(vocab) if added_base is None else added_base
    out = bytearray()
    for t in ids:
        if t >= added_base:
            out += added_tokens[t - added_base].encode()
        else:
            out += bytes(BYTE_DEC[c] for c in inv[t])
    return out.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# files

def tokenizer_json(vocab, merges, added_tokens):
    base = len(vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": base + k, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for k, t in enumerate(added_tokens)
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": GLM_SPLIT_REGEX}, "behavior": "Isolated",
                 "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,  # GLM adds no BOS/EOS; the chat template writes [gMASK]<sop>
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1])),
            "merges": [[a, b] for a, b in merges],
        },
    }


def write_tokenizer_json(path, vocab, merges, added_tokens):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(vocab, merges, added_tokens), f, ensure_ascii=False, indent=1)
        f.write("\n")


def write_tokenizer_config(path, vocab, added_tokens, chat_template=None):
    base = len(vocab)
    cfg = {
        "added_tokens_decoder": {
            str(base + k): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                            "single_word": False, "special": True}
            for k, t in enumerate(added_tokens)
        },
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 128000,
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if chat_template is not None:
        cfg["chat_template"] = chat_template
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
        f.write("\n")


TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the woods.
Once upon a time there was a small village by the sea. The people of the village were fishermen, and
every morning they went out in their boats to catch fish. In the evening they came back, sold the
fish at the market, and told stories about the weather, the waves and the strange things they had
seen. One day a child asked her grandmother: "Why is the sea so big?" The grandmother smiled and said
that the sea is as big as the stories people tell about it.
Hello, world! How are you today? I'm fine, thank you. It's a beautiful day, isn't it? We've been
waiting for the train since 9:30, and it's already 10:15. They'll arrive at 12 o'clock.
The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.
Water boils at 100 degrees Celsius and freezes at 0 degrees. The speed of light is about 300000
kilometres per second. There are 365 days in a year, 24 hours in a day, and 60 minutes in an hour.
def hello(name):
    print("Hello, " + name + "!")
    return len(name)

for i in range(10):
    if i % 2 == 0:
        print(i, "is even")
The weather today is sunny with a few clouds. Tomorrow it will rain in the morning and clear up in
the afternoon. Please remember to bring an umbrella when you go to work or to school.
Questions and answers: What is the weather in Paris? It is 18 degrees and cloudy. Can you call the
function to get the current time? Yes, I can do that for you.
"""


_DEFAULT = None


def default_tokenizer(n_merges=200):
    """(vocab, merges, added_tokens) trained on TRAINING_TEXT; cached per process."""
    global _DEFAULT
    if _DEFAULT is None or _DEFAULT[0] != n_merges:
        vocab, merges = train_bpe([TRAINING_TEXT], n_merges)
        _DEFAULT = (n_merges, vocab, merges, glm_added_tokens())
    return _DEFAULT[1], _DEFAULT[2], _DEFAULT[3]
