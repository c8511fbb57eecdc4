"""Audio front end: decode, mix to mono, resample, level, trim, cap.

Everything that enters the model goes through :func:`prepare`, which returns a 16 kHz mono float32 tensor and a
list of human-readable notices (capped, trimmed, clipped...). Problems the user can fix raise :class:`AudioError`
with a message meant for people, never a traceback.

Decoding: libsndfile reads WAV, FLAC, OGG and MP3; anything else (M4A, WebM, AAC, video files...) is converted by an
``ffmpeg`` subprocess (16 kHz mono, within :data:`FFMPEG_TIMEOUT_S`), when ffmpeg is installed. Files that are
certainly not audio (text, images, archives) are recognised from their first bytes and named in the message. Only
the part of a file that will be used is decoded, so a 10-minute upload costs no more memory than a 30 s one.
"""
from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch
import torchaudio
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

FFMPEG_TIMEOUT_S = 30.0  # a conversion that takes longer than this is abandoned
DECODE_LIMIT_S = 600.0  # decode() never decodes more than this much audio, whatever the file's length
_DECODE_MARGIN_S = 0.1  # decode a little past the cap, so capping and its notice happen in one place
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 384_000  # checked in the header, before any sample is decoded
MAX_CHANNELS = 64  # more is refused (from the header), never decoded
_BLOCK_SAMPLES = 1 << 20  # samples (all channels) read per block: 4 MB of float32
_MAGIC = [  # file signatures of things people upload by mistake (checked before any decoder sees them)
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"), (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (or Office document)"),
    (b"\x7fELF", "a program"), (b"MZ", "a program"), (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
]


@dataclass
class Decoded:
    """Raw decoded samples (any layout, float32) at their own rate, the source's full length and notices."""

    samples: np.ndarray
    rate: int
    seconds: float  # length of the whole source, even when only its start was decoded
    notices: list[str] = field(default_factory=list)
    source_rate: int | None = None  # the file's own rate, when the samples were resampled while reading
    stats: "Levels | None" = None  # measured on the source samples while reading (NaN/Inf already replaced)


@dataclass
class Levels:
    """What prepare() reports about the source samples: NaN/Inf count, peak and clipped samples, counted block by
    block (non-finite samples are replaced with 0 as they are counted)."""

    n: int = 0
    nonfinite: int = 0
    peak: float = 0.0
    clipped: int = 0

    def add(self, mono: np.ndarray, inplace: bool) -> np.ndarray:
        bad = ~np.isfinite(mono)
        count = int(np.count_nonzero(bad))
        if count:
            if inplace:
                mono[bad] = 0.0
            else:
                mono = np.where(bad, np.float32(0.0), mono).astype(np.float32)
        del bad
        self.n += mono.size
        self.nonfinite += count
        if mono.size:
            self.peak = max(self.peak, float(mono.max()), -float(mono.min()))
            self.clipped += int(np.count_nonzero(mono >= 0.999)) + int(np.count_nonzero(mono <= -0.999))
        return mono


def resampling_rate(rate: int, target: int = TARGET_SR, budget: int = 1 << 21) -> int:
    """The rate to resample from: the clip's own, unless its ratio to 16 kHz is so irregular (e.g. 100,003 Hz:
    100,003/16,000 does not reduce) that torchaudio's sinc kernel would take gigabytes; then the nearest multiple
    of 100 Hz: a speed change of at most 1.25 % (near 4 kHz; 0.05 % at 100 kHz) and a kernel of at most 3 MB."""
    g = math.gcd(rate, target)
    o, n = rate // g, target // g
    width = math.ceil(6 * o / (min(o, n) * 0.99))
    if n * (2 * width + o) <= budget:
        return rate
    return max(100, round(rate / 100) * 100)


