"""Waveform augmentation for few-shot training, in-process with torch/torchaudio (no sox).

A teacher gives a few takes per word; each take becomes several perturbed copies *before* encoding, so every copy
is its own unit sequence (the units of a slower, higher or reverberant take differ from the original's). The
perturbations:

- ``speed``: resampling by a small-integer ratio (tempo and pitch change together, as sox ``speed``),
- ``pitch``: resampling then a phase-vocoder time-stretch back to the original length (pitch moves, tempo stays),
- ``room``: convolution with a synthetic room impulse response (exponentially decaying noise, random RT60),
- ``noise``: a background recording (or, without one, generated coloured noise) mixed in at a given SNR,
- ``gain``: a level change (the app normalises every clip's level before encoding, so alone it changes nothing the
  encoder sees; it matters before noise, where it sets how loud the speech sits in the background),
- ``crop``: the clip cut to its loud core, as a tightly cut recording is (FSDD's takes often start at the vowel and
  stop after it: the quiet /s/ of "six" or /f/ of "five" falls outside the cut).

:func:`augment` applies one named recipe; :data:`PLAN` lists the recipes the few-shot flow uses per copy, in order.
Every random choice comes from the ``numpy`` generator it is given (same seed, same copies).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .audio import TARGET_SR, normalize_level

#: Speed / pitch ratios as small-integer fractions (fast polyphase resampling): p/q > 1 is faster or higher.
RATIOS = ((9, 10), (10, 9), (11, 12), (12, 11), (8, 9), (9, 8))
#: The few-shot flow's copies of each take, in order (the first ``n`` are used).
PLAN: tuple[str, ...] = ("speed", "pitch", "room+noise", "speed+pitch", "noise", "pitch+room", "speed+noise",
                         "room")
#: Channel perturbations only (room, background noise, level): for tasks where speed or pitch changes the answer
#: (a speaker's voice) or fakes it (resampling and the phase vocoder make real speech sound vocoded: ``fake``).
CHANNEL_PLAN: tuple[str, ...] = ("room+noise", "noise", "room", "gain+noise")
#: PLAN's first four copies, two of them then cut to their loud core: for words recorded elsewhere in tight cuts
#: (on digits' training clips the cut shortened 75 % of the first and 38 % of the third by more than a tenth: the
#: noise mixed in before it often lies within the drawn range).
CROPPED_PLAN: tuple[str, ...] = ("speed+crop", "pitch", "room+noise+crop", "speed+pitch")
#: The plans by name (a recipe's copies are cached under that name).
PLANS: dict[str, tuple[str, ...]] = {"copies": PLAN, "channel": CHANNEL_PLAN, "cropped": CROPPED_PLAN}


def speed(wav: torch.Tensor, p: int, q: int) -> torch.Tensor:
    """Play ``p/q`` times as fast: tempo and pitch scale together (sox ``speed``)."""
    return AF.resample(wav, p, q)


def time_stretch(wav: torch.Tensor, rate: float, n_fft: int = 512, hop: int = 128) -> torch.Tensor:
    """Phase-vocoder time-stretch: ``rate`` > 1 shortens, pitch unchanged."""
    if wav.numel() < n_fft:
        return wav
    window = torch.hann_window(n_fft)
    spec = torch.stft(wav, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[0])[..., None]
    stretched = AF.phase_vocoder(spec, rate, advance)
    return torch.istft(stretched, n_fft, hop, window=window, length=max(int(round(wav.numel() / rate)), 1))


def pitch_shift(wav: torch.Tensor, p: int, q: int) -> torch.Tensor:
    """Raise the pitch by ``p/q`` (lower it if < 1), keeping the length: resample, then stretch back."""
    y = speed(wav, p, q)
    return time_stretch(y, y.numel() / wav.numel())


def room_impulse(rng: np.random.Generator, rt60: float | None = None, sr: int = TARGET_SR) -> torch.Tensor:
    """A synthetic room impulse response: a direct path, then exponentially decaying noise (RT60 0.15-0.6 s)."""
    rt60 = float(rt60 if rt60 is not None else rng.uniform(0.15, 0.6))
    n = int(sr * min(rt60, 0.8))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    delay = int(rng.uniform(0.002, 0.01) * sr)  # first reflections a few ms after the direct sound
    tail[:delay] = 0.0
    tail *= rng.uniform(0.2, 0.6) / (np.sqrt(np.sum(tail**2)) + 1e-9)  # direct-to-reverberant ratio
    tail[0] = 1.0
    return torch.from_numpy(tail.astype(np.float32))


def reverberate(wav: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve with an impulse response; the output keeps the input's length and level."""
    out = AF.fftconvolve(wav, rir)[: wav.numel()]
    return out * (wav.pow(2).mean().sqrt() / out.pow(2).mean().sqrt().clamp_min(1e-8))


