"""Pretraining corpus for our compact speech unit LM: synthetic multilingual speech plus real training audio.

    python -m recipes.build.corpus --out work/corpus --hours 20 --seed 0 [--workers 1]

Writes synth/NNN/IIIIII.flac clips (each decided by (seed, i)), synth.csv (the journal that makes runs resumable),
manifest.csv (every clip, real ones referenced in place) and summary.txt under --out (keep it out of git).
Details: docs/RECIPES.md#corpus.
"""
from __future__ import annotations

import argparse
import csv
import fcntl
import functools
import io
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from recipes.common import splits, synth
from recipes.common.splits import VOICE_SPLITS

SR = synth.SAMPLE_RATE
MIN_SECONDS, MAX_SECONDS = 1.0, 12.0
PITCH = (20, 90)
RATE = (110, 260)
AUGMENT_P = 0.5
SHARD = 1000

#: Relative share of synthetic clips per language: English (most tasks) 3, the other task languages 2
#: (language ID: de es fr it ru; commands: ar lt), every other language 1.
LANG_WEIGHTS: dict[str, float] = {code: 1.0 for code in synth.LANGUAGES}
LANG_WEIGHTS.update({"en": 3.0, "de": 2.0, "es": 2.0, "fr": 2.0, "it": 2.0, "ru": 2.0, "ar": 2.0, "lt": 2.0})

COLUMNS = ["path", "source", "dataset", "lang", "voice", "variant", "pitch", "rate", "augment", "seconds",
           "speaker", "text"]


@dataclass
class Clip:
    """One manifest row."""

    path: str
    source: str
    dataset: str
    lang: str
    voice: str = ""
    variant: str = ""
    pitch: str = ""
    rate: str = ""
    augment: str = ""
    seconds: float = 0.0
    speaker: str = ""
    text: str = ""


# --------------------------------------------------------------------------------------------------------------
# Synthetic clips
# --------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def seconds_per_word(lang: str) -> float:
    """Seconds per word of the language's default voice at 175 words/min (deterministic calibration)."""
    rng = np.random.default_rng(12345)
    words = secs = 0.0
    for text in synth.sentences(lang, 3, rng, 8, 8):
        secs += synth.synthesize(text, lang).size / SR
        words += 8
    return secs / words


@functools.lru_cache(maxsize=1)
def corpus_variants() -> tuple[str | None, ...]:
    """Voice variants the corpus uses: the task recipes' *train* variants that are installed (None = default).

    The val/test variants of :data:`recipes.common.splits.VOICE_SPLITS` stand for unseen speakers in task
    evaluation, so the backbone never hears them in pretraining either (as real val/test speakers are left out).
    """
    installed = set(synth.espeak_variants(natural_only=True))
    held_out = set(VOICE_SPLITS["val"]) | set(VOICE_SPLITS["test"])
    return tuple(v for v in VOICE_SPLITS["train"] if (v is None or v in installed) and v not in held_out)


def clip_path(idx: int) -> str:
    """Relative path of synthetic clip ``idx``."""
    return f"synth/{idx // SHARD:03d}/{idx:06d}.flac"


def make_clip(seed: int, idx: int) -> tuple[Clip, np.ndarray]:
    """Synthesize clip ``idx`` of the corpus for ``seed``: the same (seed, idx) always gives the same clip."""
    rng = np.random.default_rng([seed, idx, 0])  # choices
    text_rng = np.random.default_rng([seed, idx, 1])  # words
    aug_rng = np.random.default_rng([seed, idx, 2])  # augmentation
    langs = list(LANG_WEIGHTS)
    w = np.array([LANG_WEIGHTS[c] for c in langs])
    lang = langs[int(rng.choice(len(langs), p=w / w.sum()))]
    voices = synth.LANGUAGES[lang].voices
    voice = voices[int(rng.integers(len(voices)))]
    variants = corpus_variants()
    variant = variants[int(rng.integers(len(variants)))]
    pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
    rate = int(rng.integers(RATE[0], RATE[1] + 1))
    target = float(rng.uniform(MIN_SECONDS, MAX_SECONDS))
    do_aug = bool(rng.random() < AUGMENT_P)

    n_words = max(1, round(target * (rate / 175.0) / seconds_per_word(lang)))
    for attempt in range(4):
        text = synth.sentence(lang, n_words, text_rng)
        wav = synth.synthesize(text, voice, variant, pitch, rate)
        secs = wav.size / SR
        if MIN_SECONDS <= secs <= MAX_SECONDS:
            break
        if secs > MAX_SECONDS:
            n_words = max(1, min(n_words - 1, int(n_words * target / secs)))
        else:
            n_words = max(n_words + 1, int(np.ceil(n_words * target / max(secs, 0.1))))
    if wav.size > MAX_SECONDS * SR:  # still too long: cut with a 50 ms fade-out
        wav = wav[: int(MAX_SECONDS * SR)].copy()
        wav[-800:] *= np.linspace(1, 0, 800, dtype=np.float32)
    if wav.size < MIN_SECONDS * SR:  # still too short: pad with silence
        wav = np.pad(wav, (0, int(MIN_SECONDS * SR) - wav.size))
    log: list[str] = []
    if do_aug:
        wav, log = synth.augment_with_log(wav, aug_rng)
    wav = synth.limit(wav)
    clip = Clip(path=clip_path(idx), source="synth", dataset="espeak", lang=lang, voice=voice,
                variant=variant or "", pitch=str(pitch), rate=str(rate), augment="+".join(log),
                seconds=round(wav.size / SR, 3), speaker=f"{voice}+{variant or 'default'}", text=text)
    return clip, wav


