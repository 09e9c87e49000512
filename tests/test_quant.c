/* test_quant.c — quantized formats against the numpy oracle (tools/quant_ref.py:
 * bit-exact decoding, MLX quantizer output, f16 conversion), pack/unpack, the
 * codecs, validation, and every fast dot product / the batched matmul against
 * the scalar reference. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "kernels.h"
#include "quant.h"

/* ---- oracle files ---------------------------------------------------------- */

static const char *oracle_dir(void) {
    static char dir[300];
    static int state; /* 0 untried, 1 ok, -1 failed */
    if (!state) {
        snprintf(dir, sizeof dir, "%s/quant_ref", test_tmpdir());
        char cmd[700];
        snprintf(cmd, sizeof cmd, "%s tools/quant_ref.py %s 4242 > /dev/null", test_python(), dir);
        state = test_run(cmd) == 0 ? 1 : -1;
    }
    return state == 1 ? dir : NULL;
}

typedef struct {
    int kind, fmt, bits, gs, dt, rows, cols, invalid;
    float global;
    uint8_t *blob[5];
    size_t len[5]; /* packed, scales, biases, expected f32, source f32 */
    char *raw;
} qcase;

static int load_case(const char *dir, int i, qcase *c) {
    char path[400];
    snprintf(path, sizeof path, "%s/case_%03d.bin", dir, i);
    size_t n;
    char *d = test_read_file(path, &n);
    if (!d) return 0;
    memset(c, 0, sizeof *c);
    c->raw = d;
    if (n < 40 || memcmp(d, "QREF", 4) != 0) { free(d); return -1; }
    int32_t h[8];
    memcpy(h, d + 4, 32);
    memcpy(&c->global, d + 36, 4);
    c->kind = h[0]; c->fmt = h[1]; c->bits = h[2]; c->gs = h[3]; c->dt = h[4];
    c->rows = h[5]; c->cols = h[6]; c->invalid = h[7];
    size_t off = 40;
    for (int k = 0; k < 5; k++) {
        uint64_t len;
        if (off + 8 > n) { free(d); return -1; }
        memcpy(&len, d + off, 8);
        off += 8;
        if (len > n - off) { free(d); return -1; }
        c->blob[k] = (uint8_t *)d + off;
        c->len[k] = (size_t)len;
        off += len;
    }
    return 1;
}

static weight case_weight(const qcase *c, const uint8_t *packed, const uint8_t *scales, const uint8_t *biases) {
    weight w = {0};
    w.format = (wformat)c->fmt;
    w.rows = c->rows;
    w.cols = c->cols;
    w.bits = c->bits;
    w.group_size = c->gs;
    w.scale_dtype = (dtype)c->dt;
    w.data = packed;
    w.row_stride = quant_row_bytes(w.format, w.bits, w.cols);
    w.scales = scales;
    w.biases = c->fmt == WF_AFFINE ? biases : NULL;
    w.scale_stride = quant_scale_row_bytes(w.format, w.group_size, w.scale_dtype, w.cols);
    w.global_scale = c->global;
    return w;
}

static int same_f32(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y;
}

TEST(quant_decode_matches_numpy) {
    const char *dir = oracle_dir();
    REQUIRE(dir);
    int cases = 0, invalid_seen = 0;
    for (int i = 1;; i++) {
        qcase c;
        int st = load_case(dir, i, &c);
        if (st == 0) break;
        REQUIREF(st == 1, "case %d unreadable", i);
        if (c.kind != 0) { free(c.raw); continue; }
        cases++;
        weight w = case_weight(&c, c.blob[0], c.blob[1], c.blob[2]);
        REQUIRE(c.len[0] == (size_t)c.rows * w.row_stride);
        REQUIRE(c.len[3] == (size_t)c.rows * c.cols * 4);
        char err[200] = "";
        int v = quant_validate(&w, err, sizeof err);
        if (c.invalid) { invalid_seen++; CHECKF(v != 0, "case %d: NaN scale code accepted", i); }
        else CHECKF(v == 0, "case %d rejected: %s", i, err);
        float *row = malloc((size_t)c.cols * sizeof(float));
        int bad = 0;
        for (int r = 0; r < c.rows; r++) {
            weight_row_f32(&w, r, row);
            for (int k = 0; k < c.cols && bad < 5; k++) {
                float e;
                memcpy(&e, c.blob[3] + ((size_t)r * c.cols + k) * 4, 4);
                if (!same_f32(row[k], e)) {
                    bad++;
                    test_fail(__FILE__, __LINE__, "case %d fmt %d bits %d gs %d dt %d [%d][%d]: %.9g != %.9g", i, c.fmt,
                              c.bits, c.gs, c.dt, r, k, row[k], e);
                }
            }
        }
        free(row);
        free(c.raw);
    }
    CHECK(cases >= 60);
    CHECK(invalid_seen == 4);
}

