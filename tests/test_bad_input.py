"""Bad and unusual audio through the three doors: the Python API, the command line and the web API.

Every case gets a specific message (an error, or a notice when the clip is still usable); nothing shows a
traceback; the web server answers a good clip after every bad one; a 10-minute file is capped without its memory.
All files are generated in temporary folders (ffmpeg makes the MP3/M4A/OGG/WebM ones; skipped without it).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.encoder import audio
from app.encoder.audio import AudioError, prepare

from .conftest import SR, tone_clip
from .ui_engine import save_engine, ui_engine

ROOT = Path(__file__).resolve().parent.parent
HAVE_FFMPEG = shutil.which("ffmpeg") is not None
TASK = "tones"


def _tone(seconds=0.8, sr=SR, kind="chirp"):
    return tone_clip(kind, seed=3, seconds=seconds, sr=sr)


def _ffmpeg(src: Path, dst: Path, *codec: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *codec, str(dst)], check=True)


# name -> (how to make it, expected error fragment). Each must be refused with that message.
def _bad_cases() -> dict[str, tuple]:
    good = _tone()

    def wav_bytes(x, sr=SR, subtype="PCM_16"):
        import io

        buf = io.BytesIO()
        sf.write(buf, x, sr, format="WAV", subtype=subtype)
        return buf.getvalue()

    nan = good.copy()
    nan[:] = np.nan
    return {
        "empty.wav": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        "zero length.wav": (lambda p: p.write_bytes(wav_bytes(np.zeros(0, np.float32))), "has no samples (zero length)"),
        "silence.wav": (lambda p: p.write_bytes(wav_bytes(np.zeros(SR, np.float32))), "silent"),
        "notes.wav": (lambda p: p.write_text("Dear diary, this is not a recording.\n" * 20), "it is a text file"),
        "photo.wav": (lambda p: p.write_bytes(_png()), "it is a PNG image"),
        "header cut.wav": (lambda p: p.write_bytes(wav_bytes(good)[:30]), "truncated or corrupt"),
        "header only.wav": (lambda p: p.write_bytes(wav_bytes(good)[:44]), "truncated"),
        "noise bytes.wav": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(20_000)),
                            "not a sound file any decoder here understands"),
        "all nan.wav": (lambda p: p.write_bytes(wav_bytes(nan, subtype="FLOAT")), "only NaN/Inf"),
    }


def _png() -> bytes:
    """A real (tiny) PNG image."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# name -> (how to make it, expected notice fragment or None). Each must be classified.
def _ok_cases() -> dict[str, tuple]:
    def write(x, sr=SR, subtype="PCM_16"):
        return lambda p: sf.write(p, x, sr, subtype=subtype)

    x = _tone()
    nan, inf, loud = x.copy(), x.copy(), np.clip(x * 6, -1, 1)
    nan[1000:1100] = np.nan
    inf[2000:2010] = np.inf
    cases = {
        "rate 8k.wav": (write(_tone(sr=8000), 8000), None),
        "rate 44k1.wav": (write(_tone(sr=44100), 44100), None),
        "rate 48k.wav": (write(_tone(sr=48000), 48000), None),
        "stereo.wav": (write(np.stack([x, 0.5 * x], 1)), None),
        "int16.wav": (write(x, subtype="PCM_16"), None),
        "float32.wav": (write(x, subtype="FLOAT"), None),
        "float64.wav": (write(x, subtype="DOUBLE"), None),
        "some nan.wav": (write(nan, subtype="FLOAT"), "Replaced 100 NaN/Inf samples"),
        "some inf.wav": (write(inf, subtype="FLOAT"), "Replaced 10 NaN/Inf samples"),
        "clipped.wav": (write(loud, subtype="FLOAT"), "clipped"),
        "fifty ms.wav": (write(_tone(seconds=0.05)), "Very short clip"),
        "ten minutes.wav": (write(np.resize((x * 32767).astype(np.int16), 600 * SR)), "only the first 30 s"),
        "half cut.wav": (lambda p: (sf.write(p, x, SR), _cut_half(p)), "looks truncated"),
        "a clip with spaces ünïcødé 日本.wav": (write(x), None),
        "clip.flac": (lambda p: sf.write(p, x, SR, format="FLAC"), None),
    }
    if HAVE_FFMPEG:
        for ext, codec in [("mp3", ["-c:a", "libmp3lame"]), ("m4a", ["-c:a", "aac"]), ("ogg", ["-c:a", "libvorbis"]),
                           ("webm", ["-c:a", "libopus"])]:
            cases[f"clip.{ext}"] = (lambda p, codec=codec: _encoded(p, codec), None)
    return cases


