#!/usr/bin/python3
"""Random GLM-4.7-Flash-family checkpoints in the exact Hugging Face layout, for tests and benchmarks.

Owns: the test presets (config.json values), the tensor inventory of SPEC section 4.1 (including
the MTP layer stored at index num_hidden_layers, which engines must skip), weight initialisation,
and writing a complete model directory: config.json, generation_config.json, tokenizer.json,
tokenizer_config.json and model.safetensors (or shards + model.safetensors.index.json).

Usage: gen_checkpoint.py --preset tiny|groups|yarn|v2lite|flash|tinyq --dtype f32|bf16|f16 --out DIR
                         [--seed N] [--layers N] [--shards N] [--no-mtp]

Weights are drawn from a discretised normal: 16 random bits per element index a 65536-entry table
of normal quantiles that is already scaled and rounded to the output dtype. That is one cheap
gather per element (the `flash` preset writes several GB), every value is exactly representable
in the dtype the file stores, and each tensor has its own stream seeded from (seed, tensor name),
so the result does not depend on write order or sharding.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as stn  # noqa: E402
import tiny_bpe  # noqa: E402

DTYPES = {"f32": ("F32", "float32"), "bf16": ("BF16", "bfloat16"), "f16": ("F16", "float16")}
PRESETS = ("tiny", "groups", "yarn", "v2lite", "flash", "tinyq")
# the official template, copied into tokenizer_config.json when the shared data directory is present
CHAT_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                             "glm-4.7-flash", "chat_template.jinja")


def _tokenizer():
    vocab, merges, added = tiny_bpe.default_tokenizer()
    base = len(vocab)
    ids = {t: base + k for k, t in enumerate(added)}
    return vocab, merges, added, ids


def preset_config(name, layers=None, mtp=True):
    """config.json contents for a preset (every key of SPEC section 2.1, real key names)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    vocab, _, added, ids = _tokenizer()
    n_ids = len(vocab) + len(added)
    eos = [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]
    c = {
        "architectures": ["Glm4MoeLiteForCausalLM"],
        "model_type": "glm4_moe_lite",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": 128,
        "intermediate_size": 256,
        "initializer_range": 0.02,
        "max_position_embeddings": 202752,
        "moe_intermediate_size": 48,
        "n_group": 1,
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "norm_topk_prob": True,
        "num_attention_heads": 4,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 3,
        "num_key_value_heads": 4,
        "num_nextn_predict_layers": 1,
        "partial_rotary_factor": 1.0,
        "q_lora_rank": 48,
        "kv_lora_rank": 32,
        "qk_nope_head_dim": 24,
        "qk_rope_head_dim": 8,
        "v_head_dim": 32,
        "first_k_dense_replace": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "routed_scaling_factor": 1.8,
        "tie_word_embeddings": False,
        "topk_group": 1,
        "topk_method": "noaux_tc",
        "transformers_version": "5.0.0rc0",
        "use_cache": True,
        "vocab_size": (n_ids + 63) // 64 * 64,  # untrained padding ids, as in the real model
        "dtype": "bfloat16",
    }
    if name == "groups":
        c.update(n_routed_experts=16, num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=2,
                 tie_word_embeddings=True, eos_token_id=ids["<|endoftext|>"])
        del c["first_k_dense_replace"]
        c["mlp_layer_types"] = None  # filled below once the layer count is known
    elif name == "yarn":
        c.update(architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", max_position_embeddings=64,
                 rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                               "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.7},
                 rope_interleave=False, scoring_func="sigmoid")
    elif name == "v2lite":
        c.update(architectures=["DeepseekV2ForCausalLM"], model_type="deepseek_v2", q_lora_rank=None,
                 scoring_func="softmax", topk_method="greedy", norm_topk_prob=False, routed_scaling_factor=1.0,
                 n_shared_experts=2, moe_layer_freq=1, num_nextn_predict_layers=0)
    elif name == "flash":
        c.update(hidden_size=2048, num_attention_heads=20, num_key_value_heads=20, q_lora_rank=768,
                 kv_lora_rank=512, qk_nope_head_dim=192, qk_rope_head_dim=64, v_head_dim=256,
                 intermediate_size=10240, moe_intermediate_size=1536, n_routed_experts=64,
                 num_experts_per_tok=4, vocab_size=154880, num_hidden_layers=4)
    elif name == "tinyq":
        # tiny, with every quantized axis (hidden, q/kv latents, expert and dense widths, o_proj's input, the
        # embed_q/unembed_out axes) a multiple of 64, so mlx-lm's group sizes divide them (quantization tests)
        c.update(q_lora_rank=128, kv_lora_rank=128, num_attention_heads=2, num_key_value_heads=2,
                 qk_nope_head_dim=64, qk_rope_head_dim=16, v_head_dim=64, moe_intermediate_size=128)
    if layers is not None:
        if layers < 1:
            raise ValueError("--layers must be >= 1")
        c["num_hidden_layers"] = layers
    if "mlp_layer_types" in c:
        c["mlp_layer_types"] = ["dense"] + ["sparse"] * (c["num_hidden_layers"] - 1)
    if not mtp:
        c["num_nextn_predict_layers"] = 0
    return dict(sorted(c.items()))