/* Bound on |dequant(quant(w)) - w| for one element (see test body). */
static double affine_bound(float s, float b, int bits, int dt) {
    double u = dt == DT_F32 ? 0x1p-24 : dt == DT_F16 ? 0x1p-11 : 0x1p-9;
    return 1.0001 * fabs(s) + (double)(1 << bits) * fabs(s) * u + 2 * fabs(b) * u + 1e-6 * (fabs(s) + fabs(b));
}

TEST(quant_quantizer_matches_numpy) {
    const char *dir = oracle_dir();
    REQUIRE(dir);
    int cases = 0;
    for (int i = 1;; i++) {
        qcase c;
        int st = load_case(dir, i, &c);
        if (st == 0) break;
        REQUIREF(st == 1, "case %d unreadable", i);
        if (c.kind != 1) { free(c.raw); continue; }
        cases++;
        weight ref = case_weight(&c, c.blob[0], c.blob[1], c.blob[2]);
        size_t rb = ref.row_stride, sb = ref.scale_stride;
        uint8_t *packed = calloc((size_t)c.rows, rb), *scales = calloc((size_t)c.rows, sb), *biases = calloc((size_t)c.rows, sb + 1);
        const float *src = (const float *)(const void *)c.blob[4];
        int ok = 1;
        for (int r = 0; r < c.rows; r++)
            ok &= quant_quantize_row((wformat)c.fmt, c.bits, c.gs, (dtype)c.dt, src + (size_t)r * c.cols, c.cols,
                                     packed + r * rb, scales + r * sb, biases + r * sb) == 0;
        CHECKF(ok, "case %d: quantize failed", i);
        CHECKF(memcmp(packed, c.blob[0], c.len[0]) == 0, "case %d fmt %d bits %d gs %d dt %d: codes differ", i, c.fmt, c.bits, c.gs, c.dt);
        CHECKF(memcmp(scales, c.blob[1], c.len[1]) == 0, "case %d fmt %d bits %d gs %d dt %d: scales differ", i, c.fmt, c.bits, c.gs, c.dt);
        if (c.fmt == WF_AFFINE)
            CHECKF(memcmp(biases, c.blob[2], c.len[2]) == 0, "case %d bits %d gs %d dt %d: biases differ", i, c.bits, c.gs, c.dt);
        /* dequant(quant(w)) within the format's bound. Affine: q is the nearest
           level except that MLX moves the scale so the larger-magnitude edge
           lands on a level, which can push the far edge up to one level out of
           range (clipped) — so one step |s|; rounding s and b to the storage
           dtype (unit roundoff u) adds q*|s|*u + |b|*u. FP formats: half the
           widest code gap (E2M1: 1 unit of scale; E4M3: 2^-4 relative or 2^-10
           units in the subnormal range) or, for nvfp4 where the E4M3 scale
           can round down, the saturation excess |w| - 6*s. */
        weight w = case_weight(&c, packed, scales, biases);
        float *row = malloc((size_t)c.cols * sizeof(float));
        int bad = 0;
        for (int r = 0; r < c.rows; r++) {
            weight_row_f32(&w, r, row);
            for (int k = 0; k < c.cols && bad < 5; k++) {
                float x = src[(size_t)r * c.cols + k], e;
                memcpy(&e, c.blob[3] + ((size_t)r * c.cols + k) * 4, 4);
                if (!same_f32(row[k], e)) { bad++; test_fail(__FILE__, __LINE__, "case %d: dequant differs", i); }
                double bound;
                int g = k / quant_format_group(w.format, w.group_size);
                if (c.fmt == WF_AFFINE) {
                    size_t ss = c.dt == DT_F32 ? 4 : 2;
                    float s, b;
                    const uint8_t *sp = scales + r * sb + g * ss, *bp = biases + r * sb + g * ss;
                    if (c.dt == DT_F32) { memcpy(&s, sp, 4); memcpy(&b, bp, 4); }
                    else if (c.dt == DT_F16) { s = f16_to_f32((uint16_t)(sp[0] | sp[1] << 8)); b = f16_to_f32((uint16_t)(bp[0] | bp[1] << 8)); }
                    else { s = bf16_to_f32((uint16_t)(sp[0] | sp[1] << 8)); b = bf16_to_f32((uint16_t)(bp[0] | bp[1] << 8)); }
                    bound = affine_bound(s, b, c.bits, c.dt);
                } else {
                    uint8_t sc = scales[r * sb + g];
                    double s = c.fmt == WF_NVFP4 ? e4m3_to_f32(sc) : e8m0_to_f32(sc);
                    if (c.fmt == WF_MXFP8) bound = fmax(fabs(x) * 0x1p-4, s * 0x1p-10);
                    else bound = fmax(s, fabs(x) - 6 * s);
                    bound = bound * (1 + 1e-6) + 1e-40;
                }
                if (fabs((double)row[k] - x) > bound) {
                    bad++;
                    test_fail(__FILE__, __LINE__, "case %d fmt %d bits %d: |%g - %g| > %g", i, c.fmt, c.bits, row[k], x, bound);
                }
            }
        }
        free(row);
        free(packed);
        free(scales);
        free(biases);
        free(c.raw);
    }
    CHECK(cases >= 57);
}

