"""A run as TransformerLens's `HookedTransformer` (`Sweep.to_transformer_lens`), for the
configurations it can express, built from a HookedTransformerConfig and the run's weights:
nothing is downloaded.

HookedTransformer's blocks are pre-norm (or have no norm), its positions learned or rotary;
its gated MLP has no bias on the gate. A configuration outside that is refused, naming the
option. Where grokstack has no positions, W_pos is zero; where it has no biases, the biases
are zero; dropout, which acts in training only, is left out. HookedTransformer returns logits
at every position, [N, T, C]; grokstack reads the last, `[:, -1]`.

Shapes: H heads, e head width, d model width, F FFN width, V vocabulary, C classes, T tokens.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional

import torch
from torch import nn
from transformer_lens import HookedTransformer, HookedTransformerConfig

from ._torch import BIT_TASKS, NORM_EPS, Transformer, build

__all__ = ["build", "convert", "unsupported"]


def unsupported(config: Dict) -> Optional[str]:
    """Why HookedTransformer cannot express this run's model, or None."""
    if config["model.kind"] != "transformer":
        return f"model.kind = {config['model.kind']}: HookedTransformer is a transformer, and this run is not one"
    if config["model.norm_position"] == "post" and config["model.norm"] != "none":
        return (
            f"post-norm (model.norm_position = post, model.norm = {config['model.norm']}) has no HookedTransformer "
            "equivalent: its blocks normalize a sublayer's input, never the residual stream after it"
        )
    if config["model.ffn"] == "swiglu" and config["model.bias"]:
        return (
            "SwiGLU with biases (model.ffn = swiglu, model.bias = true) has no HookedTransformer equivalent: its "
            "gated MLP adds b_in after the gate's product, and the gate itself has no bias"
        )
    return None


def _config(model: Transformer, dtype: torch.dtype) -> HookedTransformerConfig:
    c = model.config
    vocab, d = model.embedding.weight.shape
    heads = c["model.heads"]
    norm = {"rms": "RMS", "layer": "LN", "none": None}[c["model.norm"]]
    rotary = c["model.positional"] == "rope"
    return HookedTransformerConfig(
        n_layers=c["model.layers"],
        d_model=d,
        n_heads=heads,
        d_head=d // heads,
        d_mlp=model.layers[0].ffn.w1.out_features,
        d_vocab=vocab,
        d_vocab_out=model.unembed.out_features,
        n_ctx=_seq_len(c),
        act_fn="silu" if c["model.ffn"] == "swiglu" else c["model.ffn"],  # TransformerLens' "gelu" is the erf form
        gated_mlp=c["model.ffn"] == "swiglu",
        normalization_type=norm,
        eps=NORM_EPS,
        positional_embedding_type="rotary" if rotary else "standard",
        rotary_dim=d // heads if rotary else None,
        rotary_base=c["model.rope_base"],
        rotary_adjacent_pairs=True,  # grokstack turns pairs (2i, 2i+1), as GPT-J
        attention_dir="causal" if c["model.causal"] else "bidirectional",
        original_architecture="grokstack",
        dtype=dtype,
    )


def _seq_len(config: Dict) -> int:
    """Tokens per row T (src/models/transformer/config.rs, token_shape)."""
    eq = config["model.tokens"] != "a_b"
    if config["task.op"] in BIT_TASKS:
        bits = config["task.bits"] if config["task.op"] == "parity" else config["task.parity_bits"] + config["task.noise_bits"]
        return bits + int(eq)
    return {"a_op_b_eq": 4, "a_b_eq": 3, "a_b": 2}[config["model.tokens"]]


