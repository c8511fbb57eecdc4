"""SpeechEncoder: waveform -> dense features -> k-means units, repeats collapsed, with durations, pitch and voice.

In the spirit of textlesslib's SpeechEncoder: one call gives the unit ids, each unit's duration (frames), its mean
pitch and (backbone v2) its voice codes. The dense model, the k-means centroids and the voice quantizer are parts of
a backbone bundle.

Voice streams (issue #13, docs/BACKBONE_V2.md section 5): k-means units keep what is said and drop who says it. A
:class:`VoiceQuantizer` keeps the voice as a few small token streams, like the pitch stream keeps the melody: the
frames of a low encoder block are cut into ~1 s windows; each window's mean and standard deviation (per dimension)
are standardised and projected on the top principal directions of a corpus sample (PCA-whitened), and each
direction is cut into equal-mass buckets at the corpus quantiles. Every unit carries the codes of the window that
holds its first frame.
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
    voice: torch.Tensor | None = None  # (N, n_streams) long: each unit's voice codes (backbones with voice streams)

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
        d = {
            "units": self.ids.tolist(),
            "durations": self.durations.tolist(),
            "pitch": [round(float(p), 1) for p in self.pitch],
        }
        if self.voice is not None:
            d["voice"] = self.voice.tolist()
        return d


def window_bounds(n_frames: int, window: int) -> torch.Tensor:
    """Edges of near-equal windows of about ``window`` frames covering ``n_frames`` (at least one window)."""
    m = max(1, int(round(n_frames / window)))
    return torch.linspace(0, n_frames, m + 1).round().long()


def window_stats(frames: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``frames (F, D)`` -> ``([mean | std] per window (W, 2D), the window of every frame (F,))``."""
    edges = window_bounds(frames.shape[0], window).tolist()
    stats = [torch.cat([frames[a:b].mean(0), frames[a:b].std(0, unbiased=False)]) for a, b in zip(edges, edges[1:])]
    which = torch.repeat_interleave(torch.arange(len(stats)), torch.tensor(edges).diff())
    return torch.stack(stats), which


VOICE_TENSORS = ("mean", "scale", "proj", "edges")  # what a fitted VoiceQuantizer holds