TEST(quant_f16_exhaustive) {
    const char *dir = oracle_dir();
    REQUIRE(dir);
    char path[400];
    snprintf(path, sizeof path, "%s/f16.bin", dir);
    size_t n;
    char *d = test_read_file(path, &n);
    REQUIRE(d && n > 65536 * 4 + 8);
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float e;
        memcpy(&e, d + h * 4, 4);
        float got = f16_to_f32((uint16_t)h);
        if (!same_f32(got, e) && bad++ < 5) test_fail(__FILE__, __LINE__, "f16 0x%04x: %g != %g", h, got, e);
        if (!isnan(got) && f32_to_f16(got) != h && bad++ < 5) test_fail(__FILE__, __LINE__, "f16 round trip 0x%04x", h);
    }
    uint64_t nv;
    memcpy(&nv, d + 65536 * 4, 8);
    REQUIRE(n == 65536 * 4 + 8 + nv * 6);
    const char *vals = d + 65536 * 4 + 8, *halves = vals + nv * 4;
    for (uint64_t i = 0; i < nv; i++) {
        float v;
        uint16_t e;
        memcpy(&v, vals + i * 4, 4);
        memcpy(&e, halves + i * 2, 2);
        uint16_t got = f32_to_f16(v);
        if (got != e && bad++ < 10) test_fail(__FILE__, __LINE__, "f32_to_f16(%.9g) = 0x%04x, numpy 0x%04x", v, got, e);
    }
    CHECK(nv > 60000);
    CHECK(f32_to_f16(NAN) != 0x7c00 && (f32_to_f16(NAN) & 0x7c00) == 0x7c00);
    free(d);
}

/* ---- codecs, packing, validation ------------------------------------------------ */

TEST(quant_codecs) {
    for (int c = 0; c < 256; c++) {
        float v = e4m3_to_f32((uint8_t)c);
        if ((c & 0x7f) == 0x7f) { CHECK(isnan(v)); continue; }
        CHECKF(f32_to_e4m3(v) == c, "e4m3 0x%02x -> %g -> 0x%02x", c, v, f32_to_e4m3(v));
    }
    /* every midpoint between neighbours (exact in f32) goes to the even code,
       and anything strictly between goes to the nearer one */
    for (int c = 0; c < 0x7e; c++) {
        float a = e4m3_to_f32((uint8_t)c), b = e4m3_to_f32((uint8_t)(c + 1)), mid = (a + b) / 2;
        uint8_t even = (uint8_t)((c & 1) ? c + 1 : c);
        CHECKF(f32_to_e4m3(mid) == even, "e4m3 midpoint %g -> 0x%02x", mid, f32_to_e4m3(mid));
        CHECKF(f32_to_e4m3(-mid) == (even | 0x80), "e4m3 midpoint %g", -mid);
        CHECK(f32_to_e4m3(nextafterf(mid, 0)) == c && f32_to_e4m3(nextafterf(mid, 1000)) == c + 1);
    }
    for (int c = 0; c < 7; c++) {
        float a = e2m1_to_f32((uint8_t)c), b = e2m1_to_f32((uint8_t)(c + 1)), mid = (a + b) / 2;
        CHECKF(f32_to_e2m1(mid) == ((c & 1) ? c + 1 : c), "e2m1 midpoint %g", mid);
        CHECK(f32_to_e2m1(nextafterf(mid, 0)) == c && f32_to_e2m1(nextafterf(mid, 10)) == c + 1);
    }
    CHECK(e4m3_to_f32(0x7e) == 448.0f && e4m3_to_f32(0x01) == 0x1p-9f && e4m3_to_f32(0x08) == 0x1p-6f);
    CHECK(signbit(e4m3_to_f32(0x80)) && e4m3_to_f32(0x80) == 0.0f);
    CHECK(f32_to_e4m3(1000.0f) == 0x7e && f32_to_e4m3(-INFINITY) == 0xfe && f32_to_e4m3(470.0f) == 0x7e);
    CHECK(f32_to_e4m3(0x1p-10f) == 0x00 && f32_to_e4m3(0x1.8p-10f) == 0x01); /* ties to even in the subnormals */
    for (int c = 0; c < 16; c++) CHECK(f32_to_e2m1(e2m1_to_f32((uint8_t)c)) == c);
    CHECK(f32_to_e2m1(5.0f) == 6 && f32_to_e2m1(2.5f) == 4 && f32_to_e2m1(-0.1f) == 8 && f32_to_e2m1(100.0f) == 7);
    CHECK(e8m0_to_f32(127) == 1.0f && e8m0_to_f32(0) == 0x1p-127f && e8m0_to_f32(254) == 0x1p127f && isnan(e8m0_to_f32(255)));
    CHECK(f32_to_e8m0_ceil(1.0f) == 127 && f32_to_e8m0_ceil(1.0001f) == 128 && f32_to_e8m0_ceil(0.75f) == 127);
    CHECK(f32_to_e8m0_ceil(0.0f) == 0 && f32_to_e8m0_ceil(1e38f) == 254 && f32_to_e8m0_ceil(1e-45f) == 0);
}

