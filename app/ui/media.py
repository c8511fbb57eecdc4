"""Uploads the front end cannot decode by itself: WebM/M4A/AAC... are converted with ffmpeg when it is there.

``app.audio`` reads WAV, FLAC, OGG and MP3 through libsndfile. Browsers and phones also produce other formats;
:func:`readable` hands those to ffmpeg (16 kHz mono WAV bytes, at most :data:`MAX_SECONDS`), so the engine gets
something it can read, and a clear message when it cannot.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import soundfile as sf

from ..audio import AudioError

MAX_SECONDS = 35  # a little more than the engine ever uses
FFMPEG_TIMEOUT_S = 30


def readable(path: str | Path) -> str | bytes:
    """``path`` itself if libsndfile can read it, else WAV bytes converted by ffmpeg."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"File not found: {path.name}")
    try:
        sf.info(str(path))
        return str(path)
    except Exception:  # not something libsndfile knows: try ffmpeg below
        pass
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(f"Could not read {path.name} as audio. Use WAV, FLAC, OGG or MP3 (ffmpeg is not installed "
                         "on this server, so other formats cannot be converted).")
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-t", str(MAX_SECONDS),
           "-vn", "-ac", "1", "-ar", "16000", "-f", "wav", "pipe:1"]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(f"Converting {path.name} took too long; please upload a shorter WAV file.") from None
    if out.returncode != 0 or len(out.stdout) <= 44:
        raise AudioError(f"Could not read {path.name} as audio: it is not a sound file any decoder here "
                         "understands. Use WAV, FLAC, OGG, MP3, M4A or WebM.")
    return out.stdout
