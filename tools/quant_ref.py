#!/usr/bin/python3
"""quant_ref.py — numpy oracle for the quantized formats (SPEC §6), written
from the formulas independently of src/quant.c.

Usage: quant_ref.py OUTDIR [SEED]

Writes into OUTDIR:
  case_NNN.bin   packed random tensors (+ for quantizer cases the f32 input)
                 and the expected results; layout in write_case() below.
  f16.bin        float16 -> float32 of all 65536 codes, and float32 -> float16
                 of random values, of every exact midpoint between neighbouring
                 halves, and of edge values (numpy's conversions are the truth).

Decoding (all in float32, multiply and add rounded separately):
  affine  w = (scale * q) + bias          nvfp4/mxfp4  w = e2m1 * scale
  mxfp8   w = e4m3 * e8m0                 then w = w * global when global not in {0, 1}
Encoders are checked by brute force: the nearest representable value, ties to
the even code (= even mantissa), saturating at the largest finite value; E8M0
is the smallest power of two >= x (MLX's mx_scale_round_up).
The affine quantizer is MLX's (mlx/backend/cpu/quantized.cpp `quantize`).
"""
import os
import struct
import sys

import numpy as np

F32, F16, BF16, U8 = 0, 1, 2, 3                     # tensor.h dtype
WF_AFFINE, WF_NVFP4, WF_MXFP4, WF_MXFP8 = 3, 4, 5, 6  # tensor.h wformat
KIND_DECODE, KIND_QUANTIZE = 0, 1

f32 = np.float32


# ---- element and scale decoders (from the SPEC tables) -----------------------
E2M1_MAG = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=f32)


def e2m1(codes):
    codes = np.asarray(codes, dtype=np.int64)
    mag = E2M1_MAG[codes & 7]
    return np.where(codes & 8, -mag, mag).astype(f32)


def e4m3(codes):
    codes = np.asarray(codes, dtype=np.int64)
    e = (codes >> 3) & 15
    m = codes & 7
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))
    v = np.where((e == 15) & (m == 7), np.nan, v)
    return np.where(codes & 0x80, -v, v).astype(f32)


def e8m0(codes):
    codes = np.asarray(codes, dtype=np.int64)
    v = 2.0 ** (codes.astype(np.float64) - 127)
    return np.where(codes == 255, np.nan, v).astype(f32)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint32) << 16).view(f32)


def f32_to_bf16_bits(x):
    u = np.asarray(x, dtype=f32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=f32))
    return np.where(nan, ((u >> 16) | 64).astype(np.uint16), r)


def scale_bytes(vals, dt):
    vals = np.asarray(vals, dtype=f32)
    if dt == F32:
        return vals.astype('<f4').tobytes(), vals
    if dt == F16:
        h = vals.astype(np.float16)
        return h.astype('<f2').tobytes(), h.astype(f32)
    b = f32_to_bf16_bits(vals)
    return b.astype('<u2').tobytes(), bf16_bits_to_f32(b)


