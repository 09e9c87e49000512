#!/usr/bin/env python3
"""Copies a checkpoint directory and breaks it in one named way, for the
loader's error tests. Standard library only.

  corrupt_checkpoint.py --in DIR --out DIR --mode MODE [--tensor NAME]

Modes: truncate, header-past-eof, offset-out-of-range, wrong-dtype,
wrong-shape, missing-tensor, missing-config-key, unknown-model-type,
corrupt-header, defined-twice (the tensor also written into another shard)."""
import argparse
import json
import os
import shutil
import struct


def shard_of(d, name):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            return os.path.join(d, json.load(f)["weight_map"][name])
    return os.path.join(d, "model.safetensors")


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write(path, header, data):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--tensor", default="model.layers.1.self_attn.o_proj.weight")
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    shutil.copytree(a.src, a.out)
    path = shard_of(a.out, a.tensor)
    cfg_path = os.path.join(a.out, "config.json")
    m = a.mode
    if m == "truncate":
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size - 100)
    elif m == "header-past-eof":
        with open(path, "r+b") as f:
            f.write(struct.pack("<Q", os.path.getsize(path) + 1))
    elif m == "corrupt-header":
        with open(path, "r+b") as f:
            f.seek(8)
            f.write(b"{\"x\": [")
    elif m in ("offset-out-of-range", "wrong-dtype", "wrong-shape", "missing-tensor"):
        header, data = read(path)
        t = header[a.tensor]
        if m == "offset-out-of-range":
            t["data_offsets"] = [t["data_offsets"][0], len(data) + 4]
        elif m == "wrong-dtype":
            t["dtype"] = "I32" if t["dtype"] == "F32" else "I16"
        elif m == "wrong-shape":
            t["shape"] = [t["shape"][1], t["shape"][0]]
        else:
            del header[a.tensor]
        write(path, header, data)
    elif m == "defined-twice":
        header, data = read(path)
        start, end = header[a.tensor]["data_offsets"]
        with open(os.path.join(a.out, "model.safetensors.index.json")) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        other = os.path.join(a.out, next(s for s in shards if os.path.join(a.out, s) != path))
        oh, od = read(other)
        oh[a.tensor] = dict(header[a.tensor], data_offsets=[len(od), len(od) + end - start])
        write(other, oh, od + data[start:end])
    elif m in ("missing-config-key", "unknown-model-type"):
        with open(cfg_path) as f:
            cfg = json.load(f)
        if m == "missing-config-key":
            del cfg["kv_lora_rank"]
        else:
            cfg["model_type"] = "llama"
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
    else:
        raise SystemExit("unknown mode " + m)


if __name__ == "__main__":
    main()