TEST(quant_pack_roundtrip) {
    static const int bits_list[] = {2, 3, 4, 5, 6, 8};
    uint8_t codes[256], back[256], packed[256];
    srand(7);
    for (int b = 0; b < 6; b++) {
        int bits = bits_list[b];
        for (int i = 0; i < 256; i++) codes[i] = (uint8_t)(rand() & ((1 << bits) - 1));
        quant_pack_row(codes, bits, 256, packed);
        quant_unpack_row(packed, bits, 256, back);
        CHECKF(memcmp(codes, back, 256) == 0, "%d-bit round trip", bits);
    }
    /* SPEC §6.1's 6-bit example and 4-bit nibble order */
    uint8_t p6[3] = {0xc5, 0x3a, 0x9e}, c6[4];
    quant_unpack_row(p6, 6, 4, c6);
    CHECK(c6[0] == (0xc5 & 63) && c6[1] == ((0xc5 >> 6) | ((0x3a & 15) << 2)) && c6[2] == ((0x3a >> 4) | ((0x9e & 3) << 4)) &&
          c6[3] == (0x9e >> 2));
    uint8_t p4[1] = {0x21}, c4[2];
    quant_unpack_row(p4, 4, 2, c4);
    CHECK(c4[0] == 1 && c4[1] == 2);
}

TEST(quant_validate_rejects) {
    uint8_t data[64 * 4] = {0}, scales[16] = {0}, biases[16] = {0};
    weight w = {.format = WF_AFFINE, .rows = 2, .cols = 64, .data = data, .row_stride = 32, .bits = 4, .group_size = 32,
                .scale_dtype = DT_BF16, .scales = scales, .biases = biases, .scale_stride = 4, .global_scale = 1.0f};
    char err[200];
    CHECK(quant_validate(&w, err, sizeof err) == 0);
    weight v = w; v.bits = 7;
    CHECK(quant_validate(&v, err, sizeof err) != 0 && strstr(err, "bits"));
    v = w; v.group_size = 16;
    CHECK(quant_validate(&v, err, sizeof err) != 0);
    v = w; v.cols = 48;
    CHECK(quant_validate(&v, err, sizeof err) != 0);
    v = w; v.row_stride = 31;
    CHECK(quant_validate(&v, err, sizeof err) != 0 && strstr(err, "stride"));
    v = w; v.biases = NULL;
    CHECK(quant_validate(&v, err, sizeof err) != 0);
    v = w; v.global_scale = INFINITY;
    CHECK(quant_validate(&v, err, sizeof err) != 0);
    scales[6] = 0x80; scales[7] = 0x7f; /* bf16 +inf... 0x7f80 at row 1 group 1 */
    CHECK(quant_validate(&w, err, sizeof err) != 0 && strstr(err, "row 1"));
    scales[6] = scales[7] = 0;
    v = w; v.format = WF_MXFP4; v.bits = 0; v.group_size = 0; v.scale_dtype = DT_U8; v.scale_stride = 2; v.biases = NULL;
    CHECK(quant_validate(&v, err, sizeof err) == 0);
    v.scale_dtype = DT_BF16;
    CHECK(quant_validate(&v, err, sizeof err) != 0);
    float nanv[64];
    for (int i = 0; i < 64; i++) nanv[i] = i == 5 ? NAN : 1.0f;
    CHECK(quant_quantize_row(WF_AFFINE, 4, 32, DT_BF16, nanv, 64, data, scales, biases) != 0);
    CHECK(quant_quantize_row(WF_AFFINE, 7, 32, DT_BF16, nanv + 6, 32, data, scales, biases) != 0);
    CHECK(quant_quantize_row(WF_MXFP4, 4, 32, DT_BF16, nanv + 6, 32, data, scales, biases) != 0);
}

/* ---- fast paths vs the reference ------------------------------------------------------ */

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rndf(void) { return ((float)(rnd() & 0xffffff) / 16777216.0f) * 2.0f - 1.0f; }

typedef struct {
    weight w;
    uint8_t *data, *scales, *biases;
} rand_weight;

/* Random packed codes (no NaN element codes), random finite scales/biases,
 * rows padded (strides larger than needed) to catch stride bugs. */
