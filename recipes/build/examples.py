"""Regenerate the UI's bundled example clips with espeak-ng (offline, deterministic).

    python -m recipes.build.examples            # writes assets/examples/*.wav, examples.json and train_set/

- ``assets/examples/*.wav``: a few short clips one click away in the app (English digits, sentences in German,
  French and Spanish), listed with captions in ``assets/examples/examples.json``.
- ``assets/examples/train_set/{yes,no,stop}/*.wav``: a tiny labelled set (several voices per word) that the
  "Train a prompt" view can load, so a class can train a prompt without recording anything.

Every clip is 16 kHz mono 16-bit PCM, well under 100 KB. Needs the Debian package ``espeak-ng``.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from app.settings import ROOT

OUT = ROOT / "assets" / "examples"
SR = 16_000
MAX_BYTES = 100_000

# (file stem, text, espeak voice, words per minute, caption, the task the clip shows off (the Try view switches to
# it), the label that task should give). The language prompt is weak, so its sentences were chosen, not faked:
# each candidate spoken by 5-6 espeak-ng voice variants at 150 and 165 wpm and classified by the shipped prompt.
# Backbone v1 (language test accuracy 0.55): of five sentences per language, German "Ich möchte bitte ein Glas
# Wasser." was right for 10 of 10 pairs and Spanish "Muchas gracias por su ayuda." 11 of 12 ("Guten Morgen..." 6 of
# 10, "Hola, ¿dónde está...?" 3 of 12; both came out 'fr' in the app). Backbone v2 (816aacc732cf6e6e; language test
# accuracy 0.70, 0.57 on real volunteers): "Muchas gracias..." came out 'fr' (5 of 12 pairs, its clip 'fr'); of six
# Spanish sentences (voices es, es+f3, +m3, +f4, +m7, es-419) "Buenos días, ¿cómo está usted?", "Hola, ¿dónde
# está...?" and "Quiero aprender a hablar español." were right for 12 of 12, the other three 3-5 of 12 (one mostly
# over 100 KB); the first is kept. German "Ich möchte..." stays (its clip right, 0.97, but 6 of 12 pairs: de+f3,
# de+f2, and de+m3, de+m7 at 165 wpm go to 'en'; "Wo ist der Bahnhof, bitte?" 12 of 12); French 10 of 10 (5 voice
# variants), digits and commands 10 of 10. Backbone v3 (421cd0a4a7927cff, Whisper base units; language test accuracy
# 0.77, 0.67 on real volunteers) takes German espeak voices for English: of voices de, de+f3, +f2, +m3, +m7 at 150
# and 165 wpm, "Ich möchte bitte ein Glas Wasser." was right for 3 of 10 (its clip 'en'), "Wo ist der Bahnhof,
# bitte?" 2, "Guten Morgen, wie geht es Ihnen?" 1, "Ich habe heute keine Zeit." 5 (its clip, voice de at 150 wpm,
# right): the last is kept, and the Try view's figures say how far to trust it. French and Spanish stay (right).
# tests/test_shipped.py checks every featured clip's label.
CLIPS = [
    ("seven_en", "seven", "en-us", 150, "“seven” (English)", "digits", "7"),
    ("three_en", "three", "en-gb+f3", 150, "“three” (English)", "digits", "3"),
    ("yes_en", "yes", "en-us+m3", 150, "“yes” (English)", "commands", "yes"),
    ("sentence_de", "Ich habe heute keine Zeit.", "de", 150, "German sentence", "language", "de"),
    ("sentence_fr", "Bonjour, je voudrais un café.", "fr", 165, "French sentence", "language", "fr"),
    ("sentence_es", "Buenos días, ¿cómo está usted?", "es", 150, "Spanish sentence", "language", "es"),
]
TRAIN_WORDS = ("yes", "no", "stop")
TRAIN_VOICES = [("en-us", 150), ("en-gb+f3", 140), ("en-us+m7", 170), ("en+f4", 155), ("en-gb-x-rp+m3", 130)]


def speak(text: str, voice: str, wpm: int, pitch: int = 50) -> np.ndarray:
    """espeak-ng -> 16 kHz mono float32 with 80 ms of silence either side."""
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True, timeout=60).stdout
    data, rate = sf.read(io.BytesIO(out), dtype="float32", always_2d=True)
    wav = torch.from_numpy(data.mean(axis=1))
    if rate != SR:
        wav = AF.resample(wav, rate, SR)
    pad = np.zeros(int(0.08 * SR), dtype=np.float32)
    return np.concatenate([pad, wav.numpy(), pad])


def write(path: Path, wav: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.9 * wav / max(float(np.abs(wav).max()), 1e-6), SR, subtype="PCM_16")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes; keep example clips under {MAX_BYTES}.")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install -y espeak-ng).")
    listing = []
    for stem, text, voice, wpm, caption, task, label in CLIPS:
        write(OUT / f"{stem}.wav", speak(text, voice, wpm))
        listing.append({"file": f"{stem}.wav", "text": text, "voice": voice, "caption": caption, "task": task,
                        "label": label})
    (OUT / "examples.json").write_text(json.dumps(listing, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    train = OUT / "train_set"
    if train.exists():
        shutil.rmtree(train)
    for word in TRAIN_WORDS:
        for i, (voice, wpm) in enumerate(TRAIN_VOICES):
            write(train / word / f"{word}_{i}.wav", speak(word, voice, wpm, pitch=40 + 5 * i))
    total = sum(p.stat().st_size for p in OUT.rglob("*.wav"))
    print(f"wrote {len(CLIPS)} examples and {len(TRAIN_WORDS) * len(TRAIN_VOICES)} training clips "
          f"({total / 1024:.0f} KB) to {OUT}")


if __name__ == "__main__":
    main()
