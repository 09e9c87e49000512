"""Incremental byte-level BPE trainer for the demo model's corpus (tools/demo only).

Owns: train(texts, n_merges), which returns exactly what tiny_bpe.train_bpe returns (same
pre-tokenizer, byte order, most-frequent-pair rule and smallest-pair tie break) but updates pair
counts incrementally with a lazy heap, so a few thousand merges over a megabyte-sized corpus take
seconds instead of hours. `python3 tools/demo/bpe_train.py` checks the equality on a small text.
"""
import heapq
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tiny_bpe  # noqa: E402


def word_counts(texts):
    words = {}
    for text in texts:
        for p in tiny_bpe.pre_tokenize(text):
            words[p] = words.get(p, 0) + 1
    return words


def has_digit(sym):
    return any(c in "0123456789" for c in sym)


def train(texts, n_merges, counts=None, split_digits=False):
    """split_digits: never merge a pair that contains a digit, so every digit stays its own token
    (a small model then copies numbers digit by digit instead of learning a rare token per number)."""
    counts = counts if counts is not None else word_counts(texts)
    words = [list(tiny_bpe.byte_level(p)) for p in counts]
    freq = list(counts.values())
    pc, where = {}, {}
    for wi, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            if split_digits and (has_digit(a) or has_digit(b)):
                continue
            pc[(a, b)] = pc.get((a, b), 0) + freq[wi]
            where.setdefault((a, b), set()).add(wi)
    heap = [(-c, p) for p, c in pc.items()]
    heapq.heapify(heap)
    vocab = {c: i for i, c in enumerate(tiny_bpe.BYTE_ORDER)}
    merges = []
    while len(merges) < n_merges and heap:
        negc, best = heapq.heappop(heap)
        if pc.get(best, 0) != -negc or negc == 0:
            continue  # stale entry
        merges.append(best)
        tok = best[0] + best[1]
        if tok not in vocab:
            vocab[tok] = len(vocab)
        changed = set()
        for wi in list(where.get(best, ())):
            w, f = words[wi], freq[wi]
            for a, b in zip(w, w[1:]):
                if split_digits and (has_digit(a) or has_digit(b)):
                    continue
                pc[(a, b)] -= f
                changed.add((a, b))
                s = where.get((a, b))
                if s is not None:
                    s.discard(wi)
            nw, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == best[0] and w[i + 1] == best[1]:
                    nw.append(tok)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            words[wi] = nw
            for a, b in zip(nw, nw[1:]):
                if split_digits and (has_digit(a) or has_digit(b)):
                    continue
                pc[(a, b)] = pc.get((a, b), 0) + f
                changed.add((a, b))
                where.setdefault((a, b), set()).add(wi)
        for p in changed:
            c = pc.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pc.pop(p, None)
    return vocab, merges


if __name__ == "__main__":
    for n in (50, 150, 400):
        ref = tiny_bpe.train_bpe([tiny_bpe.TRAINING_TEXT], n)
        got = train([tiny_bpe.TRAINING_TEXT], n)
        assert ref == got, f"mismatch at {n} merges"
    print("bpe_train: identical to tiny_bpe.train_bpe")
