"""The unit language model: a small decoder-only transformer over discrete speech units.

nanoGPT-style: a config dataclass, pre-LN blocks, causal attention, tied input/output embeddings. It is
prosody-aware in the manner of pGSLM: each unit token also carries a duration-bucket and a pitch-bucket
embedding, and the model predicts the next unit, its duration bucket and its pitch bucket. Backbone v2 adds voice
streams the same way (``n_voice`` streams of ``voice_buckets`` codes each, app/encoder/units.py): embedded with the
unit and predicted for the next unit.

Architecture options (all default to the above) let the same decoder hold an imported fairseq ``transformer_lm``
such as GSLM's unit LM (recipes/build/import_gslm.py): sinusoidal positions with an offset, post-LN blocks, an
embedding scale, ReLU, another MLP width, no final layer norm, and a separate output projection.

Prompt entry points (SpeechPrompt v2): :meth:`UnitLM.run` takes ready-made input embeddings (so trainable input
prompt vectors and a separator can stand before and after the units) and optional per-layer key/value prefixes
(the deep prompt), with a per-row mask so rows of one batch may carry prompts of different lengths.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

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
    # Architecture options; the defaults are our own LM, and to_dict() writes only values that differ from them.
    pos: str = "learned"  # learned | sinusoidal (fairseq's table, not trained) | none
    pos_offset: int = 0  # sinusoidal: the first position's row (fairseq: padding_idx + 1)
    norm: str = "pre"  # pre | post: layer norm before each sub-layer, or after each residual sum
    final_norm: bool = True  # a layer norm after the last block
    embed_scale: float = 1.0  # input embeddings are multiplied by this (fairseq: sqrt(n_embd))
    activation: str = "gelu"  # gelu | gelu_tanh | relu
    ffn_dim: int = 0  # MLP width (0: 4 * n_embd)
    tied_output: bool = True  # next-unit logits from the input embedding; False: a separate lm_head
    n_voice: int = 0  # voice streams (0: none, as the v1 backbone)
    voice_buckets: int = 8  # codes per voice stream

    def __post_init__(self) -> None:
        for name, allowed in (("pos", POSITIONS), ("norm", ("pre", "post")), ("activation", tuple(ACTIVATIONS))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"UnitLMConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def mlp_dim(self) -> int:
        return self.ffn_dim or 4 * self.n_embd

    @property
    def eos(self) -> int:
        return self.vocab_size - 1

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        """The config as JSON data; architecture options at their defaults are left out, so configs (and the
        fingerprints computed over them) written before those options existed stay exactly the same."""
        d = asdict(self)
        return {k: v for k, v in d.items() if k not in ARCH_DEFAULTS or v != ARCH_DEFAULTS[k]}


POSITIONS = ("learned", "sinusoidal", "none")
ACTIVATIONS = {"gelu": lambda: nn.GELU(), "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": lambda: nn.ReLU()}
ARCH_FIELDS = ("pos", "pos_offset", "norm", "final_norm", "embed_scale", "activation", "ffn_dim", "tied_output",
               "n_voice", "voice_buckets")
ARCH_DEFAULTS = {f.name: f.default for f in fields(UnitLMConfig) if f.name in ARCH_FIELDS}


def sinusoidal_table(n: int, dim: int, offset: int = 0) -> torch.Tensor:
    """fairseq's SinusoidalPositionalEmbedding rows ``offset .. offset + n - 1``: ``[sin | cos]`` (+ a zero column
    when ``dim`` is odd), computed in float32 as fairseq does."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -step)
    angles = torch.arange(offset, offset + n, dtype=torch.float)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return torch.cat([table, torch.zeros(n, 1)], dim=1) if dim % 2 else table


