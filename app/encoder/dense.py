"""Dense speech feature models: the first stage of the unit encoder (GSLM uses HuBERT here).

Each model maps a 16 kHz mono waveform ``(T,)`` to frame features ``(frames, dim)`` at 50 Hz (``hop`` = 320
samples; HuBERT's convolutions give ``(T - 400) // 320 + 1`` frames). ``build_dense`` makes one from the ``dense``
section of a backbone config; weights (if any) are loaded by the backbone bundle.
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
    """Whisper's encoder (see app/encoder/whisper.py) cut after ``n_layer`` blocks, features at 50 Hz.

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
        return self.hidden_states(wav)[-1]

    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """Frames after the stem and after each block ``[stem, block 1, ..., block n]``, each ``(frames, d)``."""
        n = max(wav.numel() // HOP, 1)
        return [s[0, :n] for s in self.encoder.hidden_states(wav.float()[None])]


# torchaudio.models.hubert_base(), without its dropouts (the backbone is frozen) or a CTC head.
HUBERT_BASE = {
    "extractor_mode": "group_norm",
    "extractor_conv_layer_config": [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2,
    "extractor_conv_bias": False,
    "encoder_embed_dim": 768,
    "encoder_pos_conv_kernel": 128,
    "encoder_pos_conv_groups": 16,
    "encoder_num_layers": 12,
    "encoder_num_heads": 12,
    "encoder_ff_interm_features": 3072,
    "encoder_layer_norm_first": False,
}
NO_DROPOUT = {"encoder_projection_dropout": 0.0, "encoder_attention_dropout": 0.0, "encoder_ff_interm_dropout": 0.0,
              "encoder_dropout": 0.0, "encoder_layer_drop": 0.0, "aux_num_out": None}


class Hubert(torch.nn.Module):
    """HuBERT (torchaudio's model) cut after transformer layer ``layer``: that layer's output at 50 Hz, as GSLM
    quantizes (HuBERT base, layer 6). ``arch``: :func:`torchaudio.models.wav2vec2_model` options (default: HuBERT
    base); the layers after ``layer`` are not built and store no weights. ``normalize``: layer-normalise the
    waveform first (only for checkpoints trained that way; HuBERT base is not).

    The convolutional positional embedding is a plain weight here (its weight norm folded in at import).
    """

    hop = HOP
    min_samples = 400  # the first convolution's window

    def __init__(self, layer: int = 6, normalize: bool = False, arch: dict[str, Any] | None = None) -> None:
        super().__init__()
        options = {**HUBERT_BASE, **(arch or {})}
        if not 1 <= layer <= options["encoder_num_layers"]:
            raise ValueError(f"HuBERT layer {layer} is not in 1..{options['encoder_num_layers']}")
        options["encoder_num_layers"] = layer
        self.layer, self.normalize = layer, normalize
        self.model = torchaudio.models.wav2vec2_model(**options, **NO_DROPOUT)
        conv = self.model.encoder.transformer.pos_conv_embed.conv
        if torch.nn.utils.parametrize.is_parametrized(conv, "weight"):
            torch.nn.utils.parametrize.remove_parametrizations(conv, "weight")
        self.dim = options["encoder_embed_dim"]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.float()
        if x.numel() < self.min_samples:
            x = torch.nn.functional.pad(x, (0, self.min_samples - x.numel()))
        if self.normalize:
            x = torch.nn.functional.layer_norm(x, x.shape)
        feats, _ = self.model.extract_features(x[None], num_layers=self.layer)
        return feats[-1][0]


DENSE_MODELS = {"logmel": LogMel, "whisper": Whisper, "hubert": Hubert}


def build_dense(config: dict[str, Any]) -> torch.nn.Module:
    """Build a dense model from ``{"kind": ..., **options}``."""
    options = dict(config)
    kind = options.pop("kind")
    if kind not in DENSE_MODELS:
        raise ValueError(f"Unknown dense model kind {kind!r}; known: {sorted(DENSE_MODELS)}")
    return DENSE_MODELS[kind](**options)
