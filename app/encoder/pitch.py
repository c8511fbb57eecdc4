"""Frame-level pitch (F0) by normalised autocorrelation, at the encoder's frame rate.

Small and dependency-free: good enough to give each unit a mean pitch and a pitch bucket (pGSLM-style prosody
stream) and to draw a pitch curve. Unvoiced frames get 0 Hz.
"""
from __future__ import annotations

import torch

F0_MIN = 60.0
F0_MAX = 500.0


def frame_pitch(
    wav: torch.Tensor,
    sr: int,
    n_frames: int,
    hop: int,
    voicing_threshold: float = 0.5,
    silence_db: float = -40.0,
) -> torch.Tensor:
    """F0 in Hz for ``n_frames`` frames whose centres are ``hop * (i + 0.5)`` samples; 0 where unvoiced."""
    win = int(0.04 * sr)  # 40 ms: two periods of 50 Hz
    if n_frames <= 0:
        return torch.zeros(0)
    centres = (torch.arange(n_frames) * hop + hop // 2).clamp(max=max(wav.numel() - 1, 0))
    padded = torch.nn.functional.pad(wav.float(), (win // 2, win // 2))
    idx = centres[:, None] + torch.arange(win)[None, :]
    frames = padded[idx]
    frames = frames - frames.mean(dim=1, keepdim=True)
    energy = frames.pow(2).sum(dim=1)
    spec = torch.fft.rfft(frames, n=2 * win)
    ac = torch.fft.irfft(spec.abs().pow(2), n=2 * win)[:, :win]
    lag_min, lag_max = int(sr / F0_MAX), min(int(sr / F0_MIN), win - 1)
    # Normalise by the overlap length so long lags are not penalised, then by zero-lag energy.
    overlap = (win - torch.arange(win)).float() / win
    norm = ac / (ac[:, :1] * overlap[None, :] + 1e-9)
    region = norm[:, lag_min : lag_max + 1]
    best = region.max(dim=1).values
    # Prefer the shortest lag that comes close to the best peak: avoids halving the pitch (octave errors).
    near = region >= 0.9 * best[:, None]
    first = near.float().argmax(dim=1)
    # ...then climb to the top of that peak (within +25% of the lag) and refine it by parabolic interpolation.
    lags = torch.arange(region.shape[1])[None, :]
    window = (lags >= first[:, None]) & (lags <= (first[:, None] + lag_min) * 1.25 - lag_min)
    lag = torch.where(window, region, torch.full_like(region, -1e9)).argmax(dim=1)
    left = region.gather(1, (lag - 1).clamp_min(0)[:, None])[:, 0]
    right = region.gather(1, (lag + 1).clamp_max(region.shape[1] - 1)[:, None])[:, 0]
    mid = region.gather(1, lag[:, None])[:, 0]
    denom = left - 2 * mid + right
    shift = torch.where(denom.abs() > 1e-9, 0.5 * (left - right) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
    f0 = sr / (lag.float() + shift + lag_min)
    db = 10 * torch.log10(energy + 1e-12)
    loud = db > (db.max() + silence_db)
    voiced = (best > voicing_threshold) & loud
    return _median3(torch.where(voiced, f0, torch.zeros_like(f0)))


def _median3(f0: torch.Tensor) -> torch.Tensor:
    """3-frame median over voiced frames: removes one-frame octave spikes where voicing starts or stops."""
    if f0.numel() < 3:
        return f0
    padded = torch.nn.functional.pad(f0[None, None], (1, 1), mode="replicate")[0, 0]
    windows = padded.unfold(0, 3, 1)
    # Unvoiced neighbours (0) must not drag a voiced frame down: take the median of the voiced values only.
    v = torch.where(windows > 0, windows, torch.full_like(windows, float("nan")))
    med = v.nanmedian(dim=1).values
    return torch.where(f0 > 0, med, f0)
