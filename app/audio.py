"""Audio front end: decode, mix to mono, resample, level, trim, cap.

Everything that enters the model goes through :func:`prepare`, which returns a 16 kHz mono float32 tensor and a
list of human-readable notices (capped, trimmed, clipped...). Problems the user can fix raise :class:`AudioError`
with a message meant for people, never a traceback.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

TARGET_SR = 16_000
MIN_SECONDS = 0.1
DEFAULT_MAX_SECONDS = 30.0
MAX_FILE_BYTES = 200 * 1024 * 1024  # refuse to decode anything larger than this
_SILENCE_DBFS = -50.0  # frames quieter than this (relative to full scale) count as silence when trimming


class AudioError(ValueError):
    """A problem with the user's audio, with a message that says what to do."""


@dataclass
class Audio:
    """A prepared clip: 16 kHz mono float32 in [-1, 1], plus what was done to it."""

    wav: torch.Tensor
    sample_rate: int = TARGET_SR
    source_rate: int = TARGET_SR
    notices: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.wav.numel() / self.sample_rate


AudioInput = Union[str, os.PathLike, bytes, tuple, np.ndarray, torch.Tensor]


def read(source: AudioInput, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a file path, raw bytes, a Gradio ``(rate, array)`` tuple or an array into (samples, rate)."""
    if isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError("Expected audio as (sample_rate, samples).")
        a, b = source
        sample_rate, data = (a, b) if np.isscalar(a) else (b, a)
        return _as_float(np.asarray(data)), int(sample_rate)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        if sample_rate is None:
            raise AudioError("An array needs its sample rate.")
        data = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else source
        return _as_float(np.asarray(data)), int(sample_rate)
    if isinstance(source, bytes):
        return _decode(io.BytesIO(source), "the uploaded data", len(source))
    path = Path(source)
    if not path.exists():
        raise AudioError(f"File not found: {path.name}")
    if path.is_dir():
        raise AudioError(f"{path.name} is a folder, not an audio file.")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path.name} is empty (0 bytes).")
    if size > MAX_FILE_BYTES:
        raise AudioError(f"{path.name} is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES / 2**20:.0f} MB.")
    return _decode(path, path.name, size)


def _decode(file, name: str, size: int) -> tuple[np.ndarray, int]:
    if size == 0:
        raise AudioError(f"{name} is empty (0 bytes).")
    try:
        info = sf.info(file)
        if hasattr(file, "seek"):
            file.seek(0)
        # Decode at most a little more than we could ever use, so a 10-minute upload costs no more memory.
        frames = int(min(info.frames, info.samplerate * 600)) if info.frames > 0 else -1
        data, rate = sf.read(file, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types; all mean the same to a user
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(
            f"Could not read {name} as audio ({msg}). Use WAV, FLAC, OGG or MP3; other formats need converting."
        ) from None
    return _as_float(data), int(rate)


def _as_float(data: np.ndarray) -> np.ndarray:
    """Any numeric array -> float32, integer types scaled to [-1, 1]."""
    if data.dtype.kind not in "iuf":
        raise AudioError(f"Audio samples must be numbers, got dtype {data.dtype}.")
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    elif data.dtype.kind == "u":
        info = np.iinfo(data.dtype)
        data = (data.astype(np.float32) - (info.max + 1) / 2) / ((info.max + 1) / 2)
    return data.astype(np.float32, copy=False)


def to_mono(data: np.ndarray) -> np.ndarray:
    """(T,), (T, C) or (C, T) -> (T,) by averaging channels (the shorter axis is taken as channels)."""
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise AudioError(f"Audio must be 1-D or 2-D, got shape {data.shape}.")
    ch_axis = 1 if data.shape[1] <= data.shape[0] else 0
    return data.mean(axis=ch_axis)


def prepare(
    source: AudioInput,
    sample_rate: int | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    trim: bool = True,
    normalize: bool = True,
) -> Audio:
    """Decode and condition audio for the encoder: mono, 16 kHz, finite, level-normalised, trimmed, capped."""
    data, rate = read(source, sample_rate)
    if rate < 4000 or rate > 384_000:
        raise AudioError(f"Unsupported sample rate {rate} Hz (expected 4 kHz to 384 kHz).")
    if data.size == 0:
        raise AudioError("The audio has no samples (zero length).")
    mono = to_mono(data)
    notices: list[str] = []
    bad = ~np.isfinite(mono)
    if bad.any():
        if bad.all():
            raise AudioError("The audio contains only NaN/Inf values.")
        notices.append(f"Replaced {int(bad.sum())} NaN/Inf samples with silence.")
        mono = np.where(bad, 0.0, mono).astype(np.float32)
    cap = int(max_seconds * rate)
    if mono.size > cap:
        notices.append(f"Audio is {mono.size / rate:.1f} s long; only the first {max_seconds:g} s are used.")
        mono = mono[:cap]
    peak = float(np.abs(mono).max())
    if peak >= 0.999 and np.mean(np.abs(mono) >= 0.999) > 0.01:
        notices.append("The recording is clipped (too loud); results may suffer.")
    wav = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if rate != TARGET_SR:
        wav = AF.resample(wav, rate, TARGET_SR)
    if peak < 1e-4:
        raise AudioError("The audio is silent: nothing to classify. Record closer to the microphone.")
    if trim:
        wav = trim_silence(wav)
    if wav.numel() < MIN_SECONDS * TARGET_SR:
        if wav.numel() == 0:
            raise AudioError("The audio is silent after trimming: nothing to classify.")
        pad = int(MIN_SECONDS * TARGET_SR) - wav.numel()
        notices.append(f"Very short clip ({wav.numel() / TARGET_SR * 1000:.0f} ms); padded to {MIN_SECONDS:g} s.")
        wav = torch.nn.functional.pad(wav, (pad // 2, pad - pad // 2))
    if normalize:
        wav = normalize_level(wav)
    return Audio(wav=wav, sample_rate=TARGET_SR, source_rate=rate, notices=notices)


def normalize_level(wav: torch.Tensor, target_dbfs: float = -20.0) -> torch.Tensor:
    """Scale to a fixed RMS level, never beyond a peak of 0.99."""
    rms = wav.pow(2).mean().sqrt().clamp_min(1e-8)
    gain = 10 ** (target_dbfs / 20) / rms
    gain = torch.minimum(gain, 0.99 / wav.abs().max().clamp_min(1e-8))
    return wav * gain


def trim_silence(wav: torch.Tensor, sr: int = TARGET_SR, margin_s: float = 0.05) -> torch.Tensor:
    """Cut leading and trailing stretches quieter than -50 dB relative to the clip's loudest 20 ms frame."""
    hop = sr // 50
    if wav.numel() < 2 * hop:
        return wav
    frames = wav[: wav.numel() // hop * hop].view(-1, hop)
    db = 10 * torch.log10(frames.pow(2).mean(dim=1) + 1e-12)
    loud = (db > db.max() + _SILENCE_DBFS).nonzero().flatten()
    if loud.numel() == 0:
        return wav
    margin = int(margin_s * sr)
    start = max(int(loud[0]) * hop - margin, 0)
    end = min((int(loud[-1]) + 1) * hop + margin, wav.numel())
    return wav[start:end]