def _heads_in(linear: nn.Linear, heads: int) -> torch.Tensor:
    """A q, k or v projection's weight [d, d] ([out, in]) as TransformerLens's W_Q [H, d, e]."""
    d_out, d_in = linear.weight.shape
    return linear.weight.T.reshape(d_in, heads, d_out // heads).permute(1, 0, 2)


def _bias(linear: nn.Linear, shape: List[int]) -> torch.Tensor:
    """A Linear's bias reshaped, or zeros where grokstack has none (model.bias = false)."""
    if linear.bias is None:
        return torch.zeros(shape, dtype=linear.weight.dtype)
    return linear.bias.reshape(shape)


def _state_dict(model: Transformer, heads: int) -> Dict[str, torch.Tensor]:
    """The run's weights under HookedTransformer's names and layouts."""
    d = model.embedding.embedding_dim
    e = d // heads
    out = {"embed.W_E": model.embedding.weight}  # [V, d]
    if model.config["model.positional"] != "rope":
        position = model.position.weight if model.position is not None else None
        out["pos_embed.W_pos"] = position if position is not None else torch.zeros(_seq_len(model.config), d)  # [T, d]
    for i, block in enumerate(model.layers):
        at = f"blocks.{i}"
        for norm, name in ((block.norm1, "ln1"), (block.norm2, "ln2")):
            _norm_weights(norm, f"{at}.{name}", out)
        attn = block.attn
        for proj, name in ((attn.q, "Q"), (attn.k, "K"), (attn.v, "V")):
            out[f"{at}.attn.W_{name}"] = _heads_in(proj, heads)  # [H, d, e]
            out[f"{at}.attn.b_{name}"] = _bias(proj, [heads, e])  # [H, e]
        out[f"{at}.attn.W_O"] = attn.o.weight.T.reshape(heads, e, d)  # [H, e, d]
        out[f"{at}.attn.b_O"] = _bias(attn.o, [d])
        ffn = block.ffn
        width = ffn.w1.out_features
        if ffn.w3 is not None:
            # silu(x·W_gate) ⊙ (x·W_in): grokstack's w1 is the gate, w3 the linear branch.
            out[f"{at}.mlp.W_gate"] = ffn.w1.weight.T  # [d, F]
            out[f"{at}.mlp.W_in"] = ffn.w3.weight.T  # [d, F]
            out[f"{at}.mlp.b_in"] = torch.zeros(width, dtype=ffn.w1.weight.dtype)
        else:
            out[f"{at}.mlp.W_in"] = ffn.w1.weight.T  # [d, F]
            out[f"{at}.mlp.b_in"] = _bias(ffn.w1, [width])
        out[f"{at}.mlp.W_out"] = ffn.w2.weight.T  # [F, d]
        out[f"{at}.mlp.b_out"] = _bias(ffn.w2, [d])
    _norm_weights(model.norm, "ln_final", out)
    out["unembed.W_U"] = model.unembed.weight.T  # [d, C]
    out["unembed.b_U"] = _bias(model.unembed, [model.unembed.out_features])
    return out


def _norm_weights(norm: nn.Module, name: str, out: Dict[str, torch.Tensor]) -> None:
    if getattr(norm, "weight", None) is not None:
        out[f"{name}.w"] = norm.weight
    if getattr(norm, "bias", None) is not None:
        out[f"{name}.b"] = norm.bias


def convert(model: nn.Module) -> HookedTransformer:
    """The HookedTransformer of a `Sweep.to_torch` transformer, in eval mode; raises
    NotImplementedError with the reason for a configuration it cannot express."""
    reason = unsupported(model.config)
    if reason is not None:
        raise NotImplementedError(f"run {model.run_id} has no HookedTransformer: {reason}")
    dtype = model.embedding.weight.dtype
    with warnings.catch_warnings():
        # 3.x warns that 4.0 drops HookedTransformer for TransformerBridge, which boots Hugging
        # Face models only: the extra pins transformer-lens below 4.
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        hooked = HookedTransformer(_config(model, dtype))
    ours = _state_dict(model, model.config["model.heads"])
    theirs = hooked.state_dict()
    for name, value in ours.items():
        if name not in theirs or theirs[name].shape != value.shape:
            raise RuntimeError(f"{name}: HookedTransformer's is {theirs.get(name, torch.empty(0)).shape}, grokstack's {value.shape}")
    # Buffers (masks, rotary tables) stay HookedTransformer's own.
    hooked.load_state_dict({**theirs, **{name: value.detach() for name, value in ours.items()}}, strict=True)
    return hooked.eval()
