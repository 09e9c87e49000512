#!/usr/bin/python3
"""Quantized checkpoints from a plain (bf16/f16/f32) one, and the exact dequantizing weight loader.

Owns: the Python side of issue 4's layouts, written with tools/quant_ref.py's numpy encoders and
sharing no code with the engine:
  --layout mlx        mlx-lm layout with glmlite quantize's policy (docs/quantization.md): stacked
                      mlp.switch_mlp experts, embed_q/unembed_out instead of kv_b_proj, a
                      `quantization` block with per-module overrides. With the same input it
                      writes the same tensors, byte for byte, as `glmlite quantize`.
  --layout mixed      mlx-lm-style, deliberately irregular: an mxfp4 block with overrides for
                      affine bit widths (2, 3, 4, 5, 6, 8), groups (32, 64, 128), other fp modes,
                      dicts without a mode or group (mlx reads them alone: affine, 64), modules
                      left bf16 (`false`, and plain tensors with no entry), and kv_b_proj kept
                      and quantized as one matrix (the engine must dequantize-then-split).
  --layout modelopt   NVIDIA ModelOpt NVFP4: X.weight U8 [out, in/2], X.weight_scale F8_E4M3
                      [out, in/16], X.weight_scale_2 F32 scalar (direct multiplier), X.input_scale;
                      per-expert HF names; router, embeddings, lm_head and norms stay plain.
  --layout ct         compressed-tensors NVFP4: X.weight_packed U8, X.weight_scale F8_E4M3,
                      X.weight_global_scale F32 [1] stored inverted (w = e2m1 * scale / global);
                      with --type mxfp4 (mxfp4-pack-quantized) X.weight_packed U8 and X.weight_scale
                      U8 E8M0 [out, in/32], no global scale; with --type mxfp8 X.weight F8_E4M3 and
                      the same scales.
  The NVFP4 layouts use a per-tensor global scale G = amax/(6*448) (ModelOpt's), so a loader with
  the wrong convention (multiply vs divide) produces weights off by a factor of G^2.

DequantLoader(model_dir) maps Hugging Face tensor names to float64 arrays of the exact dequantized
values (SPEC section 6 formulas, via quant_ref), for tools/reference.py --dequantize.

Usage: make_quantized.py --model IN --out OUT --layout mlx|mixed|modelopt|ct
                         [--type int4|int8|nvfp4|mxfp4|mxfp8] [--group-size G]
       make_quantized.py --model QUANTIZED --out OUT --corrupt KIND   (a malformed copy for loader tests;
                         prints the tensor whose name the load error must contain)
"""
import argparse
import json
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant_ref as qr  # noqa: E402
import safetensors_np as stn  # noqa: E402

f32 = np.float32
MODES = {"affine": qr.WF_AFFINE, "nvfp4": qr.WF_NVFP4, "mxfp4": qr.WF_MXFP4, "mxfp8": qr.WF_MXFP8}
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
              "chat_template.jinja")
SCALE_DT = {"BF16": qr.BF16, "F16": qr.F16, "F32": qr.F32}


# ---------------------------------------------------------------------------------------------
# encoding

def _fast_encoder(table, sign_bit):
    """Nearest-value encoder equal to quant_ref.nearest_code for one sign-magnitude table (ties to the
    even code, saturating, sign kept), in O(n log k) instead of brute force over every code: quant_ref's
    encoders are the specification, too slow for whole checkpoints."""
    mags = table[:sign_bit].astype(np.float64)
    codes = np.arange(sign_bit)
    ok = np.isfinite(mags)
    mags, codes = mags[ok], codes[ok]   # increasing with the code

    def enc(x):
        x = np.asarray(x, dtype=np.float64).ravel()
        a = np.abs(x)
        hi = np.clip(np.searchsorted(mags, a), 1, len(mags) - 1)
        lo = hi - 1
        dlo, dhi = a - mags[lo], mags[hi] - a
        pick = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(codes[lo] % 2 == 0, lo, hi)))
        pick = np.where(a >= mags[-1], len(mags) - 1, pick)
        return (codes[pick] | np.where(np.signbit(x), sign_bit, 0)).astype(np.uint8)
    return enc


