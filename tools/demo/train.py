#!/usr/bin/python3
"""Train the glmlite demo model (tools/demo only).

Owns: batching (conversations bucketed by length into ~`--batch-tokens` padded batches, loss only
on the assistant tokens make_data.py marked), the optimiser and a wall-clock learning-rate
schedule (warmup, then cosine to 10% over `--minutes`), the aux-loss-free router bias update,
resumable checkpoints (`--work`/ckpt.pt, every few minutes), held-out perplexity, and export of
the finished model in the HF layout (bf16 weights, f32 router bias) with the tokenizer files.

usage: train.py --data DIR --work DIR --out models/demo [--minutes 118] [--threads 1]
A killed run restarts from the last checkpoint with the same command.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402


def load_split(data, name):
    d = np.load(os.path.join(data, f"{name}.npz"))
    o, ids, mask = d["offsets"], d["ids"], d["mask"]  # each d[...] access decompresses: read once
    return [(ids[o[k]:o[k + 1]], mask[o[k]:o[k + 1]]) for k in range(len(o) - 1)]


def batches(convs, batch_tokens, rng):
    """Length-bucketed batches: shuffle, sort chunks of 64*bucket by length, cut by padded size."""
    order = list(range(len(convs)))
    rng.shuffle(order)
    out = []
    chunk = 2048
    for s in range(0, len(order), chunk):
        part = sorted(order[s:s + chunk], key=lambda i: len(convs[i][0]))
        cur = []
        for i in part:
            T = len(convs[i][0])
            if cur and (len(cur) + 1) * T > batch_tokens:
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
    rng.shuffle(out)
    return out


def collate(convs, idx, pad):
    T = max(len(convs[i][0]) for i in idx)
    ids = np.full((len(idx), T), pad, dtype=np.int64)
    mask = np.zeros((len(idx), T), dtype=bool)
    for r, i in enumerate(idx):
        a, m = convs[i]
        ids[r, :len(a)] = a
        mask[r, :len(m)] = m.astype(bool)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def loss_on(model, ids, mask):
    """Summed NLL over the marked target positions and their count (logits only where needed)."""
    B, T = ids.shape
    cos, sin = model.rope(T)
    attn_mask = torch.full((T, T), float("-inf")).triu(1)
    h = model.model.embed_tokens(ids)
    for layer in model.model.layers:
        h = layer(h, cos, sin, attn_mask)
    tgt_mask = mask[:, 1:]                     # target t+1 predicted at position t
    hs = h[:, :-1][tgt_mask]
    logits = model.lm_head(model.model.norm(hs))
    tg = ids[:, 1:][tgt_mask]
    return F.cross_entropy(logits.float(), tg, reduction="sum"), int(tg.numel())


@torch.no_grad()
def evaluate(model, convs, pad, batch_tokens=8192, all_tokens=False):
    """Held-out loss per marked token (or per every predicted token when all_tokens)."""
    model.eval()
    tot, n = 0.0, 0
    order = sorted(range(len(convs)), key=lambda i: len(convs[i][0]))
    cur = []
    groups = []
    for i in order:
        if cur and (len(cur) + 1) * len(convs[i][0]) > batch_tokens:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    for g in groups:
        ids, mask = collate(convs, g, pad)
        if all_tokens:
            mask = torch.zeros_like(mask)
            for r, i in enumerate(g):
                mask[r, 1:len(convs[i][0])] = True
        lsum, cnt = loss_on(model, ids, mask)
        tot += lsum.item()
        n += cnt
    model.train()
    return tot / n, n


def lr_at(frac, peak, warm=0.03):
    if frac < warm:
        return peak * frac / warm
    f = min(1.0, (frac - warm) / (1 - warm))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * f)))


def export(model, a, cfg, eos, pad):
    """The HF checkpoint directory: weights, config, tokenizer files, generation_config."""
    M.save_hf(model, a.out, dtype="bf16")
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(a.data, fn), os.path.join(a.out, fn))
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "do_sample": True, "eos_token_id": eos, "pad_token_id": pad,
                   "temperature": 1.0, "top_p": 0.95, "transformers_version": cfg["transformers_version"]}, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=118.0)
    # one thread: on the shared 2-core machine torch ran this small model at ~2,800 tokens/s on
    # one thread pinned to a core, against ~1,400-1,700 on two threads competing with other jobs
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bias-gamma", type=float, default=1e-3)
    ap.add_argument("--config", default="{}", help="JSON overrides of model.config_dict sizes")
    ap.add_argument("--export-only", action="store_true",
                    help="write the last checkpoint of --work to --out (bf16) and stop, to evaluate a run in progress")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.work, exist_ok=True)
    log = open(os.path.join(a.work, "train.log"), "a")

    def say(s):
        print(s, flush=True)
        log.write(s + "\n")
        log.flush()

    with open(os.path.join(a.data, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    n_ids = len(tj["model"]["vocab"]) + len(tj["added_tokens"])
    tid = {t["content"]: t["id"] for t in tj["added_tokens"]}
    eos = [tid["<|endoftext|>"], tid["<|user|>"], tid["<|observation|>"]]
    pad = tid["<|endoftext|>"]
    cfg = M.config_dict((n_ids + 63) // 64 * 64, eos, pad, **json.loads(a.config))
    train, held = load_split(a.data, "train"), load_split(a.data, "heldout")

    model = M.Glm4MoeLite(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "gate.weight" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "gate.weight" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    ck = os.path.join(a.work, "ckpt.pt")
    state = {"elapsed": 0.0, "step": 0, "epoch": 0, "pos": 0, "tokens": 0}
    if os.path.exists(ck):
        s = torch.load(ck)
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["opt"])
        state = s["state"]
        say(f"resumed at step {state['step']}, {state['elapsed'] / 60:.1f} min")
    n_params = sum(p.numel() for p in model.parameters())
    say(f"params {n_params} ({n_params / 1e6:.2f} M); config {json.dumps(cfg)}")
    say(f"train {len(train)} convs {sum(len(c[0]) for c in train)} tokens; held-out {len(held)} convs")

    if a.export_only:
        M.round_bf16_(model)
        export(model, a, cfg, eos, pad)
        return
    budget = a.minutes * 60
    t0 = time.time() - state["elapsed"]
    last_ck = time.time()
    run_loss, run_n = 0.0, 0
    while True:
        rng = random.Random(a.seed * 1000 + state["epoch"])
        bl = batches(train, a.batch_tokens, rng)
        while state["pos"] < len(bl):
            elapsed = time.time() - t0
            if elapsed >= budget:
                break
            lr = lr_at(elapsed / budget, a.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            ids, mask = collate(train, bl[state["pos"]], pad)
            lsum, cnt = loss_on(model, ids, mask)
            loss = lsum / max(cnt, 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            model.update_router_bias(a.bias_gamma)
            state["pos"] += 1
            state["step"] += 1
            state["tokens"] += int(ids.numel())
            run_loss += lsum.item()
            run_n += cnt
            if state["step"] % 50 == 0:
                say(f"step {state['step']} ep {state['epoch']} {elapsed / 60:.1f}min lr {lr:.2e} "
                    f"loss {run_loss / run_n:.4f} tok/s {state['tokens'] / max(elapsed, 1):.0f}")
                run_loss, run_n = 0.0, 0
            if time.time() - last_ck > 240:
                state["elapsed"] = time.time() - t0
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, ck + ".tmp")
                os.replace(ck + ".tmp", ck)
                last_ck = time.time()
        if time.time() - t0 >= budget:
            break
        state["epoch"] += 1
        state["pos"] = 0
        hl, _ = evaluate(model, held, pad)
        say(f"epoch {state['epoch']} done: held-out assistant-token loss {hl:.4f} ppl {math.exp(hl):.3f}")

    state["elapsed"] = time.time() - t0
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, ck)
    # what ships is bf16: measure the shipped weights
    M.round_bf16_(model)
    hl, n = evaluate(model, held, pad)
    ha, na = evaluate(model, held, pad, all_tokens=True)
    res = {"heldout_assistant_loss": hl, "heldout_assistant_ppl": math.exp(hl), "heldout_assistant_tokens": n,
           "heldout_all_loss": ha, "heldout_all_ppl": math.exp(ha), "heldout_all_tokens": na,
           "steps": state["step"], "epochs": state["epoch"] + state["pos"] / max(1, len(bl)),
           "train_tokens_seen": state["tokens"], "minutes": state["elapsed"] / 60, "params": n_params}
    say("final (bf16 weights): " + json.dumps(res))
    export(model, a, cfg, eos, pad)
    with open(os.path.join(a.work, "train_result.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