class VoiceQuantizer(torch.nn.Module):
    """Window statistics of encoder block ``layer`` -> ``n_streams`` voice codes of ``n_buckets`` values each.

    ``mean``/``scale`` standardise the statistics, ``proj (2D, n_streams)`` whitens them onto the top principal
    directions, ``edges (n_streams, n_buckets - 1)`` are each direction's corpus quantiles."""

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, proj: torch.Tensor, edges: torch.Tensor,
                 layer: int, window: int = 50) -> None:
        super().__init__()
        if proj.shape != (mean.numel(), edges.shape[0]) or scale.shape != mean.shape:
            raise ValueError("VoiceQuantizer: mean, scale, proj and edges do not fit together")
        self.layer, self.window = int(layer), int(window)
        for name, t in (("mean", mean), ("scale", scale), ("proj", proj), ("edges", edges)):
            self.register_buffer(name, t.float().contiguous())

    @property
    def n_streams(self) -> int:
        return int(self.edges.shape[0])

    @property
    def n_buckets(self) -> int:
        return int(self.edges.shape[1]) + 1

    def config(self) -> dict:
        return {"layer": self.layer, "window": self.window, "n_streams": self.n_streams, "n_buckets": self.n_buckets,
                "dim": int(self.mean.numel()) // 2}

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted tensors (``VOICE_TENSORS``), as a backbone stores them (``voice.*`` in encoder.safetensors)."""
        return {n: getattr(self, n).contiguous() for n in VOICE_TENSORS}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], config: dict) -> "VoiceQuantizer":
        """The quantizer that :meth:`state` and :meth:`config` describe (raises KeyError for a missing tensor)."""
        return cls(*(tensors[n].float() for n in VOICE_TENSORS), layer=config["layer"], window=config["window"])

    def whiten(self, stats: torch.Tensor) -> torch.Tensor:
        return ((stats - self.mean) / self.scale) @ self.proj

    def quantize(self, stats: torch.Tensor) -> torch.Tensor:
        """Voice codes ``(W, n_streams)`` of window statistics ``(W, 2D)``."""
        z = self.whiten(stats)
        return (z[:, :, None] > self.edges[None]).sum(-1)  # bucket = how many edges lie below

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Voice codes of every frame ``(F, n_streams)``: those of the window that holds it."""
        stats, which = window_stats(frames.float(), self.window)
        return self.quantize(stats)[which]

    @classmethod
    def fit(cls, stats: torch.Tensor, layer: int, window: int = 50, n_streams: int = 16,
            n_buckets: int = 8) -> "VoiceQuantizer":
        """Fit on window statistics ``(N, 2D)`` of a corpus sample (:func:`window_stats` of block ``layer``)."""
        x = stats.double()
        mean, scale = x.mean(0), x.std(0, unbiased=False) + 1e-5
        z = (x - mean) / scale
        evals, evecs = torch.linalg.eigh(torch.cov(z.T))
        top = torch.argsort(evals, descending=True)[:n_streams]
        proj = evecs[:, top] / torch.sqrt(evals[top].clamp_min(0) + 1e-6)
        q = torch.linspace(0, 1, n_buckets + 1, dtype=torch.double)[1:-1]
        edges = torch.quantile(z @ proj, q, dim=0).T  # (n_streams, n_buckets - 1)
        return cls(mean.float(), scale.float(), proj.float(), edges.float(), layer, window)


def collapse(frame_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run-length encode: ``[5, 5, 7, 7, 7, 5] -> ids [5, 7, 5], durations [2, 3, 1]``."""
    if frame_ids.numel() == 0:
        return frame_ids.clone(), frame_ids.clone()
    ids, counts = torch.unique_consecutive(frame_ids, return_counts=True)
    return ids, counts


class SpeechEncoder(torch.nn.Module):
    """Dense model + k-means quantizer + collapse + pitch, as one module with a one-call ``forward``.

    The voice streams read block ``voice.layer`` of the dense model, or of ``voice_dense`` when the bundle has a
    second, smaller encoder for the voice (content from one encoder, voice from another)."""

    def __init__(self, dense: torch.nn.Module, centroids: torch.Tensor, feature_norm: str = "none",
                 voice: VoiceQuantizer | None = None, voice_dense: torch.nn.Module | None = None) -> None:
        super().__init__()
        if feature_norm not in ("none", "l2"):
            raise ValueError(f"feature_norm must be 'none' or 'l2', got {feature_norm!r}")
        if voice_dense is not None and voice is None:
            raise ValueError("a voice encoder without a voice quantizer has nothing to do")
        if voice is not None and not hasattr(dense if voice_dense is None else voice_dense, "hidden_states"):
            raise ValueError("voice streams need a dense model that gives its blocks' outputs (Whisper)")
        self.dense = dense
        self.feature_norm = feature_norm
        self.voice = voice
        self.voice_dense = voice_dense  # the voice streams' own encoder (None: blocks of ``dense``)
        self.register_buffer("centroids", centroids.float())
        self.register_buffer("centroid_sq", centroids.float().pow(2).sum(1))

    @property
    def n_units(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def hop(self) -> int:
        return int(self.dense.hop)

    @property
    def n_voice(self) -> int:
        return self.voice.n_streams if self.voice is not None else 0

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """Dense features ``(frames, dim)``, normalised as the quantizer expects."""
        return self._features(wav)[0]

    def _features(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(quantizer features, the voice quantizer's frames or None): one pass of the dense model, and one of the
        voice encoder if the bundle has its own."""
        if self.voice is None:
            feats, low = self.dense(wav), None
        elif self.voice_dense is not None:
            feats, low = self.dense(wav), self.voice_dense.hidden_states(wav)[self.voice.layer]
        else:
            states = self.dense.hidden_states(wav)
            feats, low = states[-1], states[self.voice.layer]
        if self.feature_norm == "l2":
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats, low

    def quantize(self, feats: torch.Tensor) -> torch.Tensor:
        """Nearest centroid (squared Euclidean) for every frame."""
        d = self.centroid_sq[None, :] - 2 * feats @ self.centroids.T
        return d.argmin(dim=1)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, sample_rate: int = 16_000) -> Units:
        if sample_rate != 16_000:
            raise ValueError("SpeechEncoder expects 16 kHz audio; use app.encoder.audio.prepare first.")
        feats, low = self._features(wav)
        frame_ids = self.quantize(feats)
        f0 = frame_pitch(wav, sample_rate, frame_ids.numel(), self.hop)
        ids, durations = collapse(frame_ids)
        pitch = segment_voiced_mean(f0, durations)
        voice = None
        if self.voice is not None:
            starts = torch.cumsum(durations, 0) - durations
            voice = self.voice(low[: frame_ids.numel()])[starts]
        return Units(ids=ids, durations=durations, pitch=pitch, frame_rate=sample_rate / self.hop, frame_pitch=f0,
                     voice=voice)


def segment_voiced_mean(f0: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Mean of the voiced (non-zero) frame values within each segment; 0 for a segment with none."""
    seg = torch.repeat_interleave(torch.arange(durations.numel()), durations)
    voiced = (f0 > 0).float()
    total = torch.zeros(durations.numel()).index_add_(0, seg, f0 * voiced)
    count = torch.zeros(durations.numel()).index_add_(0, seg, voiced)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