static rand_weight make_weight(wformat f, int bits, int gs, dtype dt, int64_t rows, int64_t cols, float global) {
    rand_weight rw = {0};
    weight *w = &rw.w;
    w->format = f; w->rows = rows; w->cols = cols; w->bits = bits; w->group_size = gs; w->scale_dtype = dt;
    w->global_scale = global;
    w->row_stride = quant_row_bytes(f, bits, cols) + 8;
    rw.data = malloc((size_t)rows * w->row_stride);
    for (size_t i = 0; i < (size_t)rows * w->row_stride; i++) {
        uint8_t b = (uint8_t)rnd();
        if (f == WF_MXFP8 && (b & 0x7f) == 0x7f) b ^= 1;
        if (f == WF_F16 && (i & 1) && (b & 0x7c) == 0x7c) b &= 0x3f;    /* no inf/NaN halves */
        if (f == WF_BF16 && (i & 1)) b = (uint8_t)(0x38 + (b & 0x0f)) | (b & 0x80); /* moderate exponents */
        rw.data[i] = b;
    }
    if (f == WF_F32)
        for (int64_t i = 0; i < rows * (int64_t)w->row_stride / 4; i++) ((float *)(void *)rw.data)[i] = rndf();
    int g = quant_format_group(f, gs);
    if (g) {
        size_t ss = dt == DT_F32 ? 4 : dt == DT_U8 ? 1 : 2;
        w->scale_stride = (size_t)(cols / g) * ss + 4;
        rw.scales = malloc((size_t)rows * w->scale_stride);
        rw.biases = malloc((size_t)rows * w->scale_stride);
        for (size_t i = 0; i < (size_t)rows * w->scale_stride; i += ss) {
            for (int k = 0; k < 2; k++) {
                uint8_t *p = (k ? rw.biases : rw.scales) + i;
                float v = rndf() * (k ? 0.5f : 0.05f);
                if (dt == DT_F32) memcpy(p, &v, 4);
                else if (dt == DT_F16) { uint16_t h = f32_to_f16(v); memcpy(p, &h, 2); }
                else if (dt == DT_BF16) { uint16_t h = f32_to_bf16(v); memcpy(p, &h, 2); }
                else if (f == WF_NVFP4) { p[0] = (uint8_t)(rnd() % 0x7f) | (uint8_t)(rnd() & 0x80); }
                else p[0] = (uint8_t)(117 + rnd() % 21);   /* 2^-10 .. 2^10 */
            }
        }
        w->scales = rw.scales;
        w->biases = f == WF_AFFINE ? rw.biases : NULL;
    }
    w->data = rw.data;
    return rw;
}

static void free_weight(rand_weight *rw) { free(rw->data); free(rw->scales); free(rw->biases); }

/* Rigorous bound for f32 sums in any order with (fused or not) products:
 * |fast - exact| <= gamma_{n+4} * sum|x_i| * mag_i, where mag_i bounds the
 * magnitude of every intermediate per element (affine: |s q| + |b|, because
 * the fast affine path computes s*sum(x q) + b*sum(x)). The reference is
 * exact to ~2^-24 relative (double accumulation). */
static double dot_tolerance(const weight *w, int64_t r, const float *x) {
    float *row = malloc((size_t)w->cols * sizeof(float));
    weight_row_f32(w, r, row);
    double m = 0;
    float g = w->global_scale == 0 ? 1 : w->global_scale;
    if (w->format == WF_AFFINE) {
        /* recover |s q| + |b| per element from s, b and the decoded value */
        uint8_t *codes = malloc((size_t)w->cols);
        quant_unpack_row(w->data + (size_t)r * w->row_stride, w->bits, w->cols, codes);
        size_t ss = w->scale_dtype == DT_F32 ? 4 : 2;
        for (int64_t i = 0; i < w->cols; i++) {
            const uint8_t *sp = w->scales + (size_t)r * w->scale_stride + (size_t)(i / w->group_size) * ss;
            const uint8_t *bp = w->biases + (size_t)r * w->scale_stride + (size_t)(i / w->group_size) * ss;
            float s, b;
            if (w->scale_dtype == DT_F32) { memcpy(&s, sp, 4); memcpy(&b, bp, 4); }
            else if (w->scale_dtype == DT_F16) { s = f16_to_f32((uint16_t)(sp[0] | sp[1] << 8)); b = f16_to_f32((uint16_t)(bp[0] | bp[1] << 8)); }
            else { s = bf16_to_f32((uint16_t)(sp[0] | sp[1] << 8)); b = bf16_to_f32((uint16_t)(bp[0] | bp[1] << 8)); }
            m += fabs(x[i]) * (fabs((double)s * codes[i]) + fabs(b)) * fabs(g);
        }
        free(codes);
    } else {
        for (int64_t i = 0; i < w->cols; i++) m += fabs(x[i]) * fabs(row[i]);
    }
    free(row);
    double n = (double)w->cols + 4, u = 0x1p-24;
    return n * u / (1 - n * u) * m + 1e-30;
}

