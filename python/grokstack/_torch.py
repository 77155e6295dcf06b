"""A run as a PyTorch `nn.Module` (`Sweep.to_torch`): grokstack's MLP (src/models/mlp) and
transformer (src/models/transformer) written with torch's own modules, under the names and in
the layout `grokstack export` writes, so that the export loads with `load_state_dict`.

Shapes: N rows, K symbols per row, T tokens per row, V vocabulary, C classes, d model width,
H heads, e = d / H head width, F FFN width.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["build", "MLP", "Transformer"]

#: The norms' ε (src/models/transformer/mod.rs NORM_EPS).
NORM_EPS = 1e-5
#: The tasks whose rows are bit strings rather than operand pairs.
BIT_TASKS = ("parity", "sparse_parity")


def build(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> nn.Module:
    """The module of an exported run (`read_safetensors`' tensors and metadata), its weights
    loaded, in eval mode. Its dtype is the weights': float32, float64, or float32 for a bf16
    run (whose bf16 weights are exactly float32 values)."""
    config = json.loads(metadata["config"])
    weights = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in tensors.items()}
    shapes = {name: tuple(value.shape) for name, value in weights.items()}
    model = MLP(config, shapes) if config["model.kind"] == "mlp" else Transformer(config, shapes)
    dtype = next(iter(weights.values())).dtype
    model.to(dtype).load_state_dict(weights, strict=True)
    model.run_id = int(metadata["run_id"])
    model.seed = int(metadata["seed"])
    return model.eval()


def _activation(name: str):
    return {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "silu": F.silu}[name]  # gelu: the erf form


class MLP(nn.Module):
    """grokstack's MLP: no biases, logits scaled by `model.alpha`.

        x = concat(embedding(a), embedding(b))   (two_hot: concat(onehot(a), onehot(b)); bits: the bits)
        x = act(layers.i(x))  for every Linear layer but the last
        logits = alpha · layers.K(x)

    Input: a row's symbols [N, K], operands (a, b) or a bit string's bits, as `Sweep.split`
    gives them."""

    def __init__(self, config: Mapping[str, Any], shapes: Mapping[str, tuple]):
        super().__init__()
        self.config = dict(config)
        self.alpha = config["model.alpha"]
        self.act = _activation(config["model.activation"])
        self.bits = config["task.op"] in BIT_TASKS
        self.embedding = nn.Embedding(*shapes["embedding.weight"]) if "embedding.weight" in shapes else None
        n_layers = sum(1 for name in shapes if name.startswith("layers."))
        sizes = [shapes[f"layers.{i}.weight"] for i in range(n_layers)]  # [out, in] each
        self.layers = nn.ModuleList(nn.Linear(fan_in, fan_out, bias=False) for fan_out, fan_in in sizes)

    def inputs(self, symbols: torch.Tensor) -> torch.Tensor:
        """The first layer's input [N, in] of symbols [N, K]."""
        dtype = self.layers[0].weight.dtype
        if self.embedding is not None:
            return self.embedding(symbols).flatten(1)  # [N, 2, e] → [N, 2e]
        if self.bits:
            return symbols.to(dtype)  # [N, n]
        p = self.layers[0].in_features // 2
        return torch.cat([F.one_hot(symbols[:, 0], p), F.one_hot(symbols[:, 1], p)], dim=1).to(dtype)  # [N, 2p]

    def forward(self, symbols: torch.Tensor) -> torch.Tensor:
        """Logits [N, C] of symbols [N, K]."""
        x = self.inputs(symbols)
        for layer in self.layers[:-1]:
            x = self.act(layer(x))  # [N, H_i]
        return self.alpha * self.layers[-1](x)  # [N, C]


def _norm(kind: str, d: int) -> nn.Module:
    """model.norm: RMSNorm (gain only), LayerNorm (gain and bias), or none."""
    if kind == "rms":
        return nn.RMSNorm(d, eps=NORM_EPS)
    if kind == "layer":
        return nn.LayerNorm(d, eps=NORM_EPS)
    return nn.Identity()


def rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary positions: each head's adjacent pairs (2i, 2i+1) of x [N, H, T, e] turn by t·θ_i at
    position t, θ_i = base^(−2i/e). The angles in float64, as grokstack computes its table."""
    t, e = x.shape[-2:]
    theta = base ** (-torch.arange(0, e, 2, dtype=torch.float64) / e)  # [e/2]
    angles = torch.arange(t, dtype=torch.float64)[:, None] * theta  # [T, e/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # [N, H, T, e/2] each
    turned = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # [N, H, T, e/2, 2]
    return turned.flatten(-2)


class Attention(nn.Module):
    """Multi-head self-attention: q, k, v and o projections, scores scaled by 1/√e, rotary
    positions on q and k, the causal mask with `model.causal`."""

    def __init__(self, config: Mapping[str, Any], d: int):
        super().__init__()
        bias = config["model.bias"]
        self.heads = config["model.heads"]
        self.causal = config["model.causal"]
        self.rope_base = config["model.rope_base"] if config["model.positional"] == "rope" else None
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=bias) for _ in range(4))
        self.dropout_weights = nn.Dropout(config["model.dropout_attention"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        h, e = self.heads, d // self.heads
        q, k, v = (proj(x).view(n, t, h, e).transpose(1, 2) for proj in (self.q, self.k, self.v))  # [N, H, T, e]
        if self.rope_base is not None:
            q, k = rope(q, self.rope_base), rope(k, self.rope_base)
        scores = q @ k.transpose(-2, -1) / math.sqrt(e)  # [N, H, T, T]
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        heads = self.dropout_weights(scores.softmax(-1)) @ v  # [N, H, T, e]
        return self.o(heads.transpose(1, 2).reshape(n, t, d))  # [N, T, d]


class FFN(nn.Module):
    """w2(act(w1·x)), or SwiGLU's w2(silu(w1·x) ⊙ w3·x)."""

    def __init__(self, config: Mapping[str, Any], d: int, width: int):
        super().__init__()
        bias = config["model.bias"]
        self.kind = config["model.ffn"]
        self.w1 = nn.Linear(d, width, bias=bias)
        self.w3 = nn.Linear(d, width, bias=bias) if self.kind == "swiglu" else None
        self.w2 = nn.Linear(width, d, bias=bias)
        self.act = _activation("silu" if self.kind == "swiglu" else self.kind)
        self.dropout_hidden = nn.Dropout(config["model.dropout_ffn_hidden"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.w1(x))  # [N, T, F]
        if self.w3 is not None:
            hidden = hidden * self.w3(x)
        return self.w2(self.dropout_hidden(hidden))  # [N, T, d]


class Block(nn.Module):
    """pre-norm:  x ← x + attn(norm1(x));  x ← x + ffn(norm2(x))
    post-norm: x ← norm1(x + attn(x));  x ← norm2(x + ffn(x))   (nn.TransformerEncoderLayer)"""

    def __init__(self, config: Mapping[str, Any], d: int, width: int):
        super().__init__()
        self.pre = config["model.norm_position"] == "pre"
        self.norm1 = _norm(config["model.norm"], d)
        self.attn = Attention(config, d)
        self.norm2 = _norm(config["model.norm"], d)
        self.ffn = FFN(config, d, width)
        self.dropout_attn = nn.Dropout(config["model.dropout_attention_output"])
        self.dropout_ffn = nn.Dropout(config["model.dropout_ffn_output"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre:
            x = x + self.dropout_attn(self.attn(self.norm1(x)))
            return x + self.dropout_ffn(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout_attn(self.attn(x)))
        return self.norm2(x + self.dropout_ffn(self.ffn(x)))


class Transformer(nn.Module):
    """grokstack's transformer, every option of its config (src/models/transformer/config.rs):

        x = embedding(tokens) (+ position)       [N, T, d]
        x = block(x)  for every block
        logits = unembed(norm(x[:, -1]))         [N, C]  (the final norm with pre-norm only)

    Dropout sits where grokstack applies it in training (attention weights, attention output,
    FFN hidden units, FFN output); the module comes in eval mode, where it is off. Input: tokens
    [N, T]; `tokens(symbols)` makes them from a row's symbols."""

    def __init__(self, config: Mapping[str, Any], shapes: Mapping[str, tuple]):
        super().__init__()
        self.config = dict(config)
        vocab, d = shapes["embedding.weight"]
        classes = shapes["unembed.weight"][0]
        width = shapes["layers.0.ffn.w1.weight"][0]
        self.embedding = nn.Embedding(vocab, d)
        self.position = nn.Embedding(*shapes["position.weight"]) if "position.weight" in shapes else None
        self.layers = nn.ModuleList(Block(config, d, width) for _ in range(config["model.layers"]))
        pre = config["model.norm_position"] == "pre"
        self.norm = _norm(config["model.norm"], d) if pre else nn.Identity()
        self.unembed = nn.Linear(d, classes, bias=config["model.bias"])

    def tokens(self, symbols: torch.Tensor) -> torch.Tensor:
        """A row's tokens [N, T] from its symbols [N, K] (src/models/transformer/mod.rs, Tokens):
        operands as `model.tokens` lays them out, [a, op, b, =] with op = p and = = p + 1,
        [a, b, =] with = = p, or [a, b]; a bit string's bits, then = = 2 unless the layout is
        [a, b]."""
        layout = self.config["model.tokens"]

        def column(token: int) -> torch.Tensor:
            return torch.full((symbols.shape[0], 1), token, dtype=symbols.dtype, device=symbols.device)

        if self.config["task.op"] in BIT_TASKS:
            return symbols if layout == "a_b" else torch.cat([symbols, column(2)], dim=1)
        p = self.config["task.p"]  # 120 for S5's tasks: the sweep sets it
        a, b = symbols[:, :1], symbols[:, 1:2]
        if layout == "a_op_b_eq":
            return torch.cat([a, column(p), b, column(p + 1)], dim=1)
        if layout == "a_b_eq":
            return torch.cat([a, b, column(p)], dim=1)
        return torch.cat([a, b], dim=1)

    def residual(self, tokens: torch.Tensor) -> torch.Tensor:
        """The residual stream after the last block, every position: [N, T, d]."""
        x = self.embedding(tokens)  # [N, T, d]
        if self.position is not None:
            x = x + self.position.weight[: tokens.shape[1]]
        for block in self.layers:
            x = block(x)
        return x

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [N, C] of tokens [N, T], read out at the last position as grokstack does."""
        return self.unembed(self.norm(self.residual(tokens)[:, -1]))  # [N, C]

