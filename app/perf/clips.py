"""Inputs for the benchmark and the load test: a 1 s clip and a 3 x 5 labelled set, bundled or synthetic."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import soundfile as sf

from ..settings import EXAMPLES_DIR, ROOT, TRAIN_SET_DIR


def one_second_clip() -> tuple[bytes, str]:
    """A 1 s WAV: the first bundled example cut or padded to 1 s, else a synthetic voiced sweep."""
    clips = sorted(EXAMPLES_DIR.glob("*.wav"))
    if clips:
        x, sr = sf.read(clips[0], dtype="float32", always_2d=True)
        x = x.mean(1)
        x = np.pad(x, (0, max(0, sr - x.size)))[:sr]
        src = clips[0].name
    else:
        sr = 16_000
        t = np.arange(sr) / sr
        x = (0.3 * np.sin(2 * np.pi * (120 + 60 * t) * t) * np.hanning(sr)).astype(np.float32)
        src = "synthetic sweep"
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV")
    return buf.getvalue(), src


def train_set() -> tuple[list[tuple[Any, str]], str]:
    """3 classes x 5 clips: the bundled train set if present, else synthetic vowels at three pitches."""
    folder = TRAIN_SET_DIR
    classes = sorted(p for p in folder.iterdir() if p.is_dir())[:3] if folder.is_dir() else []
    if len(classes) == 3 and all(len(list(c.glob("*.wav"))) >= 5 for c in classes):
        return [(p, c.name) for c in classes for p in sorted(c.glob("*.wav"))[:5]], str(folder.relative_to(ROOT))
    rng = np.random.default_rng(0)
    items = []
    for label, f0 in (("low", 110.0), ("mid", 180.0), ("high", 260.0)):
        for _ in range(5):
            t = np.arange(12_000) / 16_000
            f = f0 * (1 + 0.03 * rng.standard_normal())
            x = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 8)) * np.hanning(t.size)
            items.append(((16_000, (0.3 * x / np.abs(x).max()).astype(np.float32)), label))
    return items, "synthetic harmonic tones (no bundled train set found)"


FIVE_WORDS = ("yes", "no", "up", "down", "stop")


def five_by_five() -> tuple[list[tuple[Any, str]], str]:
    """5 classes x 5 clips for the few-shot timing: Speech Commands' yes/no/up/down/stop (one take per speaker) from
    ``$SPEECHPROMPT_DATA`` (or ../shared/data) if present, else the bundled set's clips under five labels."""
    import os
    from pathlib import Path

    root = Path(os.environ.get("SPEECHPROMPT_DATA") or ROOT.parent / "shared" / "data") / "speech_commands"
    if all(len(list((root / w).glob("*.flac"))) >= 5 for w in FIVE_WORDS):
        items = []
        for w in FIVE_WORDS:
            seen: set[str] = set()
            for p in sorted((root / w).glob("*.flac")):
                spk = p.name.split("_nohash_")[0]
                if spk not in seen and len(seen) < 5:
                    seen.add(spk)
                    items.append((p, w))
        return items, "Speech Commands yes/no/up/down/stop, 5 speakers each"
    bundled, src = train_set()
    clips = [c for c, _ in bundled]
    return [(clips[(5 * i + j) % len(clips)], w) for i, w in enumerate(FIVE_WORDS) for j in range(5)], \
        f"{src}, its clips under five labels"