static int check_weight(const char *what, rand_weight *rw, int n_x) {
    weight *w = &rw->w;
    int64_t rows = w->rows, cols = w->cols;
    size_t xs = (size_t)cols + 3, ys = (size_t)rows + 2;
    float *x = malloc(xs * (size_t)n_x * sizeof(float)), *y = malloc(ys * (size_t)n_x * sizeof(float));
    for (size_t i = 0; i < xs * (size_t)n_x; i++) x[i] = rndf();
    for (size_t i = 0; i < ys * (size_t)n_x; i++) y[i] = -777.0f;
    int fails = 0;
    int64_t r0 = 1, r1 = rows - 1;   /* a sub-range: rows outside it must stay untouched */
    for (int pass = 0; pass < 2; pass++) {
        quant_set_fast(pass == 0);
        quant_matmul_rows(w, r0, r1, x, n_x, xs, y, ys);
        for (int64_t r = 0; r < rows; r++) {
            double tol = dot_tolerance(w, r, x);
            float ref = quant_dot_ref(w, r, x), fast = quant_dot(w, r, x);
            if (!(fabs((double)fast - ref) <= tol) && fails++ < 3)
                test_fail(__FILE__, __LINE__, "%s %s row %lld: dot %.9g vs ref %.9g (tol %.3g)", what, pass ? "portable" : "fast",
                          (long long)r, fast, ref, tol);
            for (int t = 0; t < n_x; t++) {
                float yv = y[(size_t)t * ys + r];
                if (r < r0 || r >= r1) {
                    if (yv != -777.0f && fails++ < 3) test_fail(__FILE__, __LINE__, "%s: row %lld outside range written", what, (long long)r);
                    continue;
                }
                float single = quant_dot(w, r, x + (size_t)t * xs);
                if (memcmp(&single, &yv, 4) != 0 && fails++ < 3)
                    test_fail(__FILE__, __LINE__, "%s %s: batched row %lld x%d %.9g != single-vector %.9g", what,
                              pass ? "portable" : "fast", (long long)r, t, yv, single);
                double tt = dot_tolerance(w, r, x + (size_t)t * xs);
                float rt = quant_dot_ref(w, r, x + (size_t)t * xs);
                if (!(fabs((double)yv - rt) <= tt) && fails++ < 3)
                    test_fail(__FILE__, __LINE__, "%s %s matmul row %lld x%d: %.9g vs ref %.9g (tol %.3g)", what,
                              pass ? "portable" : "fast", (long long)r, t, yv, rt, tt);
            }
        }
    }
    quant_set_fast(1);
    free(x);
    free(y);
    return fails;
}

TEST(quant_dot_fast_matches_ref) {
    static const int bits_list[] = {2, 3, 4, 5, 6, 8};
    static const int groups[] = {32, 64, 128};
    static const dtype dts[] = {DT_BF16, DT_F16, DT_F32};
    char what[96];
    for (int b = 0; b < 6; b++)
        for (int g = 0; g < 3; g++)
            for (int d = 0; d < 3; d++) {
                if (bits_list[b] != 4 && bits_list[b] != 8 && d != 0) continue;
                int64_t cols = (int64_t)groups[g] * (g == 2 ? 5 : 9);   /* 288..1152 cols, several spans */
                rand_weight rw = make_weight(WF_AFFINE, bits_list[b], groups[g], dts[d], 7, cols, d == 1 ? 0.75f : 0.0f);
                snprintf(what, sizeof what, "affine%d g%d dt%d", bits_list[b], groups[g], (int)dts[d]);
                check_weight(what, &rw, 3);
                free_weight(&rw);
            }
    /* mxfp8 also at 35 groups: the AVX-512 row takes groups in pairs, 16 scales at a time */
    struct { wformat f; float gl; const char *name; int64_t cols; } fp[] = {
        {WF_NVFP4, 0.0f, "nvfp4", 1088}, {WF_NVFP4, 0.02f, "nvfp4+global", 1088}, {WF_MXFP4, 1.0f, "mxfp4", 1088},
        {WF_MXFP8, 0.0f, "mxfp8", 1088}, {WF_MXFP8, 0.0f, "mxfp8 odd groups", 1120},
        {WF_BF16, 0.0f, "bf16", 777}, {WF_F16, 0.0f, "f16", 777}, {WF_F32, 0.0f, "f32", 777}};
    for (size_t i = 0; i < sizeof fp / sizeof fp[0]; i++) {
        rand_weight rw = make_weight(fp[i].f, 0, 0, fp[i].f <= WF_BF16 ? DT_F32 : DT_U8, 9, fp[i].cols, fp[i].gl);
        check_weight(fp[i].name, &rw, 4);
        free_weight(&rw);
    }
    if (!quant_using_avx2()) printf("    (no AVX2/FMA on this CPU: only the portable path ran)\n");
}

