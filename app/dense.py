"""Dense speech feature models: the first stage of the unit encoder (GSLM uses HuBERT here).

Each model maps a 16 kHz mono waveform ``(T,)`` to frame features ``(frames, dim)`` at 50 Hz (``hop`` = 320
samples). ``build_dense`` makes one from the ``dense`` section of a backbone config; weights (if any) are loaded
by the backbone bundle.
"""
from __future__ import annotations

from typing import Any

import torch
import torchaudio

SAMPLE_RATE = 16_000
HOP = 320  # 20 ms frames, 50 Hz, as HuBERT and Whisper's encoder


class LogMel(torch.nn.Module):
    """Log-mel filterbanks at 100 Hz, per-utterance mean/variance normalised, +-context frames stacked, 50 Hz."""

    hop = HOP

    def __init__(self, n_mels: int = 40, context: int = 2) -> None:
        super().__init__()
        self.n_mels, self.context = n_mels, context
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=400, win_length=400, hop_length=HOP // 2, n_mels=n_mels, center=True
        )
        self.dim = n_mels * (2 * context + 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = torch.log(self.mel(wav.float()) + 1e-6).T  # (frames100, n_mels)
        x = (x - x.mean(0)) / (x.std(0) + 1e-5) if x.shape[0] > 1 else x - x.mean(0)
        c = self.context
        padded = torch.nn.functional.pad(x.T, (c, c), mode="replicate").T if x.shape[0] > 1 else x.repeat(2 * c + 1, 1)
        stacked = torch.cat([padded[i : i + x.shape[0]] for i in range(2 * c + 1)], dim=1)
        n = max(wav.numel() // HOP, 1)
        return stacked[::2][:n]


class Whisper(torch.nn.Module):
    """Whisper's encoder (see app/whisper.py) cut after ``n_layer`` blocks, features at 50 Hz.

    ``post_ln``: apply the final layer norm (only meaningful when all of Whisper's blocks are kept); a cut
    encoder gives the raw residual stream of its last block, and stores no weights for the blocks it drops.
    """

    hop = HOP

    def __init__(self, post_ln: bool = False, **encoder_config: Any) -> None:
        super().__init__()
        from .whisper import WhisperEncoder, WhisperEncoderConfig

        self.encoder = WhisperEncoder(WhisperEncoderConfig(**encoder_config))
        if not post_ln:
            self.encoder.ln_post = torch.nn.Identity()
        self.dim = self.encoder.cfg.d_model

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(wav.float()[None])[0]
        return feats[: max(wav.numel() // HOP, 1)]


DENSE_MODELS = {"logmel": LogMel, "whisper": Whisper}


def build_dense(config: dict[str, Any]) -> torch.nn.Module:
    """Build a dense model from ``{"kind": ..., **options}``."""
    options = dict(config)
    kind = options.pop("kind")
    if kind not in DENSE_MODELS:
        raise ValueError(f"Unknown dense model kind {kind!r}; known: {sorted(DENSE_MODELS)}")
    return DENSE_MODELS[kind](**options)