class StreamResampler:
    """Resample a signal that arrives in blocks to 16 kHz, in bounded memory: each stretch of the output is
    torchaudio's sinc resampling of its input plus a margin on both sides (wider than the filter), so the result
    equals resampling the whole signal at once (to float rounding) without ever holding it at the source rate."""

    def __init__(self, rate: int, target: int = TARGET_SR, step_s: float = 4.0) -> None:
        self.rate, self.target = resampling_rate(rate, target), target
        g = math.gcd(self.rate, target)
        self.o, self.n = self.rate // g, target // g
        width = math.ceil(6 * self.o / (min(self.o, self.n) * 0.99))  # torchaudio's default sinc filter half-width
        self.margin = self.o * (width // self.o + 2)
        self.step = self.o * max(1, min(int(self.rate * step_s), _BLOCK_SAMPLES // 2) // self.o)  # <= 2 MB in
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_start = 0  # global index of buf[0]
        self.done = 0  # global input index up to which output has been produced (a multiple of o)
        self.out: list[np.ndarray] = []
        self._kernel = None  # torchaudio's Resample transform: its sinc kernel is made once, not per stretch

    def _resample(self, lo: int, hi: int, first_out: int, count: int) -> None:
        seg = torch.from_numpy(np.ascontiguousarray(self.buf[lo - self.buf_start : hi - self.buf_start]))
        if self._kernel is None:
            self._kernel = torchaudio.transforms.Resample(self.rate, self.target)
        with torch.no_grad():
            y = self._kernel(seg)
        k0 = (first_out - lo) // self.o * self.n
        self.out.append(y[k0 : k0 + count].numpy().copy())

    def push(self, block: np.ndarray) -> None:
        if self.rate == self.target:
            self.out.append(block)
            return
        self.buf = np.concatenate([self.buf, block])
        end = self.buf_start + self.buf.size
        while end - (self.done + self.step) >= self.margin:
            a, b = self.done, self.done + self.step
            self._resample(max(0, a - self.margin), b + self.margin, a, (b - a) // self.o * self.n)
            self.done = b
            drop = max(0, self.done - self.margin - self.buf_start)
            self.buf = self.buf[drop:]
            self.buf_start += drop

    def finish(self) -> np.ndarray:
        if self.rate != self.target:
            end = self.buf_start + self.buf.size
            total = math.ceil(self.n * end / self.o)
            count = total - self.done // self.o * self.n
            if count > 0:
                self._resample(max(0, self.done - self.margin), end, self.done, count)
            self.buf = np.zeros(0, dtype=np.float32)
        out = np.concatenate(self.out) if self.out else np.zeros(0, dtype=np.float32)
        self.out = []
        return out


def decode(source: AudioInput, sample_rate: int | None = None, max_seconds: float | None = None) -> Decoded:
    """Decode a file path, raw bytes, a Gradio ``(rate, array)`` tuple or an array, files only up to ``max_seconds``
    (so a 10-minute upload costs no more memory than a 30 s one); reports the full length and what it noticed (e.g.
    a truncated file)."""
    if isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError("Expected audio as (sample_rate, samples).")
        a, b = source
        sample_rate, data = (a, b) if np.isscalar(a) else (b, a)
        return _from_array(np.asarray(data), sample_rate)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        if sample_rate is None:
            raise AudioError("An array needs its sample rate.")
        data = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else source
        return _from_array(np.asarray(data), sample_rate)
    limit = DECODE_LIMIT_S if max_seconds is None else min(max_seconds + _DECODE_MARGIN_S, DECODE_LIMIT_S)
    if isinstance(source, (bytes, bytearray)):
        if len(source) > MAX_FILE_BYTES:
            raise AudioError(f"The uploaded data is {len(source) / 2**20:.0f} MB; the limit is "
                             f"{MAX_FILE_BYTES / 2**20:.0f} MB.")
        return _decode(bytes(source), "the uploaded data", len(source), limit)
    if not isinstance(source, (str, os.PathLike)):
        raise AudioError(f"Expected a file path, bytes or an array of samples, got {type(source).__name__}.")
    path = Path(source)
    if not path.exists():
        raise AudioError(f"File not found: {path.name}")
    if path.is_dir():
        raise AudioError(f"{path.name} is a folder, not an audio file.")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise AudioError(f"{path.name} is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES / 2**20:.0f} MB.")
    return _decode(path, path.name, size, limit)


def _from_array(data: np.ndarray, sample_rate) -> Decoded:
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError):
        raise AudioError(f"The sample rate must be a number, got {sample_rate!r}.") from None
    data = _as_float(data)
    frames = data.shape[0] if data.ndim == 1 else (max(data.shape) if data.ndim == 2 else data.size)
    return Decoded(data, rate, frames / rate if rate > 0 else 0.0)


def _decode(file: Path | bytes, name: str, size: int, limit_s: float) -> Decoded:
    """libsndfile first (WAV, FLAC, OGG, MP3...), then ffmpeg (M4A, WebM, AAC...); a specific message if neither."""
    if size == 0:
        raise AudioError(f"{name} is empty (0 bytes).")
    head = file[:4096] if isinstance(file, bytes) else _head(file)
    kind = sniff(head)
    if kind:
        raise AudioError(f"Could not read {name} as audio: it is {kind}, not a sound recording.")
    riff = _riff_shortfall(head, size)
    try:
        decoded = _read_mono(io.BytesIO(file) if isinstance(file, bytes) else file, name, limit_s)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile raises several types; all mean "try something else"
        sf_msg = _clean(str(exc))
    else:
        notices = decoded.notices
        if riff:
            declared, present = riff
            if decoded.samples.size == 0:
                raise AudioError(f"Could not read {name} as audio: the file is truncated (its header announces "
                                 f"{_kb(declared)} but the file stops after {_kb(present)}, before any samples).")
            notices.append(f"{name} looks truncated (its header announces {_kb(declared)}, the file holds "
                           f"{_kb(present)}); only the part that is there is used.")
        if decoded.samples.size == 0:
            raise AudioError(f"{name} has no samples (zero length).")
        return decoded
    decoded = _ffmpeg_decode(file, name, limit_s, wav=head[:4] == b"RIFF" and head[8:12] == b"WAVE", sf_msg=sf_msg)
    if riff:
        decoded.notices.append(f"{name} looks truncated (its header announces {_kb(riff[0])}, the file holds "
                               f"{_kb(riff[1])}); only the part that is there is used.")
    return decoded


def check_header(name: str, rate: int, channels: int) -> None:
    """Refuse a file whose header announces an absurd sample rate or channel count, before any sample is read
    (a small compressed file can announce minutes of 8-channel audio at 655 kHz: gigabytes once decoded)."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"Could not use {name}: its sample rate is {rate:,} Hz; 4 kHz to 384 kHz are supported.")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"Could not use {name}: it has {channels:,} channels; at most {MAX_CHANNELS} are "
                         "supported (mix it down to mono or stereo).")


def _read_mono(handle, name: str, limit_s: float) -> Decoded:
    """libsndfile: check the header (rate, channels), then read at most ``limit_s`` seconds in blocks; each block
    is mixed to mono, measured (:class:`Levels`) and resampled to 16 kHz as it arrives, so memory never holds more
    than one block of all channels (4 MB) and the 16 kHz result (2 MB for 30 s), whatever the file announces."""
    with sf.SoundFile(handle) as f:
        rate, channels, total = int(f.samplerate), int(f.channels), int(f.frames)
        check_header(name, rate, channels)
        want = int(min(total, rate * limit_s)) if total > 0 else 0
        block = max(1, _BLOCK_SAMPLES // channels)
        levels, resampler, filled = Levels(), StreamResampler(rate), 0
        while filled < want:
            chunk = f.read(min(block, want - filled), dtype="float32", always_2d=True)
            if chunk.shape[0] == 0:
                break
            mono = chunk[:, 0].copy() if channels == 1 else chunk.mean(axis=1, dtype=np.float32)
            filled += chunk.shape[0]
            del chunk
            resampler.push(levels.add(mono, inplace=True))
            del mono
    samples = resampler.finish() if filled else np.zeros(0, dtype=np.float32)
    return Decoded(samples, TARGET_SR, total / rate if total > 0 else 0.0, source_rate=rate, stats=levels)


def _head(path: Path, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise AudioError(f"Could not open {path.name} ({exc.strerror or type(exc).__name__}).") from None


def sniff(head: bytes) -> str | None:
    """What a file that is certainly not audio is ('a PNG image', 'a text file'...), from its first bytes."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head and b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:  # a multi-byte character cut by the 4 KB window is still text
            text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else ""
        if text and sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.95 * len(text):
            return "a text file"
    return None


def _riff_shortfall(head: bytes, size: int) -> tuple[int, int] | None:
    """(announced, actual) bytes when a RIFF/WAVE header promises more than the file holds, else None."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    declared = int.from_bytes(head[4:8], "little") + 8
    if declared in (8, 0xFFFFFFFF + 8) or size >= declared:  # 0 / max: written by a stream that never finished
        return None
    return declared, size


def _kb(n: int) -> str:
    if n < 10_000:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.1f} MB"


def _clean(msg: str) -> str:
    """A decoder's message without file paths or object reprs (they mean nothing to a visitor)."""
    msg = (msg.splitlines() or [""])[0]
    msg = re.sub(r"Error opening .*?: ", "", msg)
    return msg.strip().rstrip(".") or "unknown error"


def _ffmpeg_decode(file: Path | bytes, name: str, limit_s: float, wav: bool, sf_msg: str) -> Decoded:
    """Convert with ffmpeg to 16 kHz mono float32 (at most ``limit_s`` seconds, within a time limit)."""
    broken_wav = (f"Could not read {name} as audio: the WAV file is truncated or corrupt ({sf_msg}).")
    exe = shutil.which("ffmpeg")
    if exe is None:
        if wav:
            raise AudioError(broken_wav)
        raise AudioError(f"Could not read {name} as audio ({sf_msg}). WAV, FLAC, OGG and MP3 work; other formats "
                         "(M4A, WebM, AAC...) need ffmpeg, which is not installed here. Convert the file to WAV.")
    tmp = None
    try:
        if isinstance(file, bytes):
            fd, tmp = tempfile.mkstemp(prefix="speechprompt-", suffix=".upload")
            with os.fdopen(fd, "wb") as f:
                f.write(file)
            path = tmp
        else:
            path = str(file)
        cmd = [exe, "-nostdin", "-hide_banner", "-nostats", "-i", path, "-t", f"{limit_s:g}", "-map", "0:a:0",
               "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(TARGET_SR), "-f", "f32le", "pipe:1"]
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise AudioError(f"Converting {name} took longer than {FFMPEG_TIMEOUT_S:g} s; please upload a shorter "
                             "clip or a WAV file.") from None
        except OSError as exc:
            raise AudioError(f"Could not run ffmpeg to convert {name} ({exc.strerror}).") from None
    finally:
        if tmp:
            os.unlink(tmp)
    err = out.stderr.decode("utf-8", "replace")
    if out.returncode != 0:
        if wav:
            raise AudioError(broken_wav)
        if "matches no streams" in err:
            raise AudioError(f"Could not read {name} as audio: it has no audio track.")
        raise AudioError(f"Could not read {name} as audio: it is not a sound file any decoder here understands "
                         "(or it is corrupt). Use WAV, FLAC, OGG, MP3, M4A or WebM.")
    data = np.frombuffer(out.stdout[: len(out.stdout) // 4 * 4], dtype="<f4").astype(np.float32)
    if data.size == 0:
        if "Duration: 00:00:00.00" in err or "Output file is empty" in err:
            raise AudioError(f"{name} has no samples (zero length).")
        raise AudioError(f"Could not read {name} as audio: ffmpeg found an audio track but could not decode any "
                         "samples from it (the file may be truncated or corrupt).")
    m = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", err)
    seconds = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else data.size / TARGET_SR
    return Decoded(data, TARGET_SR, max(seconds, data.size / TARGET_SR))


def _as_float(data: np.ndarray) -> np.ndarray:
    """Any numeric array -> float32, integer types scaled to [-1, 1]."""
    if data.dtype.kind == "b" or data.dtype.kind not in "iuf":
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
    """Decode and condition audio for the encoder: mono, 16 kHz, finite, level-normalised, trimmed, capped.

    A refused clip raises a fresh :class:`AudioError` with no traceback into the decoding frames, so nothing keeps
    the decoded samples alive once the error has been reported (a stored exception would otherwise hold them)."""
    if not max_seconds > 0:
        raise ValueError("max_seconds must be positive")
    try:
        return _prepare(source, sample_rate, max_seconds, trim, normalize)
    except AudioError as exc:
        message = str(exc)
    raise AudioError(message)  # outside the except block: no __context__, no frame holding the samples


def _prepare(source: AudioInput, sample_rate: int | None, max_seconds: float, trim: bool,
             normalize: bool) -> Audio:
    decoded = decode(source, sample_rate, max_seconds)
    rate = decoded.rate
    source_rate = decoded.source_rate or rate
    if not MIN_SAMPLE_RATE <= source_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"Unsupported sample rate {source_rate} Hz (expected 4 kHz to 384 kHz).")
    if decoded.samples.size == 0:
        raise AudioError("The audio has no samples (zero length).")
    notices: list[str] = list(decoded.notices)
    if decoded.stats is not None:  # measured (and NaN/Inf replaced) while reading
        mono, levels = decoded.samples, decoded.stats
    else:
        levels = Levels()
        mono = levels.add(to_mono(decoded.samples), inplace=False)
    if levels.nonfinite:
        if levels.nonfinite == levels.n:
            raise AudioError("The audio contains only NaN/Inf values.")
        notices.append(f"Replaced {levels.nonfinite} NaN/Inf samples with silence.")
    cap = int(max_seconds * rate)
    if mono.size > cap or decoded.seconds > max_seconds + 0.05:
        length = max(decoded.seconds, mono.size / rate)
        notices.append(f"Audio is {_duration(length)} long; only the first {max_seconds:g} s are used.")
        mono = mono[:cap]
    peak = levels.peak
    if peak > 1.001:
        notices.append(f"Sample values go beyond ±1 (peak {peak:.3g}): the level was rescaled.")
    elif peak >= 0.999 and levels.clipped > 0.01 * levels.n:
        notices.append("The recording is clipped (too loud); results may suffer.")
    if peak < 1e-4:
        raise AudioError("The audio is silent: nothing to classify. Record closer to the microphone.")
    wav = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if rate != TARGET_SR:
        wav = AF.resample(wav, resampling_rate(rate), TARGET_SR)
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
    return Audio(wav=wav, sample_rate=TARGET_SR, source_rate=source_rate, notices=notices)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


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
