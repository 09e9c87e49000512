#!/usr/bin/python3
"""Independent float64 reference forward pass for GLM4-MoE-Lite and its DeepSeek-V2/V3 relatives.

Owns: the ground-truth logits the C engine is compared against. Written from the Hugging Face
semantics in SPEC section 5 (5.1-5.6.1) with numpy only, sharing no code with the engine:
non-absorbed MLA (K/V expanded per head from the latent through kv_b_proj), every position at once
under a causal mask, float64 everywhere, eps 1e-6 on q_a_layernorm/kv_a_layernorm as HF does.

Usage: reference.py --model DIR --tokens 1,2,3 --out FILE [--dequantize]
       writes raw little-endian float64 logits [n_tokens][vocab_size].

Weights come through one function, load_weight(name) -> float64 array, so a dequantizing loader
can replace the safetensors one (Reference(model_dir, load_weight=...)).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as stn  # noqa: E402

LATENT_NORM_EPS = 1e-6  # HF builds q_a_layernorm / kv_a_layernorm without passing eps
MODEL_TYPES = ("glm4_moe_lite", "deepseek_v2", "deepseek_v3")
TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")


class ConfigError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# configuration

class Config:
    """config.json with the defaults of SPEC 5.6.1 resolved and every value checked."""

    def __init__(self, raw):
        if not isinstance(raw, dict):
            raise ConfigError("config.json is not a JSON object")
        self.raw = raw
        mt = raw.get("model_type")
        if mt not in MODEL_TYPES:
            raise ConfigError(f"model_type {mt!r} is not one of {', '.join(MODEL_TYPES)}")
        self.model_type = mt
        v2 = mt == "deepseek_v2"

        def num(key, kind=int, default=None, minimum=None):
            if key not in raw or raw[key] is None:
                if default is None:
                    raise ConfigError(f"config key {key!r} is missing")
                return default
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and v != int(v)):
                raise ConfigError(f"config key {key!r} must be {'an integer' if kind is int else 'a number'}, "
                                  f"got {v!r}")
            v = kind(v)
            if minimum is not None and v < minimum:
                raise ConfigError(f"config key {key!r} = {v} is below {minimum}")
            return v

        def flag(key, default):
            v = raw.get(key, default)
            if v is None:
                v = default
            if not isinstance(v, bool):
                raise ConfigError(f"config key {key!r} must be true or false, got {v!r}")
            return v

        self.hidden = num("hidden_size", minimum=1)
        self.n_layers = num("num_hidden_layers", minimum=1)
        self.n_heads = num("num_attention_heads", minimum=1)
        self.kv_lora = num("kv_lora_rank", minimum=1)
        self.d_nope = num("qk_nope_head_dim", minimum=0)
        self.d_rope = num("qk_rope_head_dim", minimum=2)
        self.d_v = num("v_head_dim", minimum=1)
        self.vocab = num("vocab_size", minimum=1)
        self.eps = num("rms_norm_eps", float, minimum=0.0)
        self.rope_theta = num("rope_theta", float, default=10000.0, minimum=1e-9)
        if self.d_rope % 2:
            raise ConfigError(f"qk_rope_head_dim {self.d_rope} must be even")
        q = raw.get("q_lora_rank")
        self.q_lora = None if q is None else num("q_lora_rank", minimum=1)
        self.tie = flag("tie_word_embeddings", False)
        self.rope_interleave = flag("rope_interleave", True)
        if raw.get("hidden_act", "silu") != "silu":
            raise ConfigError(f"hidden_act {raw.get('hidden_act')!r} unsupported (only silu)")
        if flag("attention_bias", False):
            raise ConfigError("attention_bias true is unsupported (GLM/DeepSeek MLA has no biases)")
        prf = raw.get("partial_rotary_factor", 1.0)
        if prf not in (None, 1, 1.0):
            raise ConfigError(f"partial_rotary_factor {prf!r} unsupported (rotary covers qk_rope_head_dim)")

        # which layers are MoE
        types = raw.get("mlp_layer_types")
        if types is not None:
            if (not isinstance(types, list) or len(types) != self.n_layers
                    or any(t not in ("dense", "sparse") for t in types)):
                raise ConfigError("mlp_layer_types must list 'dense'/'sparse' for each of the "
                                  f"{self.n_layers} layers")
            self.moe_layers = [t == "sparse" for t in types]
        else:
            fk = num("first_k_dense_replace", default=0, minimum=0)
            freq = num("moe_layer_freq", default=1, minimum=1)
            has_experts = raw.get("n_routed_experts") not in (None, 0)
            self.moe_layers = [has_experts and i >= fk and i % freq == 0 for i in range(self.n_layers)]
        if not all(self.moe_layers):
            self.inter = num("intermediate_size", minimum=1)

        # routing (SPEC 5.6 / 5.6.1)
        if mt == "glm4_moe_lite":
            self.scoring = "sigmoid"  # HF's glm4_moe_lite router is sigmoid whatever the config says
        else:
            self.scoring = raw.get("scoring_func") or ("softmax" if v2 else "sigmoid")
        if self.scoring not in ("sigmoid", "softmax"):
            raise ConfigError(f"scoring_func {self.scoring!r} unsupported (sigmoid or softmax)")
        self.topk_method = raw.get("topk_method") or ("greedy" if v2 else "noaux_tc")
        if self.topk_method not in TOPK_METHODS:
            raise ConfigError(f"topk_method {self.topk_method!r} is not one of {', '.join(TOPK_METHODS)}")
        self.norm_topk = flag("norm_topk_prob", not v2)
        self.scaling = num("routed_scaling_factor", float, default=1.0)
        if any(self.moe_layers):
            self.n_experts = num("n_routed_experts", minimum=1)
            self.top_k = num("num_experts_per_tok", minimum=1)
            self.moe_inter = num("moe_intermediate_size", minimum=1)
            self.n_shared = num("n_shared_experts", default=0 if v2 else 1, minimum=0)
            self.n_group = num("n_group", default=1, minimum=1)
            self.topk_group = num("topk_group", default=1, minimum=1)
            if self.top_k > self.n_experts:
                raise ConfigError(f"num_experts_per_tok {self.top_k} > n_routed_experts {self.n_experts}")
            if self.n_experts % self.n_group:
                raise ConfigError(f"n_routed_experts {self.n_experts} not divisible by n_group {self.n_group}")
            if self.topk_group > self.n_group:
                raise ConfigError(f"topk_group {self.topk_group} > n_group {self.n_group}")
            if self.grouped():
                per = self.n_experts // self.n_group
                if self.topk_method == "noaux_tc" and per < 2:
                    raise ConfigError("noaux_tc group scores need >= 2 experts per group")
                if self.top_k > self.topk_group * per:
                    raise ConfigError(f"num_experts_per_tok {self.top_k} exceeds the experts in "
                                      f"{self.topk_group} kept groups")

        # attention scale and RoPE (SPEC 5.4, 5.5)
        self.scale = (self.d_nope + self.d_rope) ** -0.5
        self.yarn = None
        rs = raw.get("rope_scaling")
        if rs is not None:
            if not isinstance(rs, dict):
                raise ConfigError("rope_scaling must be null or an object")
            kind = rs.get("rope_type", rs.get("type"))
            if kind in ("default", None):
                pass
            elif kind == "yarn":
                y = {}
                for k, d in (("factor", None), ("original_max_position_embeddings", None),
                             ("beta_fast", 32.0), ("beta_slow", 1.0), ("mscale", 1.0), ("mscale_all_dim", 0.0)):
                    v = rs.get(k, d)
                    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
                        raise ConfigError(f"rope_scaling.{k} must be a number, got {v!r}")
                    y[k] = float(v)
                if y["factor"] <= 0 or y["original_max_position_embeddings"] <= 0:
                    raise ConfigError("rope_scaling.factor and original_max_position_embeddings must be > 0")
                self.yarn = y
                self.scale *= yarn_mscale(y["factor"], y["mscale_all_dim"]) ** 2
            else:
                raise ConfigError(f"rope_scaling type {kind!r} unsupported (only yarn)")

    def grouped(self):
        return self.n_group > 1 and self.topk_method in ("noaux_tc", "group_limited_greedy")


def load_config(model_dir):
    p = os.path.join(model_dir, "config.json")
    try:
        with open(p) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: {e}")
    return Config(raw)


# ---------------------------------------------------------------------------------------------
# math pieces (module level so tests can call them on crafted inputs)

def rmsnorm(x, w, eps):
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def yarn_mscale(s, mu):
    return 1.0 if s <= 1 else 0.1 * mu * math.log(s) + 1.0


def rope_inv_freq(d, theta, yarn=None):
    """inv_freq[i] for i < d/2, with DeepSeek/HF YaRN blending when yarn is given."""
    i = np.arange(0, d, 2, dtype=np.float64)
    pos_freqs = theta ** (i / d)
    inv = 1.0 / pos_freqs
    if yarn is None:
        return inv
    factor, orig = yarn["factor"], yarn["original_max_position_embeddings"]

    def corr_dim(rot):
        return d * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(theta))
    low = max(math.floor(corr_dim(yarn["beta_fast"])), 0)
    high = min(math.ceil(corr_dim(yarn["beta_slow"])), d - 1)
    if low == high:
        high += 0.001  # HF's guard against a zero-width ramp
    ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    extrap = 1.0 - ramp  # 1 = keep the original (extrapolated) frequency
    return inv / factor * (1.0 - extrap) + inv * extrap


def rope_tables(cfg, positions):
    """cos, sin of shape [T, d_rope/2], already multiplied by the YaRN attention factor."""
    inv = rope_inv_freq(cfg.d_rope, cfg.rope_theta, cfg.yarn)
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]
    m = 1.0
    if cfg.yarn is not None:
        m = yarn_mscale(cfg.yarn["factor"], cfg.yarn["mscale"]) / yarn_mscale(cfg.yarn["factor"],
                                                                              cfg.yarn["mscale_all_dim"])
    return np.cos(ang) * m, np.sin(ang) * m


def apply_rope(x, cos, sin, interleave):
    """x [T, ..., d]; cos/sin [T, d/2]. interleave: pairs (2i, 2i+1), else rotate-half (i, i+d/2)."""
    extra = x.ndim - 2
    c = cos.reshape(cos.shape[:1] + (1,) * extra + cos.shape[1:])
    s = sin.reshape(c.shape)
    y = np.empty_like(x)
    if interleave:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y[..., 0::2] = x0 * c - x1 * s
        y[..., 1::2] = x0 * s + x1 * c
    else:
        h = x.shape[-1] // 2
        x0, x1 = x[..., :h], x[..., h:]
        y[..., :h] = x0 * c - x1 * s
        y[..., h:] = x1 * c + x0 * s
    return y


def route(logits, bias, cfg):
    """Router of SPEC 5.6/5.6.1 on logits [T, E] -> (idx [T, k], weights [T, k]).

    bias (noaux_tc's e_score_correction_bias) only changes which experts are chosen; the weights
    are always the unbiased scores of the chosen experts.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if cfg.scoring == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-logits))
    else:
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        s = e / e.sum(axis=-1, keepdims=True)
    T, E = s.shape
    if cfg.topk_method == "noaux_tc":
        if bias is None:
            raise ConfigError("topk_method noaux_tc needs mlp.gate.e_score_correction_bias")
        choice = s + bias[None, :]
    else:
        choice = s.copy()
    if cfg.grouped():
        G = cfg.n_group
        g = choice.reshape(T, G, E // G)
        if cfg.topk_method == "noaux_tc":
            gs = np.sort(g, axis=-1)[..., -2:].sum(axis=-1)  # sum of the two best in each group
        else:
            gs = g.max(axis=-1)
        keep = np.argsort(-gs, axis=-1, kind="stable")[:, :cfg.topk_group]
        mask = np.ones((T, G), dtype=bool)
        np.put_along_axis(mask, keep, False, axis=-1)
        choice = np.where(np.repeat(mask, E // G, axis=-1), -np.inf, choice)
    idx = np.argsort(-choice, axis=-1, kind="stable")[:, :cfg.top_k]
    w = np.take_along_axis(s, idx, axis=-1)
    if cfg.norm_topk:
        w = w / (w.sum(axis=-1, keepdims=True) + 1e-20)
    return idx, w * cfg.scaling


# ---------------------------------------------------------------------------------------------
# the model

class Reference:
    def __init__(self, model_dir, load_weight=None):
        self.cfg = load_config(model_dir)
        self._st = None
        if load_weight is None:
            self._st = stn.SafeTensors(model_dir)
            load_weight = self._load_safetensors
        self.load_weight = load_weight
        self._cache = {}
        self.routing = {}  # layer -> chosen expert ids [T, k] of the last forward()

    def _load_safetensors(self, name):
        if name not in self._st:
            raise ConfigError(f"tensor {name} is missing from the checkpoint")
        return np.asarray(self._st.get(name), dtype=np.float64)

    def w(self, name, shape, cache=True):
        a = self._cache.get(name)
        if a is None:
            a = self.load_weight(name)
            if tuple(a.shape) != tuple(shape):
                raise ConfigError(f"tensor {name} has shape {list(a.shape)}, config implies {list(shape)}")
            if cache:
                self._cache[name] = a
        return a

    def has(self, name):
        if self._st is not None:
            return name in self._st
        try:
            self.load_weight(name)
            return True
        except (KeyError, ConfigError):
            return False

    # -- blocks --------------------------------------------------------------------------------

    def attention(self, i, a, positions):
        """Non-absorbed MLA (SPEC 5.3) for all positions of a [T, D], causal."""
        c = self.cfg
        p = f"model.layers.{i}.self_attn."
        T, D, H = a.shape[0], c.hidden, c.n_heads
        dq = c.d_nope + c.d_rope
        if c.q_lora is None:
            q = a @ self.w(p + "q_proj.weight", (H * dq, D)).T
        else:
            cq = rmsnorm(a @ self.w(p + "q_a_proj.weight", (c.q_lora, D)).T,
                         self.w(p + "q_a_layernorm.weight", (c.q_lora,)), LATENT_NORM_EPS)
            q = cq @ self.w(p + "q_b_proj.weight", (H * dq, c.q_lora)).T
        q = q.reshape(T, H, dq)
        z = a @ self.w(p + "kv_a_proj_with_mqa.weight", (c.kv_lora + c.d_rope, D)).T
        ckv = rmsnorm(z[:, :c.kv_lora], self.w(p + "kv_a_layernorm.weight", (c.kv_lora,)), LATENT_NORM_EPS)
        cos, sin = rope_tables(c, positions)
        q_pe = apply_rope(q[:, :, c.d_nope:], cos, sin, c.rope_interleave)
        k_pe = apply_rope(z[:, None, c.kv_lora:], cos, sin, c.rope_interleave)  # [T, 1, dr], all heads
        kv = (ckv @ self.w(p + "kv_b_proj.weight", (H * (c.d_nope + c.d_v), c.kv_lora)).T)
        kv = kv.reshape(T, H, c.d_nope + c.d_v)
        k = np.concatenate([kv[:, :, :c.d_nope], np.broadcast_to(k_pe, (T, H, c.d_rope))], axis=-1)
        qq = np.concatenate([q[:, :, :c.d_nope], q_pe], axis=-1)
        v = kv[:, :, c.d_nope:]
        s = np.einsum("thd,shd->hts", qq, k) * c.scale
        s = np.where(np.tril(np.ones((T, T), dtype=bool))[None], s, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        prob = s / s.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,shd->thd", prob, v).reshape(T, H * c.d_v)
        return o @ self.w(p + "o_proj.weight", (D, H * c.d_v)).T

    def mlp(self, prefix, x, width, cache=True):
        D = self.cfg.hidden
        g = x @ self.w(prefix + "gate_proj.weight", (width, D), cache).T
        u = x @ self.w(prefix + "up_proj.weight", (width, D), cache).T
        return (silu(g) * u) @ self.w(prefix + "down_proj.weight", (D, width), cache).T

    def moe(self, i, x):
        c = self.cfg
        p = f"model.layers.{i}.mlp."
        logits = x @ self.w(p + "gate.weight", (c.n_experts, c.hidden)).T
        bias = None
        if c.topk_method == "noaux_tc":
            bias = self.w(p + "gate.e_score_correction_bias", (c.n_experts,))
        idx, wts = route(logits, bias, c)
        self.routing[i] = idx
        y = np.zeros_like(x)
        for e in np.unique(idx):
            rows, slot = np.nonzero(idx == e)
            # routed experts are loaded per use and not cached: a real-width model has many
            out = self.mlp(p + f"experts.{e}.", x[rows], c.moe_inter, cache=self._st is None or c.hidden < 1024)
            y[rows] += wts[rows, slot][:, None] * out
        if c.n_shared:
            y += self.mlp(p + "shared_experts.", x, c.moe_inter * c.n_shared)
        return y

    def forward(self, tokens):
        """float64 logits [T, vocab_size] for every position of `tokens`."""
        c = self.cfg
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ValueError("tokens must be a non-empty list of ids")
        if tokens.min() < 0 or tokens.max() >= c.vocab:
            raise ValueError(f"token ids must be in [0, {c.vocab})")
        D = c.hidden
        emb = self.w("model.embed_tokens.weight", (c.vocab, D))
        x = emb[tokens].copy()
        pos = np.arange(tokens.size)
        self.routing = {}
        for i in range(c.n_layers):
            p = f"model.layers.{i}."
            a = rmsnorm(x, self.w(p + "input_layernorm.weight", (D,)), c.eps)
            x = x + self.attention(i, a, pos)
            m = rmsnorm(x, self.w(p + "post_attention_layernorm.weight", (D,)), c.eps)
            x = x + (self.moe(i, m) if c.moe_layers[i] else self.mlp(p + "mlp.", m, c.inter))
        h = rmsnorm(x, self.w("model.norm.weight", (D,)), c.eps)
        head = emb if c.tie else self.w("lm_head.weight", (c.vocab, D))
        return h @ head.T


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 reference logits for a GLM4-MoE-Lite/DeepSeek checkpoint")
    ap.add_argument("--model", required=True, help="model directory (config.json + safetensors)")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", required=True, help="output file: little-endian float64 [n_tokens][vocab_size]")
    ap.add_argument("--dequantize", action="store_true",
                    help="quantized checkpoint (mlx-lm, ModelOpt or compressed-tensors layout): run on the exact "
                         "dequantized weights (tools/make_quantized.py DequantLoader)")
    a = ap.parse_args(argv)
    try:
        toks = [int(t) for t in a.tokens.split(",") if t.strip() != ""]
    except ValueError:
        print(f"reference: --tokens must be comma-separated integers, got {a.tokens!r}", file=sys.stderr)
        return 2
    try:
        loader = None
        if a.dequantize:
            import make_quantized
            loader = make_quantized.DequantLoader(a.model)
        logits = Reference(a.model, load_weight=loader).forward(toks)
    except (ConfigError, ValueError, KeyError, OSError, stn.SafetensorsError) as e:
        print(f"reference: {e}", file=sys.stderr)
        return 1
    logits.astype("<f8").tofile(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
