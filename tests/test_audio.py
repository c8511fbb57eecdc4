"""The audio front end: formats, rates, channels, dtypes and bad input give clean audio or a clear AudioError."""
import io

import numpy as np
import pytest
import soundfile as sf

from app.encoder.audio import AudioError, prepare

from .conftest import tone_clip


def _wav_bytes(x, sr, fmt="WAV", subtype=None):
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
def test_resamples_to_16k(sr):
    x = tone_clip("low", seconds=1.0, sr=sr)
    a = prepare((sr, x))
    assert a.sample_rate == 16000 and a.source_rate == sr
    assert abs(a.seconds - 1.0) < 0.15  # trimming may shave the faded edges


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64])
def test_dtypes_give_same_level(dtype):
    x = tone_clip("high")
    arr = (x * 32767).astype(dtype) if np.issubdtype(dtype, np.integer) else x.astype(dtype)
    if dtype == np.int32:
        arr = (x * 2**31 * 0.99).astype(np.int32)
    a = prepare((16000, arr))
    assert a.wav.dtype.is_floating_point
    assert 0.05 < float(a.wav.pow(2).mean().sqrt()) < 0.2  # normalised to about -20 dBFS


def test_stereo_both_layouts():
    x = tone_clip("chirp")
    for arr in (np.stack([x, x], 1), np.stack([x, x], 0)):
        a = prepare((16000, arr))
        assert a.wav.ndim == 1 and a.wav.numel() > 8000


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_formats_from_files(tmp_path, fmt):
    p = tmp_path / f"clip ä ü {fmt}.{fmt.lower()}"
    p.write_bytes(_wav_bytes(tone_clip("low"), 16000, fmt))
    assert prepare(p).wav.numel() > 8000


def test_caps_long_audio_with_notice():
    x = np.tile(tone_clip("low", seconds=1.0), 40)
    a = prepare((16000, x), max_seconds=30)
    assert a.seconds <= 30.01
    assert any("first 30 s" in n for n in a.notices)


def test_nan_replaced_with_notice():
    x = tone_clip("low")
    x[100:200] = np.nan
    a = prepare((16000, x))
    assert np.isfinite(a.wav.numpy()).all()
    assert any("NaN" in n for n in a.notices)


def test_short_clip_padded():
    a = prepare((16000, tone_clip("high", seconds=0.05)))
    assert a.wav.numel() >= 1600
    assert any("short" in n for n in a.notices)


def test_trims_silence():
    x = np.concatenate([np.zeros(16000, np.float32), tone_clip("low"), np.zeros(16000, np.float32)])
    a = prepare((16000, x))
    assert a.seconds < 1.2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, I am text"), "Could not read"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200)), "Could not read"),
        (lambda p: p.write_bytes(_wav_bytes(tone_clip("low"), 16000)[:30]), "Could not read"),
        (lambda p: p.write_bytes(_wav_bytes(np.zeros(16000, np.float32), 16000)), "silent"),
        (lambda p: p.write_bytes(_wav_bytes(np.zeros(0, np.float32), 16000)), "no samples"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, make, message):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=message):
        prepare(p)


def test_missing_file_and_all_nan():
    with pytest.raises(AudioError, match="not found"):
        prepare("/nonexistent/clip.wav")
    with pytest.raises(AudioError, match="NaN"):
        prepare((16000, np.full(1000, np.nan, np.float32)))
    with pytest.raises(AudioError, match="sample rate"):
        prepare(np.zeros(10, np.float32))