def _make_encoded(args: tuple[int, int]) -> tuple[int, Clip, bytes]:
    seed, idx = args
    clip, wav = make_clip(seed, idx)
    buf = io.BytesIO()
    sf.write(buf, wav, SR, format="FLAC", subtype="PCM_16")
    return idx, clip, buf.getvalue()


# --------------------------------------------------------------------------------------------------------------
# Real clips
# --------------------------------------------------------------------------------------------------------------

def real_clips(seed: int = 0) -> list[Clip]:
    """Manifest rows for every real training-split recording (durations read from the files)."""
    out = []
    for path, ds, label, spk in splits.real_training_audio(seed):
        info = sf.info(str(path))
        out.append(Clip(path=str(Path(path).resolve()), source="real", dataset=ds,
                        lang=splits.language_of(ds, label) if label != "_silence_" else "noise",
                        seconds=round(info.frames / info.samplerate, 3), speaker=f"{ds}:{spk}"))
    return out


# --------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------

def _read_journal(path: Path) -> dict[int, Clip]:
    done: dict[int, Clip] = {}
    if not path.exists():
        return done
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                idx = int(row.pop("idx"))
                row["seconds"] = float(row["seconds"])
                done[idx] = Clip(**{k: row.get(k, "") for k in COLUMNS})
            except (KeyError, ValueError, TypeError):
                continue  # a torn last line after a crash
    return done


def _write_manifest(out: Path, real: list[Clip], synth_rows: dict[int, Clip]) -> None:
    tmp = out / "manifest.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for c in real:
            w.writerow(asdict(c))
        for idx in sorted(synth_rows):
            w.writerow(asdict(synth_rows[idx]))
    tmp.replace(out / "manifest.csv")


def summary(real: list[Clip], synth_rows: dict[int, Clip]) -> str:
    """Hours per language (synthetic / real) and totals."""
    per: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    per_ds: dict[str, float] = defaultdict(float)
    for c in synth_rows.values():
        per[c.lang][0] += c.seconds
    for c in real:
        per[c.lang][1] += c.seconds
        per_ds[c.dataset] += c.seconds
    s_tot = sum(v[0] for v in per.values())
    r_tot = sum(v[1] for v in per.values())
    n_aug = sum(1 for c in synth_rows.values() if c.augment)
    speakers = {c.speaker for c in synth_rows.values()}
    lines = [f"{'lang':6s} {'synth h':>8s} {'real h':>8s} {'total h':>8s}"]
    for lang in sorted(per, key=lambda k: -(per[k][0] + per[k][1])):
        s, r = per[lang]
        lines.append(f"{lang:6s} {s / 3600:8.3f} {r / 3600:8.3f} {(s + r) / 3600:8.3f}")
    lines += [
        f"languages: {len([k for k in per if k != 'noise'])}",
        f"synthetic: {len(synth_rows)} clips, {s_tot / 3600:.3f} h, {n_aug} augmented "
        f"({100 * n_aug / max(1, len(synth_rows)):.0f}%), {len(speakers)} voice+variant combinations",
        f"real:      {len(real)} clips, {r_tot / 3600:.3f} h ("
        + ", ".join(f"{k} {v / 3600:.3f} h" for k, v in sorted(per_ds.items())) + ")",
        f"total:     {(s_tot + r_tot) / 3600:.3f} h",
    ]
    return "\n".join(lines)


