"""Whisper's audio encoder in plain PyTorch (nanoGPT style), used as a dense
speech encoder in front of k-means units -- the role HuBERT plays in GSLM.

Reproduces OpenAI Whisper's encoder (log-mel front end, 2x conv1d + GELU,
sinusoidal positions, pre-LN transformer blocks, ln_post) with two deliberate
differences from ``whisper.transcribe``:

* no padding to 30 s: an N-second clip gives ceil(N * 50) frames (50 Hz), and
  only the first rows of the positional table are used. Attention therefore
  sees only the real frames, so the outputs are not identical to a 30 s padded
  run (see docs/ENCODER_COMPARISON.md for how much they differ);
* clips longer than 30 s are cut into independent 30 s chunks (each with its
  own log-mel normalisation) whose outputs are concatenated along time.

Weights come from ``recipes/build/import_whisper.py`` (safetensors + JSON config).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio.functional as AF

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # 480000 samples -> 3000 mel frames -> 1500 encoder frames
MIN_SAMPLES = 2 * HOP_LENGTH  # shorter inputs are zero-padded to one encoder frame


@dataclass
class WhisperEncoderConfig:
    """Hyper-parameters of the encoder; the defaults are Whisper tiny / tiny.en."""

    n_mels: int = 80
    n_ctx: int = 1500  # encoder frames in 30 s
    d_model: int = 384
    n_head: int = 6
    n_layer: int = 4


def mel_filters(n_mels: int) -> torch.Tensor:
    """Slaney-style mel filterbank [n_mels, n_fft // 2 + 1], as librosa / Whisper."""
    fb = AF.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1, f_min=0.0, f_max=SAMPLE_RATE / 2, n_mels=n_mels,
        sample_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney",
    )  # [n_freqs, n_mels]
    return fb.T.contiguous()


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table [length, channels]: [sin | cos]."""
    assert channels % 2 == 0
    log_inc = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_inc * torch.arange(channels // 2, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1).float()


def log_mel_spectrogram(wav: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Whisper's log-mel features [B, n_mels, T // 160] for 16 kHz audio [B, T].

    Unlike Whisper, the ``max - 8`` floor is taken per utterance (Whisper takes it
    over the whole tensor), so batched and single calls agree.
    """
    window = torch.hann_window(N_FFT, device=wav.device, dtype=wav.dtype)
    stft = torch.stft(wav, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2  # drop the last frame, as Whisper does
    mel = filters.to(power.dtype) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    floor = log_spec.amax(dim=(-2, -1), keepdim=True) - 8.0
    return (torch.maximum(log_spec, floor) + 4.0) / 4.0


class Attention(nn.Module):
    """Bidirectional multi-head self-attention with a fused qkv projection.

    Whisper's key projection has no bias; here the key part of ``c_attn.bias``
    simply holds zeros (as in the CTranslate2 checkpoint).
    """

    def __init__(self, cfg: WhisperEncoderConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: WhisperEncoderConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.c_proj = nn.Linear(4 * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact (erf) GELU, as Whisper


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, cfg: WhisperEncoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class WhisperEncoder(nn.Module):
    """Whisper audio encoder: 16 kHz waveform -> [B, frames, d_model] at 50 Hz."""

    def __init__(self, cfg: WhisperEncoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or WhisperEncoderConfig()
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, kernel_size=3, stride=2, padding=1)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_post = nn.LayerNorm(cfg.d_model)
        # Fixed tables, not learned: kept out of the state dict.
        self.register_buffer("positional_embedding", sinusoids(cfg.n_ctx, cfg.d_model), persistent=False)
        self.register_buffer("mel_filters", mel_filters(cfg.n_mels), persistent=False)

    @staticmethod
    def n_frames(n_samples: int) -> int:
        """Encoder frames that forward() returns for ``n_samples`` of 16 kHz audio."""
        full, rest = divmod(n_samples, CHUNK_SAMPLES)
        last = (max(rest, MIN_SAMPLES) // HOP_LENGTH + 1) // 2 if rest or not full else 0
        return full * (CHUNK_SAMPLES // HOP_LENGTH // 2) + last

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Log-mel features [B, n_mels, T // 160] of a [B, T] waveform."""
        return log_mel_spectrogram(wav, self.mel_filters)

    def encode_mel(self, mel: torch.Tensor, n_layers: int | None = None) -> torch.Tensor:
        """Encode log-mel features [B, n_mels, n] (n <= 2 * n_ctx) -> [B, ceil(n / 2), d]."""
        return self.encode_mel_states(mel, n_layers)[-1]

    def encode_mel_states(self, mel: torch.Tensor, n_layers: int | None = None) -> list[torch.Tensor]:
        """As :meth:`encode_mel`, every stage's output: ``[stem, block 1, ..., block n]`` (ln_post on the last when
        all blocks run)."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B, frames, d]
        assert x.shape[1] <= self.cfg.n_ctx, "input longer than 30 s: use forward()"
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        n = self.cfg.n_layer if n_layers is None else n_layers
        assert 0 <= n <= self.cfg.n_layer, f"n_layers must be in [0, {self.cfg.n_layer}]"
        states = [x]
        for block in self.blocks[:n]:
            states.append(block(states[-1]))
        if n == self.cfg.n_layer:
            states[-1] = self.ln_post(states[-1])
        return states

    def forward(self, wav: torch.Tensor, n_layers: int | None = None) -> torch.Tensor:
        """Encode 16 kHz audio [T] or [B, T] -> [B, frames, d_model] at 50 Hz (see n_frames()).

        n_layers: run only the first ``n_layers`` blocks (0 = conv stem + positions).
        ln_post is applied only when all blocks run, so intermediate layers are the
        raw residual stream (what layer-wise probes of Whisper usually use).
        Audio longer than 30 s is encoded in independent 30 s chunks; inputs
        shorter than 320 samples are zero-padded to 320 (one frame).
        """
        return self.hidden_states(wav, n_layers)[-1]

    def hidden_states(self, wav: torch.Tensor, n_layers: int | None = None) -> list[torch.Tensor]:
        """As :meth:`forward`, every stage's output ``[stem, block 1, ..., block n]``, each [B, frames, d_model]."""
        if wav.dim() == 1:
            wav = wav[None]
        wav = wav.to(self.mel_filters.dtype)
        outs = []
        for chunk in wav.split(CHUNK_SAMPLES, dim=1):
            if chunk.shape[1] < MIN_SAMPLES:
                chunk = F.pad(chunk, (0, MIN_SAMPLES - chunk.shape[1]))
            outs.append(self.encode_mel_states(self.log_mel(chunk), n_layers))
        return [torch.cat(parts, dim=1) for parts in zip(*outs)]

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "WhisperEncoder":
        """Load ``encoder.safetensors`` + ``config.json`` written by recipes/build/import_whisper.py."""
        from safetensors.torch import load_file

        path = Path(path)
        meta = json.loads((path / "config.json").read_text())
        model = cls(WhisperEncoderConfig(**meta["config"]))
        state = {k: v.float() for k, v in load_file(path / "encoder.safetensors").items()}
        model.load_state_dict(state)
        return model.eval()

    def config_dict(self) -> dict:
        return asdict(self.cfg)
