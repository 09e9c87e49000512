#!/usr/bin/python3
"""Checks of the Python tools: safetensors I/O, tokenizer, checkpoint generator, float64 reference.

Run: /usr/bin/python3 tools/test_tools.py [name-filter]
Prints one line per failed check and `N passed, N failed`; exits non-zero on failure.
"""
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_checkpoint as gen  # noqa: E402
import reference as ref  # noqa: E402
import safetensors_np as stn  # noqa: E402
import tiny_bpe  # noqa: E402

SHARED = os.path.join(ROOT, "..", "shared", "data", "glm-4.7-flash")
TMP = tempfile.mkdtemp(prefix="glm-tools-test-")
TESTS = []
STATE = {"passed": 0, "failed": 0, "current": ""}


def test(fn):
    TESTS.append(fn)
    return fn


def check(cond, what):
    if cond:
        STATE["passed"] += 1
    else:
        STATE["failed"] += 1
        print(f"FAIL {STATE['current']}: {what}")
    return bool(cond)


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300))


_MODELS = {}


def model(preset, dtype):
    key = (preset, dtype)
    if key not in _MODELS:
        _MODELS[key] = gen.generate(preset, dtype, os.path.join(TMP, f"{preset}-{dtype}"), quiet=True)
    return _MODELS[key]


def cfg_from(**kw):
    raw = {"model_type": "glm4_moe_lite", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1,
           "kv_lora_rank": 4, "qk_nope_head_dim": 2, "qk_rope_head_dim": 2, "v_head_dim": 2, "vocab_size": 4,
           "rms_norm_eps": 1e-5, "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 2,
           "n_shared_experts": 0, "norm_topk_prob": True, "routed_scaling_factor": 1.0}
    raw.update(kw)
    return ref.Config({k: v for k, v in raw.items() if v is not ...})


# ---------------------------------------------------------------------------------------------
# safetensors