def _is_moe(c, i):
    if c.get("mlp_layer_types") is not None:
        return c["mlp_layer_types"][i] == "sparse"
    return i >= c.get("first_k_dense_replace", 0) and i % c.get("moe_layer_freq", 1) == 0


def tensor_specs(c, st_dtype):
    """-> list of (name, safetensors dtype, shape, init) in HF names; init = (kind, scale)."""
    D, H = c["hidden_size"], c["num_attention_heads"]
    dn, dr, dv = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    rq, rkv, V = c["q_lora_rank"], c["kv_lora_rank"], c["vocab_size"]
    out = []

    def lin(name, o, i, gain=1.0):
        out.append((name, st_dtype, (o, i), ("normal", gain / np.sqrt(i))))

    def norm(name, n):
        out.append((name, st_dtype, (n,), ("norm", 0.1)))

    def mlp(p, width):
        lin(p + "gate_proj.weight", width, D)
        lin(p + "up_proj.weight", width, D)
        lin(p + "down_proj.weight", D, width)

    def layer(i, moe):
        p = f"model.layers.{i}."
        norm(p + "input_layernorm.weight", D)
        norm(p + "post_attention_layernorm.weight", D)
        a = p + "self_attn."
        if rq is None:
            lin(a + "q_proj.weight", H * (dn + dr), D)
        else:
            lin(a + "q_a_proj.weight", rq, D)
            norm(a + "q_a_layernorm.weight", rq)
            lin(a + "q_b_proj.weight", H * (dn + dr), rq)
        lin(a + "kv_a_proj_with_mqa.weight", rkv + dr, D)
        norm(a + "kv_a_layernorm.weight", rkv)
        lin(a + "kv_b_proj.weight", H * (dn + dv), rkv)
        lin(a + "o_proj.weight", D, H * dv)
        if not moe:
            mlp(p + "mlp.", c["intermediate_size"])
            return
        E, F = c["n_routed_experts"], c["moe_intermediate_size"]
        # router gain 1.5: logits of std ~1.5 spread the scores so the top-k set changes from token
        # to token, while the 0.1-scale correction bias still flips near-ties
        lin(p + "mlp.gate.weight", E, D, gain=1.5)
        if c.get("topk_method", "noaux_tc") == "noaux_tc":
            out.append((p + "mlp.gate.e_score_correction_bias", "F32", (E,), ("normal", 0.1)))
        for e in range(E):
            mlp(p + f"mlp.experts.{e}.", F)
        if c.get("n_shared_experts"):
            mlp(p + "mlp.shared_experts.", F * c["n_shared_experts"])

    out.append(("model.embed_tokens.weight", st_dtype, (V, D), ("normal", 1.0)))
    norm("model.norm.weight", D)
    if not c.get("tie_word_embeddings"):
        lin("lm_head.weight", V, D)
    L = c["num_hidden_layers"]
    for i in range(L):
        layer(i, _is_moe(c, i))
    for k in range(c.get("num_nextn_predict_layers") or 0):
        i = L + k  # MTP layer: a full MoE block plus its own embedding/head copies
        layer(i, True)
        p = f"model.layers.{i}."
        lin(p + "eh_proj.weight", D, 2 * D)
        norm(p + "enorm.weight", D)
        norm(p + "hnorm.weight", D)
        norm(p + "shared_head.norm.weight", D)
        lin(p + "shared_head.head.weight", V, D)
        out.append((p + "embed_tokens.weight", st_dtype, (V, D), ("normal", 1.0)))
    return out


_QUANTILES = None


