"""PyTorch GLM4-MoE-Lite (Glm4MoeLiteForCausalLM) written from SPEC.md, for training the demo model.

Owns: the architecture (SPEC sections 4-5): MLA attention with a query LoRA (q_a_proj ->
q_a_layernorm -> q_b_proj), a shared KV latent with kv_a_layernorm and a shared rotary key,
interleaved (adjacent-pair) RoPE on the rope dims only, softmax scale 1/sqrt(nope + rope);
a dense SwiGLU MLP in the first `first_k_dense_replace` layers and sigmoid-routed MoE elsewhere
(e_score_correction_bias only for choosing experts, norm_topk_prob, routed_scaling_factor, an
always-added unscaled shared expert); RMSNorm without offset (eps rms_norm_eps, 1e-6 for the two
latent norms as HF builds them); untied lm_head. Module names equal the HF checkpoint names, so
state_dict() keys are the tensor names of the real checkpoint (experts one by one).

Also: config_dict() (config.json for these sizes), the aux-loss-free bias update (DeepSeek-V3:
bias += gamma * sign(mean load - load) after each step), load/save in the HF layout.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import safetensors_np as stn  # noqa: E402


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_tables(d_rope, theta, n_pos, device=None):
    inv = 1.0 / (theta ** (torch.arange(0, d_rope, 2, dtype=torch.float64) / d_rope))
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()  # [n_pos, d_rope/2]


def apply_rope(x, cos, sin):
    """Adjacent pairs (x[2i], x[2i+1]) rotated by theta_i(p), written in place order (SPEC 5.4)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack((y0, y1), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, H = c["hidden_size"], c["num_attention_heads"]
        self.H, self.dn, self.dr, self.dv = H, c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        self.rkv = c["kv_lora_rank"]
        self.q_a_proj = nn.Linear(D, c["q_lora_rank"], bias=False)
        self.q_a_layernorm = RMSNorm(c["q_lora_rank"], 1e-6)
        self.q_b_proj = nn.Linear(c["q_lora_rank"], H * (self.dn + self.dr), bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(D, self.rkv + self.dr, bias=False)
        self.kv_a_layernorm = RMSNorm(self.rkv, 1e-6)
        self.kv_b_proj = nn.Linear(self.rkv, H * (self.dn + self.dv), bias=False)
        self.o_proj = nn.Linear(H * self.dv, D, bias=False)
        self.scale = 1.0 / math.sqrt(self.dn + self.dr)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        H, dn, dr, dv = self.H, self.dn, self.dr, self.dv
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))).view(B, T, H, dn + dr)
        q_nope, q_pe = q[..., :dn], q[..., dn:]
        z = self.kv_a_proj_with_mqa(x)
        c_kv = self.kv_a_layernorm(z[..., :self.rkv])
        k_pe = z[..., self.rkv:]  # [B, T, dr], shared by all heads
        q_pe = apply_rope(q_pe, cos[:, None, :], sin[:, None, :])
        k_pe = apply_rope(k_pe, cos, sin)
        u = self.kv_b_proj(c_kv).view(B, T, H, dn + dv)
        k_nope, v = u[..., :dn], u[..., dn:]
        # scores = scale * (q_nope.k_nope + q_pe.k_pe); the rope key is one vector shared by all heads
        s = (q_nope * self.scale).transpose(1, 2) @ k_nope.permute(0, 2, 3, 1)            # [B, H, T, T]
        s = s + ((q_pe * self.scale).transpose(1, 2) @ k_pe[:, None].transpose(-1, -2)) + mask
        p = torch.softmax(s, -1)
        o = (p @ v.transpose(1, 2)).transpose(1, 2).reshape(B, T, H * dv)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, D, width):
        super().__init__()
        self.gate_proj = nn.Linear(D, width, bias=False)
        self.up_proj = nn.Linear(D, width, bias=False)
        self.down_proj = nn.Linear(width, D, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Router(nn.Module):
    def __init__(self, D, E):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(E, D))
        nn.init.normal_(self.weight, std=0.02)
        # selection-only bias, trained by the load-balancing rule, not by gradients
        self.register_buffer("e_score_correction_bias", torch.zeros(E, dtype=torch.float32))


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, E = c["hidden_size"], c["n_routed_experts"]
        self.k, self.E = c["num_experts_per_tok"], E
        self.norm_topk = c["norm_topk_prob"]
        self.rsf = c["routed_scaling_factor"]
        self.gate = Router(D, E)
        self.experts = nn.ModuleList(MLP(D, c["moe_intermediate_size"]) for _ in range(E))
        self.shared_experts = MLP(D, c["moe_intermediate_size"] * c["n_shared_experts"])
        self.last_load = None

    def forward(self, x):
        shp = x.shape
        xt = x.reshape(-1, shp[-1])
        s = torch.sigmoid(F.linear(xt.float(), self.gate.weight.float()))            # [N, E]
        idx = torch.topk(s.detach() + self.gate.e_score_correction_bias, self.k, dim=-1).indices
        w = s.gather(1, idx)
        if self.norm_topk:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        w = w * self.rsf
        y = self.shared_experts(xt)
        routed = torch.zeros_like(xt)
        for e in range(self.E):
            hit = (idx == e)
            rows = hit.any(-1).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            we = (w * hit).sum(-1)[rows]
            routed = routed.index_add(0, rows, self.experts[e](xt[rows]) * we[:, None])
        self.last_idx = idx.detach()
        return (y + routed).view(shp)