class Attention(nn.Module):
    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def project(self, x: torch.Tensor, query: torch.Tensor | None = None, shared: slice | None = None):
        """Queries, keys and values of ``x (B, T, C)``. ``query (B,)``: queries at that position of each row only.
        ``shared``: positions that hold the same vectors on every row (one clip under many prompts), projected
        once. Both only skip work: the result is the same."""
        B, _, C = x.shape
        W, b = self.qkv.weight, self.qkv.bias
        if shared is not None and B > 1:
            once = F.linear(x[:1, shared], W, b).expand(B, -1, -1)
            qkv = torch.cat([F.linear(x[:, : shared.start], W, b), once, F.linear(x[:, shared.stop:], W, b)], 1)
        elif query is not None:  # W's first C rows make queries: apply them to the wanted position only
            q = F.linear(x[torch.arange(B), query][:, None], W[:C], None if b is None else b[:C])
            k, v = F.linear(x, W[C:], None if b is None else b[C:]).split(C, dim=2)
            return q, k, v
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.split(C, dim=2)
        return (q[torch.arange(B), query][:, None] if query is not None else q), k, v

    def forward(
        self, x: torch.Tensor, prefix: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor,
        query: torch.Tensor | None = None, shared: slice | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``query (B,)``: compute the output at that one position per row only (keys/values still cover all);
        ``shared``: see :meth:`project`."""
        B, T, C = x.shape
        q, k, v = self.project(x, query, shared)
        T = q.shape[1]
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
    """A transformer block; ``ln1`` belongs to the attention sub-layer and ``ln2`` to the MLP, applied before it
    (pre-LN) or after its residual sum (post-LN, as fairseq with ``decoder_normalize_before=False``)."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, cfg.mlp_dim), ACTIVATIONS[cfg.activation](), nn.Linear(cfg.mlp_dim, cfg.n_embd)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, prefix, mask, query=None, shared=None):
        a, kv = self.attn(self.ln1(x) if self.pre_norm else x, prefix, mask, query, shared)
        if query is not None:
            x = x[torch.arange(x.shape[0]), query][:, None]
        x = x + self.drop(a)
        if self.pre_norm:
            return x + self.drop(self.mlp(self.ln2(x))), kv
        x = self.ln1(x)
        return self.ln2(x + self.drop(self.mlp(x))), kv


class UnitLM(nn.Module):
    """Decoder-only transformer over units (+ duration and pitch streams)."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        if cfg.pos == "sinusoidal":  # not a weight: left out of the state dict (and so of the fingerprint)
            self.register_buffer("pos_table", sinusoidal_table(cfg.block_size, cfg.n_embd, cfg.pos_offset),
                                 persistent=False)
        self.wde = nn.Embedding(cfg.n_duration, cfg.n_embd) if cfg.n_duration else None
        self.wfe = nn.Embedding(cfg.n_pitch, cfg.n_embd) if cfg.n_pitch else None
        n_voice_codes = cfg.n_voice * cfg.voice_buckets
        self.wve = nn.Embedding(n_voice_codes, cfg.n_embd) if cfg.n_voice else None  # stream s: rows s*buckets...
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd) if cfg.final_norm else nn.Identity()
        self.duration_head = nn.Linear(cfg.n_embd, cfg.n_duration) if cfg.n_duration else None
        self.pitch_head = nn.Linear(cfg.n_embd, cfg.n_pitch) if cfg.n_pitch else None
        self.voice_head = nn.Linear(cfg.n_embd, n_voice_codes) if cfg.n_voice else None
        self.lm_head = None if cfg.tied_output else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
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

    def embed(self, ids: torch.Tensor, dur: torch.Tensor | None = None, pitch: torch.Tensor | None = None,
              voice: torch.Tensor | None = None):
        """Token embeddings (+ prosody and voice streams) for unit ids ``(B, T)``; ``voice (B, T, n_voice)``.
        Positions (and the embedding scale) are applied in :meth:`run`, to prompt vectors and units alike."""
        x = self.wte(ids)
        if self.wde is not None and dur is not None:
            x = x + self.wde(dur.clamp(0, self.config.n_duration - 1))
        if self.wfe is not None and pitch is not None:
            x = x + self.wfe(pitch.clamp(0, self.config.n_pitch - 1))
        if self.wve is not None and voice is not None:
            nb = self.config.voice_buckets
            offsets = torch.arange(self.config.n_voice, device=voice.device) * nb
            x = x + self.wve(voice.clamp(0, nb - 1) + offsets).sum(-2)
        return x

    def run(
        self,
        x: torch.Tensor,
        prefix: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
        return_kv: bool = False,
        read_at: torch.Tensor | None = None,
        shared: slice | None = None,
    ):
        """Run the blocks over input embeddings ``x (B, T, C)``.

        ``prefix``: deep prompt keys/values ``(B, n_layer, 2, n_head, P, head_dim)``; every position may attend
        to the prefix where ``prefix_mask (B, P)`` is True, and causally to the sequence. Returns the final
        hidden states ``(B, T, C)`` (and each layer's own keys/values if ``return_kv``).
        ``read_at (B,)``: only that position's final state is wanted (returned as ``(B, C)``); the last layer then
        computes its queries, attention output and MLP for that position alone (same result, less work).
        ``shared``: a span of positions whose inputs are identical on every row (one clip under many task
        prompts); the first layer projects them once (same result, less work).
        """
        B, T, _ = x.shape
        if T > self.config.block_size:
            raise ValueError(f"Sequence of {T} positions exceeds the LM's block size {self.config.block_size}.")
        if self.config.embed_scale != 1.0:
            x = x * self.config.embed_scale
        x = self.drop(x + self.positions(T, x.device) if self.config.pos != "none" else x)
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
            x, kv = block(x, layer_prefix, mask, query, shared if i == 0 else None)
            kvs.append(kv)
        x = self.ln_f(x)
        if read_at is not None:
            x = x[:, 0]
        return (x, kvs) if return_kv else x

    def positions(self, T: int, device: torch.device | None = None) -> torch.Tensor:
        """Position embeddings of the first ``T`` positions ``(T, C)``."""
        if self.wpe is not None:
            return self.wpe(torch.arange(T, device=device))
        return self.pos_table[:T]

    def unit_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-unit logits from hidden states (output embedding tied to the input one, unless ``lm_head``)."""
        if self.lm_head is not None:
            return self.lm_head(h)
        return h @ self.wte.weight.T

    def next_token_logits(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output stream from hidden states: next unit, and for a prosody LM its duration and pitch bucket;
        with voice streams ``"voice"``: each stream's log-distribution over its codes, side by side
        ``(..., n_voice * voice_buckets)`` (a softmax over all of them gives each stream's distribution / n_voice)."""
        out = {"units": self.unit_logits(h)}
        if self.duration_head is not None:
            out["duration"] = self.duration_head(h)
        if self.pitch_head is not None:
            out["pitch"] = self.pitch_head(h)
        if self.voice_head is not None:
            v = self.voice_head(h).unflatten(-1, (self.config.n_voice, self.config.voice_buckets))
            out["voice"] = torch.log_softmax(v, dim=-1).flatten(-2)
        return out

    def forward(self, ids: torch.Tensor, dur: torch.Tensor | None = None, pitch: torch.Tensor | None = None,
                voice: torch.Tensor | None = None):
        """Plain language modelling: logits for the next unit, duration bucket, pitch bucket (and voice codes)."""
        return self.next_token_logits(self.run(self.embed(ids, dur, pitch, voice)))