def mix_at_snr(wav: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Add ``noise`` (looped or cut to the clip's length) at ``snr_db`` dB below the speech."""
    if noise.numel() < wav.numel():
        noise = noise.repeat(wav.numel() // max(noise.numel(), 1) + 1)
    noise = noise[: wav.numel()]
    p_s, p_n = wav.pow(2).mean(), noise.pow(2).mean().clamp_min(1e-10)
    return wav + noise * torch.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))


def crop_edges(wav: torch.Tensor, rng: np.random.Generator, sr: int = TARGET_SR,
               drop_db: tuple[float, float] = (10.0, 30.0), margin_s: tuple[float, float] = (0.0, 0.03),
               min_s: float = 0.1) -> torch.Tensor:
    """The clip cut to the span of its 10 ms frames within ``drop_db`` dB (drawn) of its loudest frame, plus a drawn
    margin each side: quiet onsets and codas (fricatives, breath, room tail) fall away, as in a tightly cut
    recording. Never shorter than ``min_s`` seconds (a shorter clip comes back whole)."""
    if wav.dim() != 1:
        raise ValueError(f"crop_edges cuts a mono clip (1-D samples), not shape {tuple(wav.shape)}")
    frame = sr // 100
    n = wav.numel() // frame
    if n * frame < min_s * sr:
        return wav
    energy_db = 10 * torch.log10(wav[: n * frame].reshape(n, frame).pow(2).mean(1) + 1e-12)
    loud = torch.nonzero(energy_db >= energy_db.max() - float(rng.uniform(*drop_db))).flatten()
    if loud.numel() == 0:  # no finite level to cut at (NaN samples): left whole
        return wav
    before, after = (int(rng.uniform(*margin_s) * sr) for _ in range(2))
    start, end = max(0, int(loud[0]) * frame - before), min(wav.numel(), (int(loud[-1]) + 1) * frame + after)
    need = int(min_s * sr)
    if end - start < need:  # widened to the minimum length, evenly where the clip allows
        start = max(0, min(start - (need - (end - start)) // 2, wav.numel() - need))
        end = start + need
    return wav[start:end]


def coloured_noise(n: int, rng: np.random.Generator) -> torch.Tensor:
    """White, pink-ish or brown-ish noise (a stand-in when no background recordings are available)."""
    white = rng.standard_normal(n)
    alpha = rng.choice([0.0, 1.0, 2.0])
    spec = np.fft.rfft(white)
    f = np.arange(1, spec.size + 1)
    spec /= f ** (alpha / 2)
    return torch.from_numpy(np.fft.irfft(spec, n).astype(np.float32))


@lru_cache(maxsize=4)
def _noise_files(folder: str) -> tuple[Path, ...]:
    p = Path(folder)
    return tuple(sorted(p.glob("*.wav"))) if p.is_dir() else ()


def background(n: int, rng: np.random.Generator, folder: str | Path | None) -> torch.Tensor:
    """``n`` samples of a random background recording from ``folder`` (16 kHz wav), else coloured noise."""
    files = _noise_files(str(folder)) if folder else ()
    if files:
        path = files[int(rng.integers(len(files)))]
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
            x = torch.from_numpy(data.mean(axis=1))
            if sr != TARGET_SR:
                x = AF.resample(x, sr, TARGET_SR)
            if x.numel() > n:
                start = int(rng.integers(x.numel() - n + 1))
                x = x[start : start + n]
            if x.pow(2).mean() > 1e-10:
                return x
        except (OSError, RuntimeError, ValueError):
            pass
    return coloured_noise(n, rng)


def augment(wav: torch.Tensor, recipe: str, rng: np.random.Generator, noise_dir: str | Path | None = None,
            snr_db: tuple[float, float] = (5.0, 20.0)) -> torch.Tensor:
    """One perturbed copy of a 16 kHz clip: ``recipe`` joins steps with '+' (speed, pitch, room, noise, gain, crop);
    the result is level-normalised like every clip the encoder sees."""
    x = wav
    for step in recipe.split("+"):
        if step == "speed":
            x = speed(x, *RATIOS[int(rng.integers(4))])  # 0.9-1.1
        elif step == "pitch":
            x = pitch_shift(x, *RATIOS[int(rng.integers(len(RATIOS)))])  # about -/+ 2 semitones
        elif step == "room":
            x = reverberate(x, room_impulse(rng))
        elif step == "gain":
            x = x * float(10 ** (rng.uniform(-6, 6) / 20))
        elif step == "noise":
            x = mix_at_snr(x, background(x.numel(), rng, noise_dir), float(rng.uniform(*snr_db)))
        elif step == "crop":
            x = crop_edges(x, rng)
        else:
            raise ValueError(f"unknown augmentation step {step!r}")
    return normalize_level(x)


def copies(wav: torch.Tensor, n: int, rng: np.random.Generator, noise_dir: str | Path | None = None,
           plan: Sequence[str] = PLAN) -> list[torch.Tensor]:
    """``n`` perturbed copies of a clip, following ``plan`` in order (cycling if ``n`` is larger)."""
    return [augment(wav, plan[i % len(plan)], rng, noise_dir) for i in range(n)]