class Layer(nn.Module):
    def __init__(self, c, i):
        super().__init__()
        eps = c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(c["hidden_size"], eps)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], eps)
        self.self_attn = Attention(c)
        self.mlp = MLP(c["hidden_size"], c["intermediate_size"]) if i < c["first_k_dense_replace"] else MoE(c)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c, i) for i in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Glm4MoeLite(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02 if "embed" in n or "lm_head" in n else 1.0 / math.sqrt(p.shape[1]))
        for n, p in self.named_parameters():  # residual-branch outputs start small
            if n.endswith("o_proj.weight") or n.endswith("down_proj.weight"):
                p.data.mul_(0.5 / math.sqrt(2 * c["num_hidden_layers"]))
        self._rope = None

    def rope(self, T):
        if self._rope is None or self._rope[0].shape[0] < T:
            self._rope = rope_tables(self.c["qk_rope_head_dim"], self.c["rope_theta"], max(T, 1024))
        return self._rope[0][:T], self._rope[1][:T]

    def forward(self, ids):
        B, T = ids.shape
        cos, sin = self.rope(T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin, mask)
        return self.lm_head(self.model.norm(h))

    def moe_layers(self):
        return [layer.mlp for layer in self.model.layers if isinstance(layer.mlp, MoE)]

    @torch.no_grad()
    def update_router_bias(self, gamma):
        """Aux-loss-free balancing: raise the bias of under-loaded experts, lower over-loaded ones."""
        for m in self.moe_layers():
            load = torch.bincount(m.last_idx.flatten(), minlength=m.E).float()
            m.gate.e_score_correction_bias += gamma * torch.sign(load.mean() - load)


def config_dict(vocab_size, eos, pad, **over):
    c = {
        "architectures": ["Glm4MoeLiteForCausalLM"], "model_type": "glm4_moe_lite",
        "attention_bias": False, "attention_dropout": 0.0, "pad_token_id": pad, "eos_token_id": eos,
        "hidden_act": "silu", "hidden_size": 256, "intermediate_size": 768, "initializer_range": 0.02,
        "max_position_embeddings": 4096, "moe_intermediate_size": 256, "n_group": 1, "n_routed_experts": 8,
        "n_shared_experts": 1, "norm_topk_prob": True, "num_attention_heads": 8, "num_experts_per_tok": 2,
        "num_hidden_layers": 4, "num_key_value_heads": 8, "num_nextn_predict_layers": 0,
        "partial_rotary_factor": 1.0, "q_lora_rank": 96, "kv_lora_rank": 64, "qk_nope_head_dim": 32,
        "qk_rope_head_dim": 16, "v_head_dim": 32, "first_k_dense_replace": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": None, "rope_theta": 10000, "routed_scaling_factor": 1.8, "tie_word_embeddings": False,
        "topk_group": 1, "topk_method": "noaux_tc", "transformers_version": "5.0.0rc0", "use_cache": True,
        "vocab_size": vocab_size, "dtype": "bfloat16",
    }
    c.update(over)
    return dict(sorted(c.items()))


def hf_tensors(model):
    """name -> float32 numpy array, in the HF checkpoint naming (router bias included)."""
    return {n: t.detach().float().cpu().numpy() for n, t in model.state_dict().items()}


def save_hf(model, out_dir, dtype="bf16"):
    """model.safetensors (bf16 except the f32 router bias, as the real checkpoint) + config.json."""
    os.makedirs(out_dir, exist_ok=True)
    ts = hf_tensors(model)
    st = "BF16" if dtype == "bf16" else "F32"
    dtypes = {n: ("F32" if n.endswith("e_score_correction_bias") else st) for n in ts}
    stn.write_tensors(os.path.join(out_dir, "model.safetensors"), ts, dtypes=dtypes, metadata={"format": "pt"})
    c = dict(model.c)
    c["dtype"] = "bfloat16" if dtype == "bf16" else "float32"
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")


def load_hf(model_dir):
    """A Glm4MoeLite with the exact (decoded) weights of a checkpoint directory, in float32."""
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    m = Glm4MoeLite(c)
    sd = {n: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
          for n, a in stn.load(model_dir).items()}
    m.load_state_dict(sd, strict=True)
    return m.eval()


def round_bf16_(model):
    """Round every parameter to bf16 in place (the router bias stays f32, as it is stored)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