# quant_ref's fp quantizer looks its encoders up at call time; give it the fast equivalents
qr.enc_e4m3 = _fast_encoder(qr.E4M3_TABLE, 0x80)
qr.enc_e2m1 = _fast_encoder(qr.E2M1_TABLE, 0x8)

def unpack(packed_bytes, bits, rows, cols):
    """Little-endian bit stream rows -> codes [rows, cols]."""
    b = np.frombuffer(bytes(packed_bytes), dtype=np.uint8).reshape(rows, -1)
    bitarr = np.unpackbits(b, axis=1, bitorder="little")[:, :cols * bits].reshape(rows, cols, bits)
    return (bitarr.astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=2).astype(np.uint32)


def quantize_matrix(w, spec, in_dtype):
    """w [rows, cols] float32 -> dict suffix -> (dtype, array) in the mlx-lm layout."""
    mode, bits, gs = spec["mode"], spec["bits"], spec["group_size"]
    rows, cols = w.shape
    if mode == "affine":
        q, sb, _, bb, _ = qr.mlx_affine_quantize(w, bits, gs, SCALE_DT[in_dtype])
        st = np.dtype("<u2") if in_dtype != "F32" else np.dtype("<f4")
        scales = np.frombuffer(sb, dtype=st).reshape(rows, cols // gs)
        biases = np.frombuffer(bb, dtype=st).reshape(rows, cols // gs)
        if in_dtype == "F16":
            scales, biases = scales.view(np.float16), biases.view(np.float16)
        packed = b"".join(qr.pack(r, bits) for r in q)
        out = {"weight": ("U32", np.frombuffer(packed, dtype="<u4").reshape(rows, cols * bits // 32)),
               "scales": (in_dtype, scales), "biases": (in_dtype, biases)}
        return out
    fmt = MODES[mode]
    codes, sc = qr.mlx_fp_quantize(w, fmt)
    packed = b"".join(qr.pack(r, bits) for r in codes)
    return {"weight": ("U32", np.frombuffer(packed, dtype="<u4").reshape(rows, cols * bits // 32)),
            "scales": ("U8", sc.astype(np.uint8))}


def nvfp4_global(w):
    """ModelOpt-style two-level NVFP4: (codes [rows, cols], E4M3 scale codes [rows, cols/16], G)."""
    rows, cols = w.shape
    amax = float(np.abs(w).max())
    g = f32(amax / (6.0 * 448.0)) if amax > 0 else f32(1.0)
    wg = w.reshape(rows, cols // 16, 16).astype(f32)
    d = (np.abs(wg).max(axis=2) / f32(6) / g).astype(f32)
    sc = qr.enc_e4m3(d.ravel()).reshape(d.shape)
    sv = (qr.e4m3(sc) * g).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(sv[:, :, None] == 0, f32(0), wg / sv[:, :, None]).astype(f32)
    codes = qr.enc_e2m1(v.ravel()).reshape(rows, cols)
    return codes, sc.astype(np.uint8), g


# ---------------------------------------------------------------------------------------------
# policies

def type_params(qtype, group):
    if qtype in ("int4", "int8"):
        g = group or 64
        main = {"group_size": g, "bits": 4 if qtype == "int4" else 8, "mode": "affine"}
        return main, dict(main, bits=8)
    main = mlx_spec({"mode": qtype})
    if group and group != main["group_size"]:
        raise ValueError(f"{qtype} has a fixed group size of {main['group_size']}")
    return main, mlx_spec({"mode": "mxfp8"})


def glmlite_policy(path, cols, main, eight):
    """glmlite quantize's policy (src/quantize.h); None = keep plain."""
    four = not (main["bits"] == 8)
    if path.endswith(".mlp.gate"):
        return None
    if path == "lm_head":
        p = eight
    elif four and ".self_attn." in path:
        p = eight
    elif four and path.endswith("down_proj") and ".switch_mlp." not in path:
        p = eight
    else:
        p = main
    return p if cols % p["group_size"] == 0 else None


MIXED_BLOCK = {"group_size": 32, "bits": 4, "mode": "mxfp4"}


def mlx_spec(d):
    """A config dict as mlx reads it: to_quantized(**d), so a missing mode is affine and missing
    bits/group_size are that mode's defaults; nothing comes from the block."""
    mode = d.get("mode", "affine")
    group, bits = {"affine": (64, 4), "mxfp4": (32, 4), "nvfp4": (16, 4), "mxfp8": (32, 8)}[mode]
    return {"group_size": d.get("group_size", group), "bits": d.get("bits", bits), "mode": mode}


def mixed_policy(path, cols):
    """An irregular mlx-style checkpoint under an mxfp4 block (mlx-lm --q-mode mxfp4 with a mixed
    recipe): every affine bit width, several groups, override dicts without a mode (affine) or
    without a group size, bf16 holes."""
    table = [
        (r"\.self_attn\.q_a_proj$", {"group_size": 32, "bits": 8}),
        (r"\.self_attn\.q_b_proj$", {"group_size": 128, "bits": 6, "mode": "affine"}),
        (r"\.self_attn\.kv_a_proj_with_mqa$", {"group_size": 64, "bits": 5}),
        (r"\.self_attn\.kv_b_proj$", {"group_size": 32, "bits": 8}),
        (r"layers\.0\.self_attn\.o_proj$", False),
        (r"\.self_attn\.o_proj$", {"group_size": 32, "bits": 8, "mode": "mxfp8"}),
        (r"\.switch_mlp\.up_proj$", {"group_size": 64, "bits": 3}),
        (r"\.switch_mlp\.down_proj$", {"group_size": 64, "bits": 4}),
        (r"\.shared_experts\.gate_proj$", {"mode": "nvfp4"}),
        (r"\.shared_experts\.up_proj$", {"group_size": 64, "bits": 2}),
        (r"^lm_head$", {"bits": 8}),
        (r"\.mlp\.gate$", None),
        (r"layers\.0\.mlp\.up_proj$", "plain-no-entry"),
    ]
    for pat, spec in table:
        if re.search(pat, path):
            if isinstance(spec, dict) and cols % mlx_spec(spec)["group_size"]:
                return False
            return spec
    return MIXED_BLOCK if cols % 32 == 0 else False


# ---------------------------------------------------------------------------------------------
# writing

class Writer:
    def __init__(self):
        self.specs, self.data = [], {}

    def add(self, name, dtype, arr):
        arr = np.ascontiguousarray(arr)
        self.specs.append((name, dtype, tuple(arr.shape)))
        self.data[name] = arr

    def add_quantized(self, path, parts):
        for suffix, (dt, arr) in parts.items():
            self.add(f"{path}.{suffix}", dt, arr)


def _layer(name):
    m = re.match(r"model\.layers\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def make(model, out, layout, qtype="int4", group=None):
    src = stn.SafeTensors(model)
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    L, E = cfg["num_hidden_layers"], cfg.get("n_routed_experts") or 0
    H, dn, dv, R = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    w = Writer()
    block = None
    overrides = {}
    if layout == "mlx":
        main, eight = type_params(qtype, group)
        block = dict(main)
    elif layout == "mixed":
        block = MIXED_BLOCK

    def values(name):
        return np.asarray(src.get(name), dtype=f32)

    def emit(path, mat, in_dtype, stacked=None):
        """mat [rows, cols] or stacked list of matrices -> tensors of module path."""
        mats = stacked if stacked is not None else [mat]
        cols = mats[0].shape[1]
        if layout == "mlx":
            spec = glmlite_policy(path, cols, main, eight)
            if spec is not None and spec != main:
                overrides[path] = spec
            if spec is None:
                overrides[path] = False
        else:
            spec = mixed_policy(path, cols)
            if spec is False or spec is None:
                if spec is False:
                    overrides[path] = False
                spec = None
            elif spec == "plain-no-entry":
                spec = None
            elif spec != block:
                overrides[path] = spec
        if spec is None:
            arr = np.stack(mats) if stacked is not None else mat
            w.add(f"{path}.weight", in_dtype, arr)
            return
        parts = [quantize_matrix(m, mlx_spec(spec), in_dtype) for m in mats]
        if stacked is None:
            w.add_quantized(path, parts[0])
        else:
            w.add_quantized(path, {k: (parts[0][k][0], np.stack([p[k][1] for p in parts])) for k in parts[0]})

    for name in src.names():
        dt, shape = src.info(name)
        layer = _layer(name)
        if layer >= L:
            continue  # MTP layer dropped
        path = name[:-7] if name.endswith(".weight") else name
        if layout in ("modelopt", "ct"):
            mx = layout == "ct" and qtype in ("mxfp4", "mxfp8")
            quant = (name.endswith(".weight") and len(shape) == 2 and ".mlp.gate." not in name + "."
                     and "embed_tokens" not in name and name != "lm_head.weight" and shape[1] % (32 if mx else 16) == 0)
            if not quant:
                w.add(name, dt, src.raw(name))
                continue
            if mx:  # compressed-tensors MX: E8M0 scales (U8) per 32 columns, no global scale
                parts = quantize_matrix(values(name), mlx_spec({"mode": qtype}), dt)
                codes = parts["weight"][1].view(np.uint8).reshape(shape[0], -1)
                if qtype == "mxfp4":
                    w.add(path + ".weight_packed", "U8", codes)
                else:
                    w.add(path + ".weight", "F8_E4M3", codes)
                w.add(path + ".weight_scale", "U8", parts["scales"][1])
                continue
            codes, sc, g = nvfp4_global(values(name))
            packed = np.frombuffer(b"".join(qr.pack(r, 4) for r in codes), dtype=np.uint8).reshape(shape[0], -1)
            if layout == "modelopt":
                w.add(path + ".weight", "U8", packed)
                w.add(path + ".weight_scale", "F8_E4M3", sc)
                w.add(path + ".weight_scale_2", "F32", np.array(g, dtype=f32))
                w.add(path + ".input_scale", "F32", np.array(1.0, dtype=f32))
            else:
                w.add(path + ".weight_packed", "U8", packed)
                w.add(path + ".weight_scale", "F8_E4M3", sc)
                w.add(path + ".weight_global_scale", "F32", np.array([f32(1) / g], dtype=f32))
            continue
        m = re.match(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(\w+)\.weight$", name)
        if m:
            if m.group(2) != "0":
                continue
            proj = m.group(3)
            mats = [values(f"model.layers.{layer}.mlp.experts.{e}.{proj}.weight") for e in range(E)]
            emit(f"model.layers.{layer}.mlp.switch_mlp.{proj}", None, dt, stacked=mats)
            continue
        if name.endswith("self_attn.kv_b_proj.weight") and layout == "mlx":
            kvb = values(name).reshape(H, dn + dv, R)
            base = path[:-len("kv_b_proj")]
            emit(base + "embed_q", None, dt, stacked=[kvb[h, :dn, :].T.copy() for h in range(H)])
            emit(base + "unembed_out", None, dt, stacked=[kvb[h, dn:, :].copy() for h in range(H)])
            continue
        if name.endswith(".weight") and len(shape) == 2:
            emit(path, values(name), dt)
            continue
        w.add(name, dt, src.raw(name))

    out = os.path.abspath(out)
    tmp = out + ".tmp-py"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    stn.write_model(tmp, w.specs, lambda n: w.data[n], n_shards=1, metadata={"format": "mlx"})
    for f in SIDE_FILES:
        if os.path.exists(os.path.join(model, f)):
            shutil.copy(os.path.join(model, f), os.path.join(tmp, f))
    cfg.pop("quantization", None)
    cfg.pop("quantization_config", None)
    if block is not None:
        q = dict(block)
        q.update(overrides)
        cfg["quantization"] = q
        cfg["quantization_config"] = q
    elif layout == "modelopt":
        cfg["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16}
    else:
        fmt = {"mxfp4": "mxfp4-pack-quantized", "mxfp8": "mxfp8-quantized"}.get(qtype, "nvfp4-pack-quantized")
        cfg["quantization_config"] = {"quant_method": "compressed-tensors", "format": fmt}
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return out


# ---------------------------------------------------------------------------------------------
# dequantizing loader

class DequantLoader:
    """load(name) -> float64 array of a Hugging Face tensor name, from any layout above."""

    def __init__(self, model_dir):
        self.st = stn.SafeTensors(model_dir)
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        self.q = self.cfg.get("quantization") or {}

    def __call__(self, name):
        return self.load(name)

    def _raw(self, name):
        return np.asarray(self.st.raw(name))

    def module(self, path):
        """Dequantized [..., rows, cols] of module path, or None if absent."""
        st = self.st
        if path + ".weight_packed" in st and path + ".weight_global_scale" not in st:  # compressed-tensors MXFP4
            return self._mx(path + ".weight_packed", path + ".weight_scale", qr.WF_MXFP4)
        if path + ".weight_packed" in st:  # compressed-tensors NVFP4: divide by the stored global scale
            v = self._nvfp4(path + ".weight_packed", path + ".weight_scale")
            return v / float(np.asarray(st.get(path + ".weight_global_scale"), dtype=np.float64).reshape(-1)[0])
        if path + ".weight" not in st:
            return None
        if path + ".scales" in st:
            return self._mlx(path)
        if path + ".weight_scale" in st and st.info(path + ".weight")[0] == "F8_E4M3":  # compressed-tensors MXFP8
            return self._mx(path + ".weight", path + ".weight_scale", qr.WF_MXFP8)
        if path + ".weight_scale" in st:  # ModelOpt: direct multiplier
            v = self._nvfp4(path + ".weight", path + ".weight_scale")
            return v * float(np.asarray(st.get(path + ".weight_scale_2"), dtype=np.float64).reshape(-1)[0])
        return np.asarray(st.get(path + ".weight"), dtype=np.float64)

    def _nvfp4(self, wname, sname):
        packed = self._raw(wname)
        rows = packed.shape[0]
        cols = packed.shape[1] * 2
        codes = unpack(packed.tobytes(), 4, rows, cols)
        sc = self._raw(sname).reshape(rows, -1)
        return qr.dequant_fp(codes, sc, qr.WF_NVFP4, 0.0).astype(np.float64)

    def _mx(self, wname, sname, fmt):
        raw = self._raw(wname)
        rows, bits = raw.shape[0], 8 if fmt == qr.WF_MXFP8 else 4
        cols = raw.shape[1] * raw.dtype.itemsize * 8 // bits
        codes = unpack(raw.tobytes(), bits, rows, cols)
        return qr.dequant_fp(codes, self._raw(sname).reshape(rows, -1), fmt, 0.0).astype(np.float64)

    def _mlx(self, path):
        st = self.st
        wraw, sraw = self._raw(path + ".weight"), self._raw(path + ".scales")
        lead = wraw.shape[:-2]
        rows = wraw.shape[-2]
        ng = sraw.shape[-1]
        has_b = path + ".biases" in st
        sdt = st.info(path + ".scales")[0]
        pb = wraw.shape[-1] * wraw.dtype.itemsize
        spec = self.q.get(path) if isinstance(self.q.get(path), dict) else self.q
        mode = spec.get("mode", "affine")
        n = int(np.prod(lead)) if lead else 1
        wr = wraw.reshape(n, rows, -1)
        sr = sraw.reshape(n, rows, ng)
        br = self._raw(path + ".biases").reshape(n, rows, ng) if has_b else None
        cols = None
        outs = []
        for e in range(n):
            if mode == "affine":
                bits = spec.get("bits", 4)
                cols = pb * 8 // bits
                gs = cols // ng
                codes = unpack(wr[e].tobytes(), bits, rows, cols)
                sv = stn.decode(sr[e], sdt).astype(f32) if sdt != "F16" else sr[e].astype(f32)
                bv = stn.decode(br[e], sdt).astype(f32) if sdt != "F16" else br[e].astype(f32)
                outs.append(qr.dequant_affine(codes, sv, bv, gs, 0.0))
            else:
                fmt = MODES[mode]
                bits = 8 if fmt == qr.WF_MXFP8 else 4
                cols = pb * 8 // bits
                codes = unpack(wr[e].tobytes(), bits, rows, cols)
                outs.append(qr.dequant_fp(codes, sr[e], fmt, 0.0))
        v = np.stack(outs).astype(np.float64)
        return v.reshape(lead + (rows, cols)) if lead else v[0]

    def load(self, name):
        if name.endswith(".weight"):
            path = name[:-7]
            v = self.module(path)
            if v is not None:
                return v
            m = re.match(r"(model\.layers\.\d+\.mlp)\.experts\.(\d+)\.(\w+)$", path)
            if m:
                v = self.module(f"{m.group(1)}.switch_mlp.{m.group(3)}")
                if v is not None:
                    return v[int(m.group(2))]
            m = re.match(r"(model\.layers\.\d+\.self_attn)\.kv_b_proj$", path)
            if m:
                eq, uo = self.module(m.group(1) + ".embed_q"), self.module(m.group(1) + ".unembed_out")
                if eq is not None and uo is not None:
                    H, R, dn = eq.shape
                    dv = uo.shape[1]
                    kv = np.concatenate([eq.transpose(0, 2, 1), uo], axis=1)  # [H, dn+dv, R]
                    return kv.reshape(H * (dn + dv), R)
            raise KeyError(f"tensor {name!r} not found")
        if name not in self.st:
            raise KeyError(f"tensor {name!r} not found")
        return np.asarray(self.st.get(name), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# malformed checkpoints (tests of the loader's errors)

CORRUPTIONS = ("packed_width", "scales_shape", "group_divide", "nan_scale", "config_bits", "global_zero",
               "global_missing", "config_false")


def corrupt(model, out, kind):
    """Copy of quantized checkpoint `model` with one defect; prints the tensor the error must name."""
    src = stn.SafeTensors(model)
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    tensors = {n: np.array(src.raw(n)) for n in src.names()}
    dtypes = {n: src.info(n)[0] for n in src.names()}
    target = None
    if kind == "packed_width":  # one packed column short
        target = "model.layers.1.self_attn.q_a_proj.weight"
        tensors[target] = tensors[target][:, :-1].copy()
    elif kind == "scales_shape":  # one row of scales missing
        target = "model.layers.1.self_attn.q_b_proj.scales"
        tensors[target] = tensors[target][:-1].copy()
    elif kind == "group_divide":  # 3 groups for a row of 128
        p = "model.layers.1.self_attn.q_a_proj"
        for k in ("scales", "biases"):
            tensors[f"{p}.{k}"] = np.repeat(tensors[f"{p}.{k}"][:, :1], 3, axis=1)
        target = p + ".scales"
    elif kind == "nan_scale":  # E4M3/E8M0 NaN code in an expert's scales
        target = "model.layers.1.mlp.switch_mlp.gate_proj.scales"
        a = tensors[target].copy()
        a[2, 0, 0] = 0x7F if cfg["quantization"]["mode"] == "nvfp4" else 0xFF
        tensors[target] = a
    elif kind == "config_bits":  # config says 4-bit where the tensor is 8-bit
        target = "model.layers.1.self_attn.q_a_proj.weight"
        cfg["quantization"]["model.layers.1.self_attn.q_a_proj"] = {"group_size": 64, "bits": 4, "mode": "affine"}
    elif kind == "config_false":  # config says not quantized where the tensor is
        target = "model.layers.2.mlp.switch_mlp.up_proj.weight"
        cfg["quantization"]["model.layers.2.mlp.switch_mlp.up_proj"] = False
    elif kind == "global_zero":  # compressed-tensors global scale of 0
        target = next(n for n in sorted(tensors) if n.endswith(".weight_global_scale"))
        tensors[target] = np.zeros_like(tensors[target])
    elif kind == "global_missing":  # a ModelOpt module without its weight_scale_2
        target = next(n for n in sorted(tensors) if n.endswith(".weight_scale_2"))
        del tensors[target], dtypes[target]
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    cfg.pop("quantization_config", None) if "quantization" in cfg else None
    if "quantization" in cfg:
        cfg["quantization_config"] = cfg["quantization"]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    stn.write_tensors(os.path.join(out, "model.safetensors"), tensors, dtypes)
    for f in SIDE_FILES:
        if os.path.exists(os.path.join(model, f)):
            shutil.copy(os.path.join(model, f), os.path.join(out, f))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print(target)
    return target


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layout", choices=("mlx", "mixed", "modelopt", "ct"))
    ap.add_argument("--corrupt", choices=CORRUPTIONS, help="copy the quantized --model with this defect")
    ap.add_argument("--type", default="int4", choices=("int4", "int8", "nvfp4", "mxfp4", "mxfp8"))
    ap.add_argument("--group-size", type=int, default=None)
    a = ap.parse_args(argv)
    try:
        if a.corrupt:
            corrupt(a.model, a.out, a.corrupt)
        elif not a.layout:
            ap.error("--layout or --corrupt is required")
        else:
            make(a.model, a.out, a.layout, a.type, a.group_size)
    except (ValueError, OSError, KeyError, stn.SafetensorsError) as e:
        print(f"make_quantized: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