/* weight_row_f32 (the vector decode where the CPU has one: AVX-512 or AVX2;
 * prefill widens quantized rows with it) equals the portable decode bit for
 * bit, NaN for NaN, for every format the vector decode takes: 37 groups, so
 * two whole chunks of 16 groups' scales and a partial one; NaN element codes
 * and NaN scales in some rows. */
TEST(quant_decode_rows_match_portable) {
    struct { wformat f; int bits, gs; dtype dt; } cases[] = {
        {WF_AFFINE, 4, 32, DT_BF16}, {WF_AFFINE, 4, 64, DT_F16}, {WF_AFFINE, 4, 128, DT_F32}, {WF_AFFINE, 8, 32, DT_F32},
        {WF_AFFINE, 8, 64, DT_BF16}, {WF_AFFINE, 8, 128, DT_F16}, {WF_NVFP4, 0, 0, DT_U8}, {WF_MXFP4, 0, 0, DT_U8},
        {WF_MXFP8, 0, 0, DT_U8}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t cols = 37 * (int64_t)quant_format_group(cases[i].f, cases[i].gs);
        rand_weight rw = make_weight(cases[i].f, cases[i].bits, cases[i].gs, cases[i].dt, 5, cols, 0.0f);
        if (cases[i].f == WF_MXFP8) { rw.data[1 * rw.w.row_stride + 40] = 0x7f; rw.data[2 * rw.w.row_stride + 1000] = 0xff; }
        if (cases[i].f == WF_NVFP4) rw.scales[3 * rw.w.scale_stride + 20] = 0xff;
        if (cases[i].f == WF_MXFP4) rw.scales[3 * rw.w.scale_stride + 36] = 0xff;
        float *fast = malloc((size_t)cols * sizeof *fast), *ref = malloc((size_t)cols * sizeof *ref);
        for (int r = 0; r < 5; r++) {
            weight_row_f32(&rw.w, r, fast);
            quant_decode_span(&rw.w, r, 0, cols, ref);
            int bad = 0;
            for (int64_t c = 0; c < cols && bad < 3; c++)
                if (!same_f32(fast[c], ref[c])) {
                    bad++;
                    test_fail(__FILE__, __LINE__, "format %d bits %d group %d dtype %d row %d col %lld: %.9g, portable %.9g",
                              (int)cases[i].f, cases[i].bits, cases[i].gs, (int)cases[i].dt, r, (long long)c, fast[c], ref[c]);
                }
        }
        free(fast);
        free(ref);
        free_weight(&rw);
    }
}

/* The AVX2 mxfp8 row takes x times 2^120 when every |x| < 2^8, so the
 * codes need no rescaling, and x as it is otherwise: exact either way. The
 * last group's codes are zeros, so an x that differs only there, once below
 * 2^8 and once above, must give the same bits, and both the reference's
 * value; at the AVX-512 rows this holds as well. */
TEST(quant_mxfp8_rows_exact_for_any_x) {
    enum { ROWS = 3, COLS = 1088 };
    rand_weight rw = make_weight(WF_MXFP8, 0, 0, DT_U8, ROWS, COLS, 0.0f);
    for (int r = 0; r < ROWS; r++) memset(rw.data + (size_t)r * rw.w.row_stride + COLS - 32, 0, 32);
    float small[COLS], large[COLS], ys[ROWS], yl[ROWS];
    for (int i = 0; i < COLS; i++) small[i] = large[i] = 200.0f * rndf();
    small[COLS - 1] = 0.5f;
    large[COLS - 1] = 1000.0f;
    quant_matmul_rows(&rw.w, 0, ROWS, small, 1, COLS, ys, 1);
    quant_matmul_rows(&rw.w, 0, ROWS, large, 1, COLS, yl, 1);
    for (int r = 0; r < ROWS; r++) {
        CHECKF(same_f32(ys[r], yl[r]), "row %d: %.9g with every |x| < 2^8, %.9g with one above", r, ys[r], yl[r]);
        CHECKF(same_f32(quant_dot(&rw.w, r, small), ys[r]) && same_f32(quant_dot(&rw.w, r, large), yl[r]), "row %d", r);
        double ref = quant_dot_ref(&rw.w, r, small);
        CHECKF(fabs(ys[r] - ref) <= dot_tolerance(&rw.w, r, small), "row %d: %.9g vs ref %.9g", r, ys[r], ref);
    }
    free_weight(&rw);
}