def _cut_half(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _encoded(p: Path, codec: list[str]) -> None:
    src = p.with_suffix(".src.wav")
    sf.write(src, _tone(), SR)
    _ffmpeg(src, p, *codec)
    src.unlink()


BAD = _bad_cases()
OK = _ok_cases()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad input")
    out = {}
    for name, (make, _) in {**BAD, **OK}.items():
        p = root / name
        make(p)
        out[name] = p
    return out


@pytest.fixture(scope="module")
def engine():
    return ui_engine()


# ------------------------------------------------------------------ (a) the Python API


@pytest.mark.parametrize("name", sorted(BAD))
def test_python_api_refuses_with_a_specific_message(engine, files, name):
    with pytest.raises(AudioError, match=_re(BAD[name][1])) as err:
        engine.analyze(files[name], [TASK])
    assert str(Path(files[name]).parent) not in str(err.value), "messages name the file, not the server's folders"
    with pytest.raises(AudioError, match=_re(BAD[name][1])):
        prepare(str(files[name]))
    with pytest.raises(AudioError, match=_re(BAD[name][1])):
        prepare(files[name].read_bytes())  # the same bytes without a file name


@pytest.mark.parametrize("name", sorted(OK))
def test_python_api_accepts_with_notices(engine, files, name):
    a = engine.analyze(files[name], [TASK])
    assert a.predictions[0].label in engine.prompts[TASK].labels
    assert a.audio.sample_rate == 16000 and a.audio.wav.ndim == 1 and np.isfinite(a.audio.wav.numpy()).all()
    assert a.audio.seconds <= 30.0
    fragment = OK[name][1]
    if fragment:
        assert any(fragment in n for n in a.notices), a.notices
    elif not name.startswith("rate"):
        assert a.notices == [], a.notices


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_python_api_arrays_of_every_dtype(engine, dtype):
    x = _tone()
    arr = (x * 32767).astype(dtype) if dtype == np.int16 else x.astype(dtype)
    ref = engine.analyze((SR, x), [TASK]).predictions[0]
    for source in [(SR, arr), (arr, SR)]:
        pred = engine.analyze(source, [TASK]).predictions[0]
        assert pred.label == ref.label and float(abs(pred.probs - ref.probs).max()) < 1e-3
    assert prepare(arr, SR).wav.dtype.is_floating_point


def test_python_api_nan_inf_and_unscaled_arrays():
    x = _tone().astype(np.float64)
    x[10:20], x[30:40] = np.nan, -np.inf
    a = prepare((SR, x))
    assert np.isfinite(a.wav.numpy()).all() and any("Replaced 20 NaN/Inf" in n for n in a.notices)
    a = prepare((SR, _tone() * 32767.0))  # float samples in int16 units
    assert any("beyond ±1" in n for n in a.notices) and float(a.wav.abs().max()) <= 0.99 + 1e-6
    for bad, msg in [(np.full(800, np.inf, np.float32), "only NaN/Inf"), (np.zeros(0, np.float32), "no samples"),
                     (np.array(["a", "b"]), "must be numbers"), (np.zeros((2, 3, 4), np.float32), "1-D or 2-D")]:
        with pytest.raises(AudioError, match=msg):
            prepare((SR, bad))
    with pytest.raises(AudioError, match="Unsupported sample rate"):
        prepare((100, _tone()))


def test_ten_minute_file_is_capped_and_memory_stays_flat(files):
    """Only the first 30 s (+1 s) are decoded: the 10-minute file costs about what a 30 s one does."""
    path = files["ten minutes.wav"]
    assert path.stat().st_size > 19_000_000
    prepare(str(files["int16.wav"]))  # warm-up (imports, resampler caches)
    tracemalloc.start()
    try:
        a = prepare(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert a.seconds <= 30.0 and any("10 min 00 s long; only the first 30 s" in n for n in a.notices)
    full_decode = 600 * SR * 4  # float32 samples of the whole file: 38 MB
    assert peak < 12 * 2**20 < full_decode, f"peak {peak / 2**20:.1f} MB"


def test_ffmpeg_missing_or_slow_gives_a_clear_message(files, monkeypatch):
    if not HAVE_FFMPEG:
        pytest.skip("needs ffmpeg to make the M4A file")
    m4a = files["clip.m4a"]
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="need ffmpeg, which is not installed"):
        prepare(str(m4a))
    monkeypatch.undo()
    monkeypatch.setattr(audio, "FFMPEG_TIMEOUT_S", 1e-4)
    with pytest.raises(AudioError, match="took longer than"):
        prepare(str(m4a))


def test_other_non_audio_files(tmp_path):
    for name, data, msg in [("a.wav", b"%PDF-1.7\n" + bytes(100), "PDF document"),
                            ("b.wav", b"PK\x03\x04" + bytes(100), "ZIP archive"),
                            ("c.wav", b"\xff\xd8\xff\xe0" + bytes(100), "JPEG image"),
                            ("d.wav", "<html><body>ünïcødé</body></html>".encode(), "text file")]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(AudioError, match=msg):
            prepare(p)
    with pytest.raises(AudioError, match="is a folder"):
        prepare(tmp_path)
    if HAVE_FFMPEG:
        video = tmp_path / "silent film.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.2",
                        str(video)], check=True)
        with pytest.raises(AudioError, match="no audio track"):
            prepare(video)