@test
def safetensors_roundtrip_every_dtype():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((3, 5)).astype(np.float32) * 10
    t = {
        "a.bf16": (stn.round_bf16(f), "BF16"),
        "b.f16": (f.astype(np.float16), "F16"),
        "c.f32": (f, "F32"),
        "d.f64": (f.astype(np.float64) / 3, "F64"),
        "e.u8": (rng.integers(0, 256, (7,), dtype=np.uint8), "U8"),
        "f.i8": (rng.integers(-128, 128, (2, 2), dtype=np.int8), "I8"),
        "g.u16": (rng.integers(0, 65536, (4,), dtype=np.uint16), "U16"),
        "h.i16": (rng.integers(-30000, 30000, (4,), dtype=np.int16), "I16"),
        "i.u32": (rng.integers(0, 2**32, (2, 3), dtype=np.uint32), "U32"),
        "j.i32": (rng.integers(-2**31, 2**31, (5,), dtype=np.int32), "I32"),
        "k.i64": (rng.integers(-2**62, 2**62, (3,), dtype=np.int64), "I64"),
        "l.u64": (rng.integers(0, 2**63, (3,), dtype=np.uint64), "U64"),
        "m.bool": (np.array([True, False, True]), "BOOL"),
        "n.e4m3": (stn.e4m3_to_f32(np.arange(0, 256, 3, dtype=np.uint8)), "F8_E4M3"),
        "o.scalar": (np.array(2.5, dtype=np.float32), "F32"),
        "p.empty": (np.zeros((0, 4), dtype=np.float32), "F32"),
    }
    p = os.path.join(TMP, "rt.safetensors")
    stn.write_tensors(p, {k: v for k, (v, _) in t.items()}, {k: d for k, (_, d) in t.items()})
    with open(p, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        hdr = json.loads(fh.read(n))
    check(n % 8 == 0, f"header length {n} is 8-byte aligned")
    check(hdr["__metadata__"] == {"format": "pt"}, "metadata format pt")
    offs = [hdr[k]["data_offsets"] for k in sorted(t)]
    check(offs == sorted(offs), "data laid out in sorted-name order")
    st = stn.SafeTensors(p)
    for name, (v, d) in t.items():
        got = st.get(name)
        check(st.info(name) == (d, tuple(np.shape(v))), f"{name} info {st.info(name)}")
        if d == "BF16" or d == "F8_E4M3":
            check(got.dtype == np.float32, f"{name} decodes to float32")
        same = np.array_equal(got, v, equal_nan=(d not in ("BOOL",) and got.dtype.kind == "f"))
        check(same and got.shape == np.shape(v), f"{name} ({d}) round trip")
    check(st.raw("a.bf16").dtype == np.uint16, "raw bf16 is uint16 bits")
    check(st.get("e.u8").dtype == np.uint8 and st.get("i.u32").dtype == np.uint32, "U8/U32 stay raw uints")
    st.close()


@test
def safetensors_shards_and_chunks():
    rng = np.random.default_rng(2)
    tensors = {f"t.{i}": rng.standard_normal((i + 1, 3)).astype(np.float32) for i in range(7)}
    specs = [(n, "BF16", a.shape) for n, a in tensors.items()]
    d = os.path.join(TMP, "sharded")
    os.makedirs(d)

    def produce(name):  # as chunks: one row at a time
        return iter(list(tensors[name]))
    files = stn.write_model(d, specs, produce, n_shards=3)
    idx = json.load(open(os.path.join(d, stn.INDEX_NAME)))
    check(files == [stn.shard_name(k, 3) for k in range(3)], f"shard names {files}")
    check(set(idx["weight_map"]) == set(tensors) and set(idx["weight_map"].values()) == set(files),
          "index maps every tensor to an existing shard")
    check(idx["metadata"]["total_size"] == sum(a.size * 2 for a in tensors.values()), "total_size")
    order = [idx["weight_map"][n] for n in sorted(tensors)]
    check(order == sorted(order), "shards follow sorted-name order")
    got = stn.load(d)
    check(all(np.array_equal(got[n], stn.round_bf16(a)) for n, a in tensors.items()), "sharded bf16 values")
    bad = os.path.join(TMP, "bad.safetensors")
    with open(bad, "wb") as fh:
        fh.write((1000).to_bytes(8, "little") + b"{}")
    try:
        stn.SafeTensors(bad)
        check(False, "truncated header rejected")
    except stn.SafetensorsError:
        check(True, "")
    try:
        stn.write_file(bad, [("x", "F32", (2, 2))], lambda n: np.zeros(3))
        check(False, "shape mismatch rejected")
    except stn.SafetensorsError:
        check(True, "")


@test
def bf16_rounding_known_values():
    one = 1.0
    cases = [
        (one, 0x3F80), (-2.0, 0xC000), (0.0, 0x0000), (-0.0, 0x8000),
        (one + 2**-8, 0x3F80),               # halfway between 0x3F80 and 0x3F81: to even (down)
        (one + 3 * 2**-8, 0x3F82),           # halfway between 0x3F81 and 0x3F82: to even (up)
        (one + 2**-8 + 2**-20, 0x3F81),      # just above halfway: up
        (one + 2**-8 - 2**-20, 0x3F80),      # just below halfway: down
        (3.4028234663852886e38, 0x7F80),     # float max rounds past bf16 max to inf
        (float("inf"), 0x7F80), (float("-inf"), 0xFF80),
        (1e-45, 0x0000),                     # smallest subnormal rounds to zero
        (3.0e-39, 0x0021),                   # subnormal: 3e-39 / 2^-133 = 32.67 -> 33
    ]
    got = stn.bf16_bits(np.array([c[0] for c in cases], dtype=np.float32))
    for (v, want), g in zip(cases, got):
        check(int(g) == want, f"bf16({v!r}) = {int(g):#06x}, want {want:#06x}")
    nan = stn.bf16_bits(np.array([np.nan], dtype=np.float32))
    check(np.isnan(stn.bf16_to_f32(nan))[0], "NaN stays NaN")
    check(stn.bf16_to_f32(np.array([0x3F81], dtype=np.uint16))[0] == 1 + 2**-7, "bf16 -> f32 exact")


@test
def e4m3_codes():
    v = stn.e4m3_to_f32(np.array([0x38, 0x7E, 0x01, 0x08, 0xB8, 0x00, 0x80], dtype=np.uint8))
    check(list(v) == [1.0, 448.0, 2.0**-9, 2.0**-6, -1.0, 0.0, 0.0], f"decode {list(v)}")
    check(np.isnan(stn.e4m3_to_f32(np.array([0x7F, 0xFF], dtype=np.uint8))).all(), "0x7F/0xFF are NaN")
    enc = stn.e4m3_bits(np.array([1.0625, 1.1875, 1000.0, -3.0, 2.0**-10, 0.3], dtype=np.float32))
    # 1.0625: halfway 1.0/1.125 -> even code 0x38; 1.1875: halfway 1.125/1.25 -> even 0x3A
    check(list(enc[:4]) == [0x38, 0x3A, 0x7E, 0xC4], f"encode {[hex(x) for x in enc]}")
    check(stn.e4m3_to_f32(enc[4:5])[0] in (0.0, 2.0**-9), "tiny value to 0 or min subnormal")
    check(abs(stn.e4m3_to_f32(enc[5:6])[0] - 0.3) <= 0.3 / 16, "0.3 within half an ulp")
    every = np.arange(256, dtype=np.uint8)
    finite = ~np.isnan(stn.e4m3_to_f32(every))
    back = stn.e4m3_bits(stn.e4m3_to_f32(every[finite]))
    check(np.array_equal(stn.e4m3_to_f32(back), stn.e4m3_to_f32(every[finite])), "all finite codes round-trip")


# ---------------------------------------------------------------------------------------------
# RoPE, YaRN, router

def hf_interleave_rope(x, cos_half, sin_half):
    """HF apply_rotary_pos_emb_interleave: de-interleave the pairs, then rotate-half."""
    shp = x.shape
    d = shp[-1]
    y = x.reshape(shp[:-1] + (d // 2, 2)).swapaxes(-1, -2).reshape(shp)
    extra = x.ndim - 2
    c = np.concatenate([cos_half, cos_half], axis=-1).reshape((shp[0],) + (1,) * extra + (d,))
    s = np.concatenate([sin_half, sin_half], axis=-1).reshape(c.shape)
    rot = np.concatenate([-y[..., d // 2:], y[..., :d // 2]], axis=-1)
    return y * c + rot * s


@test
def rope_adjacent_pairs_match_hf_deinterleaved_layout():
    cfg = cfg_from(qk_rope_head_dim=16, rope_theta=10000.0)
    rng = np.random.default_rng(3)
    T, H = 7, 3
    q = rng.standard_normal((T, H, 16))
    k = rng.standard_normal((T, 1, 16))
    cos, sin = ref.rope_tables(cfg, np.arange(T) + 5)
    ours_q, ours_k = ref.apply_rope(q, cos, sin, True), ref.apply_rope(k, cos, sin, True)
    hf_q, hf_k = hf_interleave_rope(q, cos, sin), hf_interleave_rope(k, cos, sin)
    s_ours = np.einsum("thd,sgd->hts", ours_q, ours_k)
    s_hf = np.einsum("thd,sgd->hts", hf_q, hf_k)
    check(np.max(np.abs(s_ours - s_hf)) < 1e-12, "q.k identical in both layouts")
    check(not np.allclose(ours_q, hf_q), "layouts differ in memory (test is not vacuous)")
    wrong = np.einsum("thd,sgd->hts", ref.apply_rope(q, cos, sin, False), ref.apply_rope(k, cos, sin, False))
    check(np.max(np.abs(wrong - s_hf)) > 1e-3, "rotate-half pairing gives different scores")
    # relative-position property for both pairings: scores depend on t - s only
    for inter in (True, False):
        c1, s1 = ref.rope_tables(cfg, np.array([3, 1]))
        c2, s2 = ref.rope_tables(cfg, np.array([13, 11]))
        a = ref.apply_rope(q[:2], c1, s1, inter)
        b = ref.apply_rope(q[:2], c2, s2, inter)
        check(abs(a[0, 0] @ a[1, 1] - b[0, 0] @ b[1, 1]) < 1e-12, f"relative position (interleave={inter})")
        check(abs(np.linalg.norm(a) - np.linalg.norm(q[:2])) < 1e-12, "rotation keeps norms")


@test
def yarn_frequencies_and_scales():
    y = {"factor": 40.0, "original_max_position_embeddings": 4096.0, "beta_fast": 32.0, "beta_slow": 1.0,
         "mscale": 1.0, "mscale_all_dim": 1.0}
    d, theta = 64, 10000.0
    inv = ref.rope_inv_freq(d, theta, y)
    base = 1.0 / theta ** (np.arange(0, d, 2) / d)  # HF: 1 / base^(2i/d)
    # correction dims: floor(64 ln(4096/(64 pi)) / (2 ln 1e4)) = 10, ceil(64 ln(4096/(2 pi)) / (2 ln 1e4)) = 23
    check(np.allclose(inv[:11], base[:11], rtol=0, atol=0), "dims <= low keep original frequency")
    check(np.allclose(inv[23:], base[23:] / 40, rtol=1e-15), "dims >= high fully interpolated")
    ramp = (np.arange(11, 23) - 10) / 13.0
    check(np.allclose(inv[11:23], base[11:23] / 40 * ramp + base[11:23] * (1 - ramp), rtol=1e-14),
          "linear ramp blend in between")
    check(np.array_equal(ref.rope_inv_freq(d, theta), base), "no yarn: plain frequencies")
    cfg = cfg_from(qk_rope_head_dim=8, max_position_embeddings=64,
                   rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                                 "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.7})
    m_all = 0.1 * 0.7 * np.log(4) + 1
    check(abs(cfg.scale - (10 ** -0.5) * m_all ** 2) < 1e-15, f"softmax scale {cfg.scale}")
    c, s = ref.rope_tables(cfg, np.array([0, 3]))
    att = (0.1 * np.log(4) + 1) / m_all
    check(np.allclose(c[0], att, rtol=1e-15) and np.allclose(np.hypot(c[1], s[1]), att, rtol=1e-14),
          "cos/sin carry m(factor,mscale)/m(factor,mscale_all_dim)")
    check(abs(ref.yarn_mscale(1.0, 5.0) - 1.0) == 0, "m(s<=1) = 1")


@test
def router_crafted_logits():
    sig = lambda v: 1 / (1 + np.exp(-np.asarray(v, dtype=np.float64)))  # noqa: E731
    # bias changes the selection but not the weights
    cfg = cfg_from(n_routed_experts=4, num_experts_per_tok=2, routed_scaling_factor=1.8, topk_method="noaux_tc")
    logits = np.array([[2.0, 1.0, 0.5, 0.4]])
    idx, w = ref.route(logits, np.zeros(4), cfg)
    check(sorted(idx[0]) == [0, 1], f"no bias picks 0,1: {idx}")
    bias = np.array([0.0, 0.0, 0.0, 0.3])
    idx, w = ref.route(logits, bias, cfg)
    check(sorted(idx[0]) == [0, 3], f"bias lifts expert 3 over 1: {idx}")
    s = sig([2.0, 0.4])
    want = dict(zip([0, 3], 1.8 * s / (s.sum() + 1e-20)))
    check(all(abs(w[0][j] - want[e]) < 1e-15 for j, e in enumerate(idx[0])), "weights use unbiased scores")
    check(abs(w.sum() - 1.8) < 1e-14, "normalised then scaled by routed_scaling_factor")
    # without normalisation the weights are the raw scores times the factor
    cfg2 = cfg_from(n_routed_experts=4, num_experts_per_tok=2, routed_scaling_factor=2.5, norm_topk_prob=False)
    idx, w = ref.route(logits, bias, cfg2)
    check(np.allclose(np.sort(w[0]), np.sort(2.5 * sig([2.0, 0.4])), rtol=1e-15), "norm_topk_prob false")
    # group-limited noaux_tc: the best single expert sits in a group with a weak second member
    cfg3 = cfg_from(n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2, topk_method="noaux_tc")
    lg = np.array([[5.0, -5.0, 2.0, 2.0, 1.5, 1.6, 0.0, 0.0]])
    idx, w = ref.route(lg, np.zeros(8), cfg3)
    check(sorted(idx[0]) == [2, 3], f"group score = sum of top-2; expert 0's group excluded: {idx}")
    idx, _ = ref.route(lg, np.array([0, 0, 0, 0, 0, 0, 0.95, 0.95]), cfg3)
    check(set(idx[0]) <= {2, 3, 6, 7} and 6 in idx[0], f"bias promotes group 3: {idx}")
    # excluded groups are never chosen even when every kept score is negative
    idx, _ = ref.route(np.array([[-9.0, -9.0, -8.0, -8.5, 9.0, -9.0, 9.0, -9.0]]),
                       np.array([0, 0, 0, 0, -2.0, 0, -2.0, 0]), cfg3)
    check(set(idx[0]) <= {2, 3, 4, 5} or set(idx[0]) <= {2, 3, 6, 7} or set(idx[0]) <= {4, 5, 6, 7},
          f"chosen experts lie in kept groups: {idx}")
    # group_limited_greedy (DeepSeek-V2): group score is the max, softmax scoring
    cfg4 = cfg_from(model_type="deepseek_v2", n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2,
                    topk_method="group_limited_greedy", scoring_func="softmax", norm_topk_prob=...)
    idx, w = ref.route(lg, None, cfg4)
    check(sorted(idx[0]) == [0, 2] or sorted(idx[0]) == [0, 3], f"max-score groups keep expert 0: {idx}")
    p = np.exp(lg[0] - lg[0].max())
    p /= p.sum()
    check(abs(w[0][0] - p[0]) < 1e-15, "softmax weight, not normalised (deepseek_v2 default)")
    # greedy ignores groups
    cfg5 = cfg_from(model_type="deepseek_v2", n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=1,
                    topk_method=..., norm_topk_prob=...)
    idx, _ = ref.route(lg, None, cfg5)
    check(sorted(idx[0]) == [0, 2, 3], f"greedy = plain top-k: {idx}")
    check(cfg5.scoring == "softmax" and not cfg5.norm_topk, "deepseek_v2 defaults softmax, no norm")
    cfg6 = cfg_from(model_type="deepseek_v3", norm_topk_prob=..., topk_method=...)
    check(cfg6.scoring == "sigmoid" and cfg6.topk_method == "noaux_tc" and cfg6.norm_topk, "v3 defaults")
    check(cfg_from().rope_interleave and not cfg_from(rope_interleave=False).rope_interleave,
          "rope_interleave defaults to true")
    cfg7 = cfg_from(scoring_func="softmax")
    check(cfg7.scoring == "sigmoid", "glm4_moe_lite is always sigmoid")


@test
def config_validation_errors():
    bad = [
        ({"model_type": "llama"}, "model_type"),
        ({"hidden_size": ...}, "hidden_size"),
        ({"qk_rope_head_dim": 3}, "even"),
        ({"topk_method": "random"}, "topk_method"),
        ({"scoring_func": "relu", "model_type": "deepseek_v3"}, "scoring_func"),
        ({"n_group": 3}, "divisible"),
        ({"num_experts_per_tok": 9}, "num_experts_per_tok"),
        ({"rope_scaling": {"type": "linear", "factor": 2}}, "linear"),
        ({"rope_scaling": {"type": "yarn"}}, "factor"),
        ({"mlp_layer_types": ["dense", "sparse"]}, "mlp_layer_types"),
        ({"hidden_size": "128"}, "hidden_size"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
    ]
    for kw, word in bad:
        try:
            cfg_from(**kw)
            check(False, f"{kw} accepted")
        except ref.ConfigError as e:
            check(word in str(e), f"{kw}: message {e!r} names {word}")


# ---------------------------------------------------------------------------------------------
# generator + reference

SECTION_2_1_KEYS = ["architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                    "v_head_dim", "intermediate_size", "moe_intermediate_size", "n_routed_experts",
                    "n_shared_experts", "num_experts_per_tok", "n_group", "topk_group", "topk_method",
                    "norm_topk_prob", "routed_scaling_factor", "hidden_act", "rms_norm_eps", "rope_theta",
                    "rope_scaling", "partial_rotary_factor", "max_position_embeddings", "vocab_size",
                    "tie_word_embeddings", "attention_bias", "attention_dropout", "num_nextn_predict_layers",
                    "pad_token_id", "eos_token_id", "dtype", "transformers_version"]


@test
def flash_inventory_matches_spec():
    c = gen.preset_config("flash", layers=47)
    specs = gen.tensor_specs(c, "BF16")
    check(len(specs) == 9703, f"tensor count {len(specs)} (SPEC 4.1: 9,703)")
    n = sum(int(np.prod(s)) for _, _, s, _ in specs)
    check(n == 31221488576, f"parameters {n} (SPEC 2.4: 31,221,488,576)")
    d = {name: (dt, s) for name, dt, s, _ in specs}
    check(d["model.layers.1.mlp.gate.e_score_correction_bias"] == ("F32", (64,)), "router bias f32 [64]")
    check(d["model.layers.5.self_attn.kv_b_proj.weight"][1] == (8960, 512), "kv_b_proj shape")
    check(d["model.layers.47.eh_proj.weight"][1] == (2048, 4096), "MTP eh_proj")
    check(c["vocab_size"] == 154880 and "scoring_func" not in c, "flash vocab, no scoring_func key")


@test
def generated_files_layout():
    d = model("tiny", "bf16")
    c = json.load(open(os.path.join(d, "config.json")))
    check(all(k in c for k in SECTION_2_1_KEYS), f"missing keys {[k for k in SECTION_2_1_KEYS if k not in c]}")
    check("scoring_func" not in c and "bos_token_id" not in c and c["rope_scaling"] is None, "GLM key quirks")
    idx = json.load(open(os.path.join(d, stn.INDEX_NAME)))
    check(len(set(idx["weight_map"].values())) == 2, "tiny: 2 shards + index")
    st = stn.SafeTensors(d)
    names = st.names()
    L = c["num_hidden_layers"]
    check(f"model.layers.{L}.eh_proj.weight" in names and f"model.layers.{L}.embed_tokens.weight" in names and
          f"model.layers.{L}.shared_head.head.weight" in names and f"model.layers.{L}.mlp.experts.7.up_proj.weight"
          in names, "MTP layer stored at index num_hidden_layers")
    check("model.layers.0.mlp.gate_proj.weight" in names and "model.layers.0.mlp.gate.weight" not in names,
          "layer 0 dense")
    check(st.info("model.layers.1.mlp.gate.e_score_correction_bias")[0] == "F32", "router bias always F32")
    check(st.info("model.layers.1.self_attn.q_b_proj.weight") == ("BF16", (4 * 32, 48)), "q_b_proj bf16 shape")
    w = st.get("model.layers.2.mlp.experts.3.down_proj.weight")
    check(np.array_equal(stn.round_bf16(w), w), "bf16 values exactly representable")
    check(abs(w.std() * np.sqrt(48) - 1) < 0.1, f"projection std ~ 1/sqrt(fan_in): {w.std() * np.sqrt(48)}")
    nw = st.get("model.layers.1.input_layernorm.weight")
    check(abs(nw.mean() - 1) < 0.05 and 0.05 < nw.std() < 0.15, "norm weights 1 + 0.1 noise")
    # eos / pad ids point at the right added tokens
    tj = json.load(open(os.path.join(d, "tokenizer.json")))
    by_id = {t["id"]: t["content"] for t in tj["added_tokens"]}
    check([by_id.get(i) for i in c["eos_token_id"]] == ["<|endoftext|>", "<|user|>", "<|observation|>"], "eos ids")
    check(by_id.get(c["pad_token_id"]) == "<|endoftext|>", "pad id")
    gc = json.load(open(os.path.join(d, "generation_config.json")))
    check(gc["eos_token_id"] == c["eos_token_id"] and gc["pad_token_id"] == c["pad_token_id"], "generation_config")
    base = len(tj["model"]["vocab"])
    check(sorted(by_id) == list(range(base, base + 36)), "36 added tokens directly after the base vocab")
    check(c["vocab_size"] % 64 == 0 and base + 36 <= c["vocab_size"] < base + 36 + 64, "vocab_size padded to 64")
    check([t["content"] for t in tj["added_tokens"]] == tiny_bpe.glm_added_tokens(), "added tokens in GLM order")
    check(all(t["special"] for t in tj["added_tokens"]), "added tokens special")
    st.close()
    # groups: tied, no lm_head, single eos int, mlp_layer_types; v2lite: q_proj, no bias, no MTP
    g = model("groups", "f32")
    gc_ = json.load(open(os.path.join(g, "config.json")))
    gs = stn.SafeTensors(g)
    check("lm_head.weight" not in gs and gc_["tie_word_embeddings"] is True, "groups: tied, no lm_head")
    check(isinstance(gc_["eos_token_id"], int) and gc_["mlp_layer_types"] == ["dense", "sparse", "sparse"] and
          "first_k_dense_replace" not in gc_, "groups: eos int, mlp_layer_types")
    v = model("v2lite", "f32")
    vs = stn.SafeTensors(v)
    check("model.layers.1.self_attn.q_proj.weight" in vs and "model.layers.1.self_attn.q_a_proj.weight" not in vs,
          "v2lite: q_proj only")
    check("model.layers.1.mlp.gate.e_score_correction_bias" not in vs and "model.layers.3.eh_proj.weight" not in vs,
          "v2lite: no bias, no MTP")
    check(vs.info("model.layers.1.mlp.shared_experts.up_proj.weight")[1] == (96, 128), "2 shared experts = 2x width")


@test
def generator_deterministic():
    a = gen.generate("v2lite", "bf16", os.path.join(TMP, "det-a"), seed=7, quiet=True)
    b = gen.generate("v2lite", "bf16", os.path.join(TMP, "det-b"), seed=7, quiet=True)
    c = gen.generate("v2lite", "bf16", os.path.join(TMP, "det-c"), seed=8, quiet=True)
    ra, rb, rc = (open(os.path.join(x, "model.safetensors"), "rb").read() for x in (a, b, c))
    check(ra == rb, "same seed, same bytes")
    check(ra != rc, "different seed, different bytes")
    # sharding does not change values; regenerating over an existing directory replaces it
    gen.generate("v2lite", "bf16", a, seed=7, shards=3, quiet=True)
    check(not os.path.exists(os.path.join(a, "model.safetensors")), "old files replaced")
    x, y = stn.load(a), stn.load(b)
    check(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x), "sharded = unsharded values")
    check(not any(n.startswith("det-a.") for n in os.listdir(TMP)), "no temp directories left behind")


TOKS = [456 + 2, 456 + 4, 72, 101, 108, 300, 220, 50, 410, 33, 200, 456 + 7, 17, 99, 250, 400]


@test
def presets_reference_sane():
    for preset, dtype in itertools.product(("tiny", "groups", "yarn", "v2lite"), ("f32", "bf16", "f16")):
        d = model(preset, dtype)
        r = ref.Reference(d)
        lg = r.forward(TOKS)
        tag = f"{preset}/{dtype}"
        check(lg.shape == (len(TOKS), r.cfg.vocab), f"{tag} shape {lg.shape}")
        check(np.isfinite(lg).all(), f"{tag} finite")
        sd = lg.std(axis=1)
        check((sd > 0.1).all() and (sd < 30).all(), f"{tag} per-position std {sd.min():.3f}..{sd.max():.3f}")
        check(min(np.abs(lg[i] - lg[j]).max() for i in range(len(TOKS)) for j in range(i)) > 1e-3,
              f"{tag} positions differ")
        check(len(set(lg.argmax(axis=1))) > 3, f"{tag} argmax varies")
        for layer, idx in r.routing.items():
            sets = {tuple(sorted(row)) for row in idx}
            check(len(sets) >= 4 and len(np.unique(idx)) >= min(r.cfg.n_experts, 6),
                  f"{tag} layer {layer}: routing varies ({len(sets)} sets)")
        check(len(r.routing) == sum(r.cfg.moe_layers) > 0, f"{tag} MoE layers routed")


@test
def bias_changes_some_selections():
    d = model("tiny", "f32")
    r = ref.Reference(d)
    r.forward(TOKS)
    with_bias = {k: v.copy() for k, v in r.routing.items()}
    orig = r.load_weight
    r2 = ref.Reference(d, load_weight=lambda n: np.zeros_like(orig(n)) if n.endswith("correction_bias") else orig(n))
    r2.forward(TOKS)
    changed = sum(int((np.sort(with_bias[k], 1) != np.sort(r2.routing[k], 1)).any(1).sum()) for k in with_bias)
    check(0 < changed, f"correction bias changes some selections ({changed} token-layers)")


@test
def causal_property():
    r = ref.Reference(model("tiny", "f32"))
    a = r.forward(TOKS)
    b = r.forward(TOKS[:6] + [5, 6, 7, 8, 9])
    check(rel(b[:6], a[:6]) < 1e-13, f"first 6 positions unchanged: {rel(b[:6], a[:6])}")
    check(rel(b[6:], a[6:11]) > 1e-3, "later positions change")
    c = r.forward(TOKS[:6])
    check(rel(c, a[:6]) < 1e-13, "prefix run = first rows of the long run")


def absorbed_attention(r, i, a, positions):
    """SPEC 5.5: latent queries against the cached [c_kv | k_pe]; values from the latent then W_UV."""
    c = r.cfg
    p = f"model.layers.{i}.self_attn."
    ld = r.load_weight
    H, T = c.n_heads, a.shape[0]
    if c.q_lora is None:
        q = a @ ld(p + "q_proj.weight").T
    else:
        x = a @ ld(p + "q_a_proj.weight").T
        x = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * ld(p + "q_a_layernorm.weight")
        q = x @ ld(p + "q_b_proj.weight").T
    q = q.reshape(T, H, c.d_nope + c.d_rope)
    z = a @ ld(p + "kv_a_proj_with_mqa.weight").T
    lat = z[:, :c.kv_lora]
    lat = lat / np.sqrt((lat * lat).mean(-1, keepdims=True) + 1e-6) * ld(p + "kv_a_layernorm.weight")
    cos, sin = ref.rope_tables(c, positions)
    q_pe = ref.apply_rope(q[:, :, c.d_nope:], cos, sin, c.rope_interleave)
    k_pe = ref.apply_rope(z[:, None, c.kv_lora:], cos, sin, c.rope_interleave)[:, 0]
    wkv = ld(p + "kv_b_proj.weight").reshape(H, c.d_nope + c.d_v, c.kv_lora)
    w_uk, w_uv = wkv[:, :c.d_nope], wkv[:, c.d_nope:]
    q_lat = np.einsum("thn,hnc->thc", q[:, :, :c.d_nope], w_uk)
    cache = np.concatenate([lat, k_pe], axis=-1)               # [T, kv_lora + d_rope]
    query = np.concatenate([q_lat, q_pe], axis=-1)             # [T, H, kv_lora + d_rope]
    out = np.zeros((T, H, c.d_v))
    for t in range(T):                                         # token by token, like decode
        s = np.einsum("hc,sc->hs", query[t], cache[:t + 1]) * c.scale
        pr = np.exp(s - s.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        o_lat = pr @ lat[:t + 1]                               # [H, kv_lora]
        out[t] = np.einsum("hvc,hc->hv", w_uv, o_lat)
    return out.reshape(T, H * c.d_v) @ ld(p + "o_proj.weight").T


@test
def absorbed_matches_non_absorbed():
    rng = np.random.default_rng(5)
    for preset in ("tiny", "yarn", "v2lite", "groups"):
        r = ref.Reference(model(preset, "f32"))
        T = 9
        a = rng.standard_normal((T, r.cfg.hidden))
        pos = np.arange(T) + 3
        want = r.attention(1, a, pos)
        got = absorbed_attention(r, 1, a, pos)
        e = rel(got, want)
        check(e < 1e-10, f"{preset}: absorbed vs non-absorbed rel err {e:.2e}")
        check(np.abs(want).max() > 1e-2, f"{preset}: attention output not trivially small")


@test
def reference_cli():
    d = model("tiny", "bf16")
    out = os.path.join(TMP, "logits.bin")
    p = subprocess.run([sys.executable, os.path.join(HERE, "reference.py"), "--model", d, "--tokens",
                        ",".join(map(str, TOKS[:5])), "--out", out], capture_output=True, text=True)
    check(p.returncode == 0, f"cli exit {p.returncode}: {p.stderr}")
    got = np.fromfile(out, dtype="<f8")
    want = ref.Reference(d).forward(TOKS[:5])
    check(got.size == want.size and np.array_equal(got.reshape(want.shape), want), "cli writes the logits")
    p = subprocess.run([sys.executable, os.path.join(HERE, "reference.py"), "--model", d, "--tokens", "1,99999",
                        "--out", out], capture_output=True, text=True)
    check(p.returncode != 0 and "token ids" in p.stderr, f"bad token id reported: {p.stderr!r}")
    bad = os.path.join(TMP, "badcfg")
    shutil.copytree(d, bad)
    c = json.load(open(os.path.join(bad, "config.json")))
    c["kv_lora_rank"] = 16
    json.dump(c, open(os.path.join(bad, "config.json"), "w"))
    p = subprocess.run([sys.executable, os.path.join(HERE, "reference.py"), "--model", bad, "--tokens", "1,2",
                        "--out", out], capture_output=True, text=True)
    check(p.returncode == 1 and "kv_a_proj_with_mqa" in p.stderr, f"shape mismatch named: {p.stderr!r}")


# ---------------------------------------------------------------------------------------------
# tokenizer

@test
def pretokenizer_matches_shared_vectors():
    path = os.path.join(SHARED, "pretokenizer_splits.tsv")
    if not check(os.path.exists(path), f"{path} present"):
        return
    added = sorted(tiny_bpe.glm_added_tokens(), key=len, reverse=True)
    rows = [ln.split("\t") for ln in open(path, encoding="utf-8").read().split("\n")[1:] if ln]
    bad = 0
    for r in rows:
        pieces = r[1].split(" ") if len(r) > 1 and r[1] else []
        want = [bytes.fromhex(p[1:] if p.startswith("!") else p).decode() for p in pieces]
        text = "".join(want)
        got, i, start = [], 0, 0
        while i < len(text):
            hit = next((a for a in added if text.startswith(a, i)), None)
            if hit:
                got += tiny_bpe.pre_tokenize(text[start:i]) + [hit]
                i += len(hit)
                start = i
            else:
                i += 1
        got += tiny_bpe.pre_tokenize(text[start:])
        bad += got != want
    check(bad == 0 and len(rows) > 100, f"{bad} of {len(rows)} split rows differ")


TOK_TEXTS = ["Hello, world!", "[gMASK]<sop><|user|>What's the weather in Paris?<|assistant|><think>",
             "  spaces   and\n\nnewlines\r\n x", "ÄÖü 日本語 🙂 12345 don'T", "def f(x):\n    return x*2\n",
             "The capital of France is", "<tool_call>get<arg_key>city</arg_key><arg_value>Paris</arg_value>",
             "a" * 50 + " 1234567", "\t\ttabs\u00a0nbsp\u3000ideographic"]


@test
def tokenizer_matches_hf_tokenizers_js():
    d = model("tiny", "f32")
    vocab, merges, added = tiny_bpe.default_tokenizer()
    check(len(merges) == 200 and len(vocab) == 256 + 200, f"{len(vocab)} vocab / {len(merges)} merges")
    want = [tiny_bpe.encode(t, vocab, merges, added) for t in TOK_TEXTS]
    check(all(tiny_bpe.decode(w, vocab, added) == t for w, t in zip(want, TOK_TEXTS)), "python decode round trip")
    check(len(want[5]) < len("The capital of France is") / 2, f"merges compress English: {want[5]}")
    node = shutil.which("node")
    script = os.path.join(ROOT, "tests", "node", "hf_tokenize.mjs")
    if not check(node is not None, "node available (the oracle for tokenizer.json)"):
        return
    p = subprocess.run([node, script, d], input=json.dumps(TOK_TEXTS), capture_output=True, text=True)
    if not check(p.returncode == 0, f"tokenizers.js loads tokenizer.json: {p.stderr[-500:]}"):
        return
    got = json.loads(p.stdout)
    for t, g, w in zip(TOK_TEXTS, got, want):
        check(g["ids"] == w, f"ids for {t!r}: js {g['ids']} vs python {w}")
        check(g["decoded"] == t, f"js decode of {t!r}: {g['decoded']!r}")


def main():
    flt = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        for fn in TESTS:
            if flt not in fn.__name__:
                continue
            STATE["current"] = fn.__name__
            try:
                fn()
            except Exception:
                STATE["failed"] += 1
                print(f"FAIL {fn.__name__}: exception\n{traceback.format_exc()}")
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"{STATE['passed']} passed, {STATE['failed']} failed")
    return 1 if STATE["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
