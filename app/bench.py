"""Benchmarks behind ``python -m app bench``: latency by stage, batching, training speed, memory.

Figures, not pass/fail: docs/BENCHMARKS.md records them with the command that produced them.
"""
from __future__ import annotations

import io
import resource
import statistics
import time
from typing import Any

import numpy as np
import soundfile as sf
import torch

from .audio import prepare
from .backbone import ROOT
from .engine import Engine, prompted_forward
from .prompts import PromptConfig, TaskInfo
from .tuning import TrainConfig, new_prompt, train_prompt

EXAMPLES = ROOT / "assets" / "examples"


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def one_second_clip() -> tuple[bytes, str]:
    """A 1 s WAV: the first bundled example cut or padded to 1 s, else a synthetic voiced sweep."""
    clips = sorted(EXAMPLES.glob("*.wav"))
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
    folder = EXAMPLES / "train_set"
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


def run_bench(backbone_dir=None, prompts_dir=None, repeats: int = 30) -> dict[str, Any]:
    t0 = time.perf_counter()
    engine = Engine.load(backbone_dir, prompts_dir)
    load_s = time.perf_counter() - t0
    if not engine.tasks:
        raise ValueError("No task prompts loaded: nothing to benchmark.")
    wav_bytes, clip_src = one_second_clip()
    task = engine.tasks[0]
    audio = prepare(wav_bytes)
    units = engine.backbone.encoder(audio.wav)
    prompt = engine.get(task)
    lm = engine.backbone.lm

    decode = _median_ms(lambda: prepare(wav_bytes), repeats)[0]
    encode = _median_ms(lambda: engine.backbone.encoder(audio.wav), repeats)[0]
    with torch.no_grad():
        out = prompted_forward(lm, [units], [prompt])
    lm_only = _median_ms(lambda: _lm_pass(lm, units, prompt), repeats)[0]
    verbalize = _median_ms(lambda: prompt.classify(out.unit_logits), repeats)[0]
    p50, p95 = _median_ms(lambda: engine.analyze(wav_bytes, [task]), repeats)
    one_task = _median_ms(lambda: engine.predict_units(units, [task]), repeats)[0]
    all_tasks = _median_ms(lambda: engine.predict_units(units, engine.tasks), repeats)[0]
    enc_lm = _median_ms(lambda: engine.predict_units(engine.backbone.encoder(audio.wav), [task]), repeats)[0]

    items, train_src = train_set()
    t = time.perf_counter()
    encoded = [(engine.encode(src)[1], label) for src, label in items]
    encode_train_s = time.perf_counter() - t
    labels = sorted({lab for _, lab in encoded})
    data = [(u, labels.index(lab)) for u, lab in encoded]
    p = new_prompt(lm, TaskInfo(id="bench", labels=labels), PromptConfig(), [u for u, _ in data])
    res = train_prompt(lm, p, data, None, TrainConfig(epochs=80, lr=2e-2, batch_size=16, target_train_acc=1.0))
    examples_per_s = len(data) * len(res.history) / max(res.seconds, 1e-9)

    return {
        "backbone": engine.backbone.id,
        "threads": torch.get_num_threads(),
        "tasks_loaded": len(engine.tasks),
        "load_seconds": round(load_s, 2),
        "clip": clip_src,
        "units_in_clip": len(units),
        "latency_ms_p50": round(p50, 2),
        "latency_ms_p95": round(p95, 2),
        "stage_ms": {"decode": round(decode, 2), "encode": round(encode, 2), "lm": round(lm_only, 2),
                     "verbalizer": round(verbalize, 3)},
        "encoder_plus_lm_ms": round(enc_lm, 2),
        "one_task_ms": round(one_task, 2),
        "all_tasks_ms": round(all_tasks, 2),
        "batch_all_tasks_over_one_task": round(all_tasks / one_task, 3),
        "train_set": train_src,
        "train_3x5_seconds": round(encode_train_s + res.seconds, 2),
        "train_3x5_encode_seconds": round(encode_train_s, 2),
        "train_3x5_epochs": len(res.history),
        "train_3x5_train_acc": res.train_acc,
        "train_examples_per_second": round(examples_per_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


@torch.no_grad()
def _lm_pass(lm, units, prompt) -> torch.Tensor:
    return prompted_forward(lm, [units], [prompt]).unit_logits