def _log(msg: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S"), msg, flush=True)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def build(out: Path, hours: float, seed: int = 0, workers: int = 1, real: bool = True,
          log_every: float = 30.0) -> tuple[list[Clip], dict[int, Clip]]:
    """Make (or finish) the corpus in ``out``; returns the real rows and the synthetic rows by index."""
    out.mkdir(parents=True, exist_ok=True)
    lock = (out / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another corpus.py is writing {out}")
    meta = out / "params.txt"
    params = (f"seed={seed}\nlanguages={','.join(f'{k}:{v:g}' for k, v in LANG_WEIGHTS.items())}\n"
              f"variants={','.join(v or 'default' for v in corpus_variants())}\n")
    if meta.exists() and meta.read_text() != params:
        raise SystemExit(f"{out} was made with other settings ({meta}); use another --out")
    meta.write_text(params)

    real_rows = real_clips(seed) if real else []
    real_s = sum(c.seconds for c in real_rows)
    target_s = hours * 3600 - real_s
    _log(f"real training audio: {len(real_rows)} clips, {real_s / 3600:.3f} h; "
         f"synthetic target {max(0.0, target_s) / 3600:.3f} h")

    journal_path = out / "synth.csv"
    done = {i: c for i, c in _read_journal(journal_path).items() if (out / c.path).exists()}
    new_journal = not journal_path.exists()
    journal = journal_path.open("a", newline="", encoding="utf-8")
    jw = csv.DictWriter(journal, fieldnames=["idx", *COLUMNS])
    if new_journal:
        jw.writeheader()

    rows: dict[int, Clip] = {}
    total = 0.0
    idx = 0
    made = made_s = 0.0
    t0, c0, last_log = time.time(), _cpu(), 0.0
    pool = None
    if workers > 1:
        import multiprocessing as mp  # noqa: PLC0415

        pool = mp.get_context("fork").Pool(workers)
    try:
        # resume: walk the journal in index order while it covers a prefix of the corpus
        while total < target_s and idx in done:
            rows[idx] = done[idx]
            total += done[idx].seconds
            idx += 1
        if rows:
            _log(f"resuming: {len(rows)} clips ({total / 3600:.3f} h) already written")
        batch = max(1, workers) * 8
        while total < target_s:
            todo = [i for i in range(idx, idx + batch)]
            need = [(seed, i) for i in todo if i not in done]
            if pool is not None:
                results = {r[0]: r for r in pool.map(_make_encoded, need, chunksize=1)}
            else:
                results = {}
                for a in need:
                    results[a[1]] = _make_encoded(a)
            for i in todo:
                if total >= target_s:
                    break
                if i in done:
                    clip = done[i]
                else:
                    _, clip, data = results[i]
                    dest = out / clip.path
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_suffix(".tmp")
                    tmp.write_bytes(data)
                    tmp.replace(dest)
                    jw.writerow({"idx": i, **asdict(clip)})
                    journal.flush()
                    made += 1
                    made_s += clip.seconds
                rows[i] = clip
                total += clip.seconds
                idx = i + 1
            now = time.time()
            if now - last_log >= log_every or total >= target_s:
                last_log = now
                wall, cpu = now - t0, _cpu() - c0
                speed = made_s / max(wall, 1e-9)
                eta = (target_s - total) / speed if speed > 0 else float("nan")
                _log(f"clips {len(rows)} (+{int(made)} new) | synthetic {total / 3600:.3f}/{target_s / 3600:.3f} h | "
                     f"{made_s / max(cpu, 1e-9):.1f} audio-s per CPU-s, {speed:.1f} audio-s per wall-s | "
                     f"ETA {eta / 60:.1f} min")
            if len(rows) % 500 < batch:
                _write_manifest(out, real_rows, rows)
    finally:
        if pool is not None:
            pool.terminate()
        journal.close()
    _write_manifest(out, real_rows, rows)
    text = summary(real_rows, rows)
    (out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    _log("done\n" + text)
    return real_rows, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="corpus folder (outside git), e.g. work/corpus")
    ap.add_argument("--hours", type=float, default=20.0, help="total hours, real + synthetic (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="synthesis processes (default 1)")
    ap.add_argument("--no-real", action="store_true", help="synthetic only: leave the real recordings out")
    args = ap.parse_args(argv)
    _log(f"corpus: out={args.out} hours={args.hours} seed={args.seed} workers={args.workers} "
         f"languages={len(LANG_WEIGHTS)}: {' '.join(LANG_WEIGHTS)}")
    build(args.out, args.hours, args.seed, args.workers, real=not args.no_real)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
