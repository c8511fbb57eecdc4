"""The unit language model: a small decoder-only transformer over discrete speech units.

nanoGPT-style: a config dataclass, pre-LN blocks, causal attention, tied input/output embeddings. It is
prosody-aware in the manner of pGSLM: each unit token also carries a duration-bucket and a pitch-bucket
embedding, and the model predicts the next unit, its duration bucket and its pitch bucket.

Prompt entry points (SpeechPrompt v2): :meth:`UnitLM.run` takes ready-made input embeddings (so trainable input
prompt vectors and a separator can stand before and after the units) and optional per-layer key/value prefixes
(the deep prompt), with a per-row mask so rows of one batch may carry prompts of different lengths.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class UnitLMConfig:
    vocab_size: int = 101  # units + 1 end-of-utterance token (the last id)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    block_size: int = 512  # positions: prompt + units + separator
    n_duration: int = 8  # duration buckets (0 disables the stream)
    n_pitch: int = 15  # pitch buckets, 0 = unvoiced (0 disables the stream)
    dropout: float = 0.0

    @property
    def eos(self) -> int:
        return self.vocab_size - 1

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, prefix: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor,
        query: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``query (B,)``: compute the output at that one position per row only (keys/values still cover all)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        if query is not None:
            q, T = q[torch.arange(B), query][:, None], 1
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k, v = (t.view(B, -1, self.n_head, self.head_dim).transpose(1, 2) for t in (k, v))
        own_kv = (k, v)
        if prefix is not None:
            k = torch.cat([prefix[0], k], dim=2)
            v = torch.cat([prefix[1], v], dim=2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), own_kv


class Block(nn.Module):
    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, prefix, mask, query=None):
        a, kv = self.attn(self.ln1(x), prefix, mask, query)
        if query is not None:
            x = x[torch.arange(x.shape[0]), query][:, None]
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.ln2(x))), kv


class UnitLM(nn.Module):
    """Decoder-only transformer over units (+ duration and pitch streams)."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.wde = nn.Embedding(cfg.n_duration, cfg.n_embd) if cfg.n_duration else None
        self.wfe = nn.Embedding(cfg.n_pitch, cfg.n_embd) if cfg.n_pitch else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.duration_head = nn.Linear(cfg.n_embd, cfg.n_duration) if cfg.n_duration else None
        self.pitch_head = nn.Linear(cfg.n_embd, cfg.n_pitch) if cfg.n_pitch else None
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def num_params(self) -> int:
        """Parameters, counting the tied output embedding once."""
        return sum(p.numel() for p in self.parameters())

    def embed(self, ids: torch.Tensor, dur: torch.Tensor | None = None, pitch: torch.Tensor | None = None):
        """Token embeddings (+ prosody streams) for unit ids ``(B, T)``; positions are added in :meth:`run`."""
        x = self.wte(ids)
        if self.wde is not None and dur is not None:
            x = x + self.wde(dur.clamp(0, self.config.n_duration - 1))
        if self.wfe is not None and pitch is not None:
            x = x + self.wfe(pitch.clamp(0, self.config.n_pitch - 1))
        return x

    def run(
        self,
        x: torch.Tensor,
        prefix: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
        return_kv: bool = False,
        read_at: torch.Tensor | None = None,
    ):
        """Run the blocks over input embeddings ``x (B, T, C)``.

        ``prefix``: deep prompt keys/values ``(B, n_layer, 2, n_head, P, head_dim)``; every position may attend
        to the prefix where ``prefix_mask (B, P)`` is True, and causally to the sequence. Returns the final
        hidden states ``(B, T, C)`` (and each layer's own keys/values if ``return_kv``).
        ``read_at (B,)``: only that position's final state is wanted (returned as ``(B, C)``); the last layer then
        computes its queries, attention output and MLP for that position alone (same result, less work).
        """
        B, T, _ = x.shape
        if T > self.config.block_size:
            raise ValueError(f"Sequence of {T} positions exceeds the LM's block size {self.config.block_size}.")
        x = self.drop(x + self.wpe(torch.arange(T, device=x.device)))
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        if prefix is not None:
            P = prefix.shape[-2]
            pm = prefix_mask if prefix_mask is not None else torch.ones(B, P, dtype=torch.bool, device=x.device)
            mask = torch.cat([pm[:, None, None, :].expand(B, 1, T, P), causal.expand(B, 1, T, T)], dim=-1)
        else:
            mask = causal
        kvs = []
        for i, block in enumerate(self.blocks):
            layer_prefix = (prefix[:, i, 0], prefix[:, i, 1]) if prefix is not None else None
            query = read_at if read_at is not None and i == len(self.blocks) - 1 else None
            if query is not None:
                mask = mask.expand(B, 1, T, mask.shape[-1])[torch.arange(B), :, query][:, :, None]
            x, kv = block(x, layer_prefix, mask, query)
            kvs.append(kv)
        x = self.ln_f(x)
        if read_at is not None:
            x = x[:, 0]
        return (x, kvs) if return_kv else x

    def unit_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-unit logits from hidden states (output embedding tied to the input one)."""
        return h @ self.wte.weight.T

    def next_token_logits(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output stream from hidden states: next unit, and for a prosody LM its duration and pitch bucket."""
        out = {"units": self.unit_logits(h)}
        if self.duration_head is not None:
            out["duration"] = self.duration_head(h)
        if self.pitch_head is not None:
            out["pitch"] = self.pitch_head(h)
        return out

    def forward(self, ids: torch.Tensor, dur: torch.Tensor | None = None, pitch: torch.Tensor | None = None):
        """Plain language modelling: logits for the next unit, duration bucket and pitch bucket."""
        return self.next_token_logits(self.run(self.embed(ids, dur, pitch)))