TEST(quant_dot_nan_codes_propagate) {
    /* mxfp8 element codes 0x7F and 0xFF are NaN in every path: in a pair of
       groups (row 0) and in an odd last group (row 2) of 3 groups */
    rand_weight rw = make_weight(WF_MXFP8, 0, 0, DT_U8, 3, 96, 0.0f);
    rw.data[5] = 0x7f;
    rw.data[2 * rw.w.row_stride + 70] = 0xff;
    float x[96], y[3];
    for (int i = 0; i < 96; i++) x[i] = 1.0f;
    for (int pass = 0; pass < 2; pass++) {
        quant_set_fast(pass == 0);
        CHECK(isnan(quant_dot(&rw.w, 0, x)) && !isnan(quant_dot(&rw.w, 1, x)) && isnan(quant_dot(&rw.w, 2, x)));
        quant_matmul_rows(&rw.w, 0, 3, x, 1, 96, y, 3);
        CHECK(isnan(y[0]) && !isnan(y[1]) && isnan(y[2]));
    }
    quant_set_fast(1);
    CHECK(isnan(quant_dot_ref(&rw.w, 0, x)));
    free_weight(&rw);
}

TEST(quant_nan_scale_propagates) {
    /* E8M0 scale code 0xFF is NaN. Rows 1 and 2 of 4 hold one such scale, in
       group 20 and in the last of 36 groups (which the decoders reach in a
       scalar or masked tail); both are NaN through the f32-activation rows,
       the int8-activation rows and the portable path, and rows 0 and 3 stay
       finite (on the AVX2 rows too: quant_tests_again_on_the_avx2_rows). */
    enum { COLS = 36 * 32 };   /* a multiple of 64, as int8 activations need */
    rand_weight rw = make_weight(WF_MXFP4, 0, 0, DT_U8, 4, COLS, 1.0f);
    const int bad_group[2] = {20, 35};
    for (int k = 0; k < 2; k++) {
        size_t r = (size_t)k + 1;
        rw.scales[r * rw.w.scale_stride + (size_t)bad_group[k]] = 0xff;
        /* codes 1.0 and x > 0 there: a scale decoded as +inf would give +inf, not NaN */
        memset(rw.data + r * rw.w.row_stride + (size_t)bad_group[k] * 16, 0x22, 16);
    }
    float x[COLS], y[4];
    for (int i = 0; i < COLS; i++) x[i] = fabsf(rndf()) + 0.1f;
    void *scratch = malloc(quant_act_bytes(COLS));
    for (int pass = 0; pass < 2; pass++) {
        quant_set_fast(pass == 0);
        quant_matmul_rows(&rw.w, 0, 4, x, 1, COLS, y, 4);
        CHECKF(!isnan(y[0]) && isnan(y[1]) && isnan(y[2]) && !isnan(y[3]), "pass %d f32 rows: %g %g %g %g", pass, y[0],
               y[1], y[2], y[3]);
        if (!quant_act_supported(&rw.w)) continue;   /* int8 activations need the fast path */
        quant_act a;
        quant_act_prepare(&rw.w, x, scratch, &a);
        quant_matmul_rows_q8(&rw.w, 0, 4, &a, 1, y, 4);
        CHECKF(!isnan(y[0]) && isnan(y[1]) && isnan(y[2]) && !isnan(y[3]), "pass %d int8 rows: %g %g %g %g", pass, y[0],
               y[1], y[2], y[3]);
    }
    quant_set_fast(1);
    CHECK(isnan(quant_dot_ref(&rw.w, 1, x)) && isnan(quant_dot_ref(&rw.w, 2, x)));
    free(scratch);
    free_weight(&rw);
}

TEST(quant_weight_bytes) {
    weight w = {.format = WF_AFFINE, .rows = 10, .cols = 256, .bits = 3, .group_size = 64, .scale_dtype = DT_BF16};
    CHECK_EQ_INT(weight_bytes(&w), 10 * (96 + 2 * 8));
    w.format = WF_NVFP4; w.scale_dtype = DT_U8;
    CHECK_EQ_INT(weight_bytes(&w), 10 * (128 + 16));
    w.format = WF_BF16;
    CHECK_EQ_INT(weight_bytes(&w), 10 * 512);
}

TEST(quant_tests_again_on_the_avx2_rows) {
    /* Where the AVX-512 kernels are chosen, the AVX2 rows (what AVX2-only
       CPUs run) would go untested: run the quant_ tests again in a child with
       GLMLITE_KERNELS=avx2. There, and on AVX2-only CPUs, this process's own
       tests already ran on the AVX2 rows. */
    if (!kernels_using_avx512()) return;
    char self[512], cmd[1400];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0);
    self[n] = 0;
    snprintf(cmd, sizeof cmd, "GLMLITE_KERNELS=avx2 '%s' quant_ > %s/quant_avx2.log 2>&1", self, test_tmpdir());
    if (test_run(cmd) == 0) return;
    test_fail(__FILE__, __LINE__, "quant tests failed with GLMLITE_KERNELS=avx2:");
    snprintf(cmd, sizeof cmd, "grep -e FAIL -e ': ' %s/quant_avx2.log | grep -v worst", test_tmpdir());
    test_run(cmd);
}