def _normal_quantiles():
    """Phi^-1((k + 0.5) / 65536), k = 0..65535: a 16-bit discretised standard normal."""
    global _QUANTILES
    if _QUANTILES is None:
        inv = statistics.NormalDist().inv_cdf
        _QUANTILES = np.array([inv((k + 0.5) / 65536.0) for k in range(65536)], dtype=np.float64)
    return _QUANTILES


def _value_table(kind, scale, st_dtype):
    q = _normal_quantiles()
    vals = (1.0 + scale * q) if kind == "norm" else scale * q
    if st_dtype == "BF16":
        return stn.bf16_bits(vals.astype(np.float32))  # bits: written as-is
    if st_dtype == "F16":
        return vals.astype(np.float16)
    return vals.astype(np.float32)


CHUNK = 1 << 24  # elements per generated block; part of the stream definition, keep fixed


def tensor_chunks(seed, name, shape, init, st_dtype):
    """Deterministic values for one tensor, as C-order chunks in their storage representation."""
    table = _value_table(init[0], init[1], st_dtype)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())])))
    n = int(np.prod(shape, dtype=np.int64))
    done = 0
    while done < n:
        m = min(CHUNK, n - done)
        idx = np.frombuffer(rng.bytes(2 * m), dtype="<u2")
        yield table[idx]
        done += m


def tensor_values(seed, name, shape, init, st_dtype):
    """Whole tensor as float32/64 values (what a reader gets back), for tests."""
    parts = list(tensor_chunks(seed, name, shape, init, st_dtype))
    a = np.concatenate(parts) if parts else np.zeros(0)
    return stn.decode(a, st_dtype).reshape(shape)


def generation_config(c):
    return {
        "_from_model_config": True,
        "do_sample": True,
        "eos_token_id": c["eos_token_id"],
        "pad_token_id": c["pad_token_id"],
        "temperature": 1.0,
        "top_p": 0.95,
        "transformers_version": c["transformers_version"],
    }


def generate(preset, dtype, out, seed=0, layers=None, shards=None, mtp=True, quiet=False):
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    st_dtype, torch_name = DTYPES[dtype]
    c = preset_config(preset, layers, mtp=mtp)
    c["dtype"] = torch_name
    specs = tensor_specs(c, st_dtype)
    by_name = {n: (d, s, init) for n, d, s, init in specs}
    total = sum(int(np.prod(s)) * stn._STORAGE[d].itemsize for _, d, s, _ in specs)
    if shards is None:
        shards = 2 if preset == "tiny" else max(1, -(-total // (2 << 30)))  # ~2 GiB per shard

    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        vocab, merges, added, _ = _tokenizer()
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
            f.write("\n")
        with open(os.path.join(tmp, "generation_config.json"), "w") as f:
            json.dump(generation_config(c), f, indent=2)
            f.write("\n")
        tiny_bpe.write_tokenizer_json(os.path.join(tmp, "tokenizer.json"), vocab, merges, added)
        tmpl = open(CHAT_TEMPLATE, encoding="utf-8").read() if os.path.exists(CHAT_TEMPLATE) else None
        tiny_bpe.write_tokenizer_config(os.path.join(tmp, "tokenizer_config.json"), vocab, added, tmpl)

        def produce(name):
            d, s, init = by_name[name]
            return tensor_chunks(seed, name, s, init, d)
        stn.write_model(tmp, [(n, d, s) for n, d, s, _ in specs], produce, n_shards=shards)
        # atomic replace: readers see either the old directory or the complete new one
        old = None
        if os.path.exists(out):
            old = f"{out}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        print(f"wrote {out}: preset {preset}, {dtype}, {len(specs)} tensors, {total / 1e6:.1f} MB, "
              f"{shards} file(s)")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, choices=PRESETS)
    ap.add_argument("--dtype", required=True, choices=sorted(DTYPES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=None, help="number of main layers (default: preset's)")
    ap.add_argument("--shards", type=int, default=None, help="number of safetensors files")
    ap.add_argument("--no-mtp", action="store_true", help="omit the MTP layer (saves disk for flash)")
    a = ap.parse_args(argv)
    try:
        generate(a.preset, a.dtype, a.out, seed=a.seed, layers=a.layers, shards=a.shards, mtp=not a.no_mtp)
    except (ValueError, OSError, stn.SafetensorsError) as e:
        print(f"gen_checkpoint: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