# ------------------------------------------------------------------ (b) the command line


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return save_engine(tmp_path_factory.mktemp("engine"))


def _cli(*args):
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_bad_files_one_line_each(folders, files):
    backbone, prompts = folders
    names = sorted(BAD)
    p = _cli("predict", "--task", TASK, *(files[n] for n in names), "--backbone", backbone, "--prompts", prompts)
    assert p.returncode == 1 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr and len(lines) == len(names), p.stderr
    for name, line in zip(names, lines):
        assert line.startswith(f"error: {files[name]}: ") and BAD[name][1] in line, line
    one = _cli("predict", "--task", TASK, files["notes.wav"], "--backbone", backbone, "--prompts", prompts)
    assert one.returncode == 1 and len(one.stderr.strip().splitlines()) == 1


def test_cli_unusual_files_classified_with_notices(folders, files):
    backbone, prompts = folders
    names = sorted(OK)
    p = _cli("predict", "--task", TASK, *(files[n] for n in names), "--json", "--backbone", backbone,
             "--prompts", prompts)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.strip().splitlines()]
    assert [r["file"] for r in rows] == [str(files[n]) for n in names]
    for name, row in zip(names, rows):
        assert row["label"] in ui_engine().prompts[TASK].labels
        if OK[name][1]:
            assert any(OK[name][1] in n for n in row["notices"]), (name, row["notices"])


# ------------------------------------------------------------------ (c) the web API


@pytest.fixture(scope="module")
def client(engine):
    from gradio_client import Client

    from app.ui import build_ui, launch_options

    from .ui_engine import free_port

    demo = build_ui(engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False, analytics_enabled=False)
    finally:
        demo.close()


def _still_serving(client, files):
    from gradio_client import handle_file

    out = client.predict(handle_file(str(files["int16.wav"])), TASK, api_name="/classify")
    assert out["task"] == TASK and out["notices"] == []


@pytest.mark.parametrize("name", sorted(BAD))
def test_web_api_refuses_then_keeps_serving(client, files, name):
    from gradio_client import handle_file

    with pytest.raises(Exception, match=_re(BAD[name][1])) as err:
        client.predict(handle_file(str(files[name])), TASK, api_name="/classify")
    msg = str(err.value)
    assert "Traceback" not in msg and "/tmp" not in msg and 'File "' not in msg, msg
    _still_serving(client, files)


@pytest.mark.parametrize("name", sorted(OK))
def test_web_api_accepts_with_notices(client, files, name):
    from gradio_client import handle_file

    out = client.predict(handle_file(str(files[name])), TASK, api_name="/classify")
    assert out["task"] == TASK and out["label"] in ui_engine().prompts[TASK].labels
    if OK[name][1]:
        assert any(OK[name][1] in n for n in out["notices"]), out["notices"]
    every = client.predict(handle_file(str(files[name])), api_name="/classify_all")
    assert [r["task"] for r in every] == ui_engine().tasks and every[0]["notices"] == out["notices"]


def test_web_api_no_file_and_bad_task(client, files):
    from gradio_client import handle_file

    for args, msg in [((None, TASK), "Send an audio file"), ((handle_file(str(files["int16.wav"])), ""),
                                                               "Give a task id"),
                      ((handle_file(str(files["int16.wav"])), "../../etc/passwd"), "Invalid task id")]:
        with pytest.raises(Exception, match=msg):
            client.predict(*args, api_name="/classify")
    with pytest.raises(Exception, match="Send an audio file"):
        client.predict(None, api_name="/classify_all")
    _still_serving(client, files)


def _re(fragment: str) -> str:
    import re

    return re.escape(fragment)