def pack(codes, bits):
    """Little-endian bit stream: code k at bits [k*bits, (k+1)*bits)."""
    codes = np.asarray(codes, dtype=np.uint64).ravel()
    bitarr = ((codes[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8).ravel()
    return np.packbits(bitarr, bitorder='little').tobytes()


# ---- encoders by brute force ------------------------------------------------------
def nearest_code(x, table):
    """Nearest finite table value, ties to the even code."""
    x = np.asarray(x, dtype=np.float64)
    codes = np.arange(len(table))
    tv = table.astype(np.float64)
    ok = np.isfinite(tv)
    codes, tv = codes[ok], tv[ok]
    d = np.abs(x[:, None] - tv[None, :])
    best = d.min(axis=1, keepdims=True)
    cand = d == best
    # prefer same sign as x (so -0.1 -> -0, the sign is kept), then even code
    same = (np.signbit(tv)[None, :] == np.signbit(x)[:, None]) | (tv[None, :] != 0)
    score = np.where(cand & same, 0, 4) + np.where(cand, 0, 8) + (codes[None, :] & 1)
    return codes[np.argmin(score, axis=1)]


E4M3_TABLE = e4m3(np.arange(256))
E2M1_TABLE = e2m1(np.arange(16))


def enc_e4m3(x):
    return nearest_code(x, E4M3_TABLE).astype(np.uint8)


def enc_e2m1(x):
    return nearest_code(x, E2M1_TABLE).astype(np.uint8)


def enc_e8m0_ceil(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide='ignore'):
        k = np.ceil(np.log2(np.where(x > 0, x, 1.0)))
    k = np.where(x > 0, k, -127)
    return (np.clip(k, -127, 127) + 127).astype(np.uint8)


# ---- dequantization -------------------------------------------------------------
def apply_global(w, g):
    if g != 0 and g != 1:
        w = (w * f32(g)).astype(f32)
    return w


def dequant_affine(q, s, b, gs, g):
    rows, cols = q.shape
    s = np.repeat(s.reshape(rows, -1), gs, axis=1)
    b = np.repeat(b.reshape(rows, -1), gs, axis=1)
    t = (s * q.astype(f32)).astype(f32)
    return apply_global((t + b).astype(f32), g)


def dequant_fp(codes, sc, fmt, g):
    rows, cols = codes.shape
    gs = 16 if fmt == WF_NVFP4 else 32
    sv = e4m3(sc) if fmt == WF_NVFP4 else e8m0(sc)
    sv = np.repeat(sv.reshape(rows, -1), gs, axis=1)
    v = e4m3(codes) if fmt == WF_MXFP8 else e2m1(codes)
    return apply_global((v * sv).astype(f32), g)


# ---- MLX affine quantizer (numpy re-implementation) ---------------------------------
def mlx_affine_quantize(w, bits, gs, dt):
    rows, cols = w.shape
    wg = w.reshape(rows, cols // gs, gs).astype(f32)
    n_bins = f32((1 << bits) - 1)
    eps = f32(1e-7)
    w_max = wg.max(axis=2, keepdims=True)
    w_min = wg.min(axis=2, keepdims=True)
    mask = np.abs(w_min) > np.abs(w_max)
    scales = np.maximum((w_max - w_min) / n_bins, eps).astype(f32)
    scales = np.where(mask, scales, -scales).astype(f32)
    edge = np.where(mask, w_min, w_max).astype(f32)
    q0 = np.rint(edge / scales).astype(f32)
    nz = q0 != 0
    with np.errstate(divide='ignore', invalid='ignore'):
        scales = np.where(nz, edge / np.where(nz, q0, f32(1)), scales).astype(f32)
    biases = np.where(nz, edge, f32(0)).astype(f32)
    q = np.clip(np.rint((wg - biases) / scales), 0, n_bins).astype(np.uint8)
    sb, sv = scale_bytes(scales.reshape(rows, -1), dt)
    bb, bv = scale_bytes(biases.reshape(rows, -1), dt)
    return q.reshape(rows, cols), sb, sv.reshape(rows, -1), bb, bv.reshape(rows, -1)


def mlx_fp_quantize(w, fmt):
    rows, cols = w.shape
    gs = 16 if fmt == WF_NVFP4 else 32
    wg = w.reshape(rows, cols // gs, gs).astype(f32)
    amax = np.abs(wg).max(axis=2)
    d = (amax / f32(448 if fmt == WF_MXFP8 else 6)).astype(f32)
    if fmt == WF_NVFP4:
        sc = enc_e4m3(d.ravel()).reshape(d.shape)
        sv = e4m3(sc)
    else:
        sc = enc_e8m0_ceil(d.ravel()).reshape(d.shape)
        sv = e8m0(sc)
    with np.errstate(divide='ignore'):
        inv = np.where(sv == 0, f32(0), f32(1) / np.where(sv == 0, f32(1), sv)).astype(f32)
    v = (wg * inv[:, :, None]).astype(f32).ravel()
    codes = enc_e4m3(v) if fmt == WF_MXFP8 else enc_e2m1(v)
    return codes.reshape(rows, cols), sc.astype(np.uint8)


# ---- case files ---------------------------------------------------------------------
def write_case(path, kind, fmt, bits, gs, dt, rows, cols, g, invalid, packed, scales, biases, expect, src=None):
    """Header: 'QREF' then int32 kind, fmt, bits, group, scale dtype, rows, cols,
    expect_invalid, float32 global; then u64-length-prefixed blobs: packed,
    scales, biases, expected dequantized f32 [rows*cols], source f32 (quantize
    cases; empty otherwise)."""
    with open(path, 'wb') as f:
        f.write(b'QREF')
        f.write(struct.pack('<8if', kind, fmt, bits, gs, dt, rows, cols, invalid, g))
        srcb = b'' if src is None else np.asarray(src, dtype='<f4').tobytes()
        for blob in (packed, scales, biases, np.asarray(expect, dtype='<f4').tobytes(), srcb):
            f.write(struct.pack('<Q', len(blob)))
            f.write(blob)


def rand_scales(rng, n, dt):
    v = (rng.standard_normal(n) * 2.0 ** rng.integers(-12, 4, n)).astype(f32)
    k = rng.integers(0, 10, n)
    v = np.where(k == 0, f32(0), v)
    v = np.where(k == 1, f32(-0.0), v)
    if dt == F16:
        v = np.where(k == 2, f32(3.0e-6) * np.sign(v + f32(0.5)), v)   # f16 subnormal
    if dt == BF16:
        v = np.where(k == 2, f32(2.0e-39), v)                         # bf16 subnormal
    return v.astype(f32)


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1234
    np.seterr(all='ignore')   # overflow to inf is part of the cases
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    n = 0

    def name():
        nonlocal n
        n += 1
        return os.path.join(out, 'case_%03d.bin' % n)

    # affine decode: every bit width x group x scale dtype
    for bits in (2, 3, 4, 5, 6, 8):
        for gs in (32, 64, 128):
            for dt in (BF16, F16, F32):
                rows, cols = 3, gs * int(rng.integers(1, 4))
                q = rng.integers(0, 1 << bits, (rows, cols))
                q[0, 0], q[0, 1] = 0, (1 << bits) - 1       # edge codes
                sb, sv = scale_bytes(rand_scales(rng, rows * cols // gs, dt), dt)
                bb, bv = scale_bytes(rand_scales(rng, rows * cols // gs, dt), dt)
                g = 0.0 if (bits + gs) % 3 else 0.37
                exp = dequant_affine(q, sv, bv, gs, g)
                write_case(name(), KIND_DECODE, WF_AFFINE, bits, gs, dt, rows, cols, g, 0,
                           b''.join(pack(r, bits) for r in q), sb, bb, exp)

    # fp formats: every code, every scale code (NaN scales in their own cases)
    for fmt, g in ((WF_NVFP4, 1.0), (WF_NVFP4, 0.0123), (WF_MXFP4, 1.0), (WF_MXFP8, 1.0), (WF_MXFP8, 3.5)):
        gs = 16 if fmt == WF_NVFP4 else 32
        bits = 8 if fmt == WF_MXFP8 else 4
        rows, cols = 5, 256
        codes = rng.integers(0, 1 << bits, (rows, cols))
        codes[0, :1 << bits] = np.arange(1 << bits)[:cols]
        ng = rows * cols // gs
        if fmt == WF_NVFP4:
            sc = rng.integers(0, 256, ng)
            sc = np.where((sc & 0x7F) == 0x7F, 0x7E, sc)
            sc[:4] = [0x00, 0x80, 0x01, 0x7E]          # zero, -0, min subnormal, max
        else:
            sc = rng.integers(0, 255, ng)
            sc[:3] = [0, 1, 254]
        sc = sc.astype(np.uint8)
        exp = dequant_fp(codes, sc, fmt, g)
        write_case(name(), KIND_DECODE, fmt, bits, gs, U8, rows, cols, g, 0,
                   b''.join(pack(r, bits) for r in codes), sc.tobytes(), b'', exp)
    for fmt, bad in ((WF_NVFP4, 0x7F), (WF_NVFP4, 0xFF), (WF_MXFP4, 0xFF), (WF_MXFP8, 0xFF)):
        gs = 16 if fmt == WF_NVFP4 else 32
        bits = 8 if fmt == WF_MXFP8 else 4
        rows, cols = 2, 64
        codes = rng.integers(0, 1 << bits, (rows, cols))
        sc = np.full(rows * cols // gs, 0x38 if fmt == WF_NVFP4 else 127, dtype=np.uint8)
        sc[-1] = bad
        exp = dequant_fp(codes, sc, fmt, 1.0)
        write_case(name(), KIND_DECODE, fmt, bits, gs, U8, rows, cols, 1.0, 1,
                   b''.join(pack(r, bits) for r in codes), sc.tobytes(), b'', exp)

    # quantizer: affine every bits x group x dtype; fp formats
    for bits in (2, 3, 4, 5, 6, 8):
        for gs in (32, 64, 128):
            for dt in (BF16, F16, F32):
                rows, cols = 4, gs * 2
                w = (rng.standard_normal((rows, cols)) * 0.05).astype(f32)
                w[1, :gs] = 0.0                                    # all-zero group
                w[2, :gs] = rng.uniform(0.1, 0.2, gs).astype(f32)  # one-signed group
                w[3, :gs] = np.round(rng.standard_normal(gs) * 4) / 8  # many exact ties
                q, sb, sv, bb, bv = mlx_affine_quantize(w, bits, gs, dt)
                exp = dequant_affine(q, sv, bv, gs, 1.0)
                write_case(name(), KIND_QUANTIZE, WF_AFFINE, bits, gs, dt, rows, cols, 1.0, 0,
                           b''.join(pack(r, bits) for r in q), sb, bb, exp, src=w)
    for fmt in (WF_NVFP4, WF_MXFP4, WF_MXFP8):
        gs = 16 if fmt == WF_NVFP4 else 32
        bits = 8 if fmt == WF_MXFP8 else 4
        rows, cols = 6, 128
        w = (rng.standard_normal((rows, cols)) * 2.0 ** rng.integers(-8, 8, (rows, 1))).astype(f32)
        w[1, :gs] = 0.0
        w[2, :gs] = (rng.integers(-12, 13, gs) * 0.25).astype(f32)  # lands on ties
        w[3, :gs] = f32(1e-30)                                        # tiny: scale underflows
        w[4, :gs] = (rng.standard_normal(gs) * 1e4).astype(f32)       # large: e4m3 scale saturates
        codes, sc = mlx_fp_quantize(w, fmt)
        exp = dequant_fp(codes, sc, fmt, 1.0)
        write_case(name(), KIND_QUANTIZE, fmt, bits, gs, U8, rows, cols, 1.0, 0,
                   b''.join(pack(r, bits) for r in codes), sc.tobytes(), b'', exp, src=w)

    # f16: all codes -> f32; f32 -> f16 on random values, midpoints, edges
    with open(os.path.join(out, 'f16.bin'), 'wb') as f:
        codes = np.arange(65536, dtype=np.uint16)
        f.write(codes.view(np.float16).astype(f32).astype('<f4').tobytes())
        vals = [(rng.standard_normal(20000) * 2.0 ** rng.integers(-30, 18, 20000)).astype(f32)]
        fin = codes.view(np.float16)
        fin = np.sort(fin[np.isfinite(fin)].astype(np.float64))
        mids = ((fin[1:] + fin[:-1]) / 2).astype(f32)     # exact in f32: halves have 11 bits
        vals.append(mids[np.isfinite(mids)])
        vals.append(np.array([0.0, -0.0, 65504, 65519.99, 65520, 1e10, -1e10, np.inf, -np.inf,
                              2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0001, 2.0 ** -26, 1e-45,
                              2.0 ** -14, 2.0 ** -14 * (1 - 2.0 ** -12)], dtype=f32))
        v = np.concatenate(vals).astype(f32)
        h = v.astype(np.float16).view(np.uint16)
        f.write(struct.pack('<Q', len(v)))
        f.write(v.astype('<f4').tobytes())
        f.write(h.astype('<u2').tobytes())
    print(n)


if __name__ == '__main__':
    main()
