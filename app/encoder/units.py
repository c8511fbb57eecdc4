"""SpeechEncoder: waveform -> dense features -> k-means units, repeats collapsed, with durations and pitch.

In the spirit of textlesslib's SpeechEncoder: one call gives the unit ids, each unit's duration (frames) and mean
pitch. The dense model and the k-means centroids are parts of a backbone bundle.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .pitch import frame_pitch

# Prosody streams (pGSLM-style): durations and pitch are bucketed into small vocabularies of their own.
DURATION_EDGES = (2, 3, 4, 5, 7, 10, 14)  # frames; bucket 0 = 1 frame ... bucket 7 = 14+ frames
N_DURATION_BUCKETS = len(DURATION_EDGES) + 1
PITCH_EDGES_HZ = tuple(float(60 * (500 / 60) ** (i / 14)) for i in range(1, 14))
N_PITCH_BUCKETS = len(PITCH_EDGES_HZ) + 2  # bucket 0 = unvoiced, 1.. = log-spaced 60-500 Hz


@dataclass
class Units:
    """A collapsed unit sequence with per-unit durations (frames) and mean pitch (Hz, 0 = unvoiced)."""

    ids: torch.Tensor  # (N,) long
    durations: torch.Tensor  # (N,) long, frames
    pitch: torch.Tensor  # (N,) float, Hz
    frame_rate: float = 50.0
    frame_pitch: torch.Tensor | None = None  # (frames,) Hz, for plotting

    def __len__(self) -> int:
        return int(self.ids.numel())

    @property
    def starts(self) -> torch.Tensor:
        """Start frame of every unit."""
        return torch.cumsum(self.durations, 0) - self.durations

    def duration_buckets(self) -> torch.Tensor:
        return torch.bucketize(self.durations, torch.tensor(DURATION_EDGES), right=True)

    def pitch_buckets(self) -> torch.Tensor:
        b = torch.bucketize(self.pitch, torch.tensor(PITCH_EDGES_HZ)) + 1
        return torch.where(self.pitch > 0, b, torch.zeros_like(b))

    def to_dict(self) -> dict:
        return {
            "units": self.ids.tolist(),
            "durations": self.durations.tolist(),
            "pitch": [round(float(p), 1) for p in self.pitch],
        }


def collapse(frame_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run-length encode: ``[5, 5, 7, 7, 7, 5] -> ids [5, 7, 5], durations [2, 3, 1]``."""
    if frame_ids.numel() == 0:
        return frame_ids.clone(), frame_ids.clone()
    ids, counts = torch.unique_consecutive(frame_ids, return_counts=True)
    return ids, counts


class SpeechEncoder(torch.nn.Module):
    """Dense model + k-means quantizer + collapse + pitch, as one module with a one-call ``forward``."""

    def __init__(self, dense: torch.nn.Module, centroids: torch.Tensor, feature_norm: str = "none") -> None:
        super().__init__()
        if feature_norm not in ("none", "l2"):
            raise ValueError(f"feature_norm must be 'none' or 'l2', got {feature_norm!r}")
        self.dense = dense
        self.feature_norm = feature_norm
        self.register_buffer("centroids", centroids.float())
        self.register_buffer("centroid_sq", centroids.float().pow(2).sum(1))

    @property
    def n_units(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def hop(self) -> int:
        return int(self.dense.hop)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """Dense features ``(frames, dim)``, normalised as the quantizer expects."""
        feats = self.dense(wav)
        if self.feature_norm == "l2":
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats

    def quantize(self, feats: torch.Tensor) -> torch.Tensor:
        """Nearest centroid (squared Euclidean) for every frame."""
        d = self.centroid_sq[None, :] - 2 * feats @ self.centroids.T
        return d.argmin(dim=1)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, sample_rate: int = 16_000) -> Units:
        if sample_rate != 16_000:
            raise ValueError("SpeechEncoder expects 16 kHz audio; use app.encoder.audio.prepare first.")
        frame_ids = self.quantize(self.features(wav))
        f0 = frame_pitch(wav, sample_rate, frame_ids.numel(), self.hop)
        ids, durations = collapse(frame_ids)
        pitch = segment_voiced_mean(f0, durations)
        return Units(ids=ids, durations=durations, pitch=pitch, frame_rate=sample_rate / self.hop, frame_pitch=f0)


def segment_voiced_mean(f0: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Mean of the voiced (non-zero) frame values within each segment; 0 for a segment with none."""
    seg = torch.repeat_interleave(torch.arange(durations.numel()), durations)
    voiced = (f0 > 0).float()
    total = torch.zeros(durations.numel()).index_add_(0, seg, f0 * voiced)
    count = torch.zeros(durations.numel()).index_add_(0, seg, voiced)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
