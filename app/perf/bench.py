"""Benchmarks behind ``python -m app bench``: latency by stage, batching, training speed, memory.

Figures, not pass/fail: docs/BENCHMARKS.md records them with the command that produced them. Latency, batching and
training are measured in this process; ``peak_rss_mb`` is the peak resident memory of the app itself (``app.py``
launched on a free loopback port and exercised through its API), read from ``/proc/PID/status``.
"""
from __future__ import annotations

import io
import os
import resource
import statistics
import time
from dataclasses import replace
from typing import Any

import numpy as np
import soundfile as sf
import torch

from ..encoder.audio import prepare
from ..engine import Engine
from ..prompting import PromptConfig, prompted_forward
from ..settings import serving_threads
from ..settings import NOISE_DIR
from ..training import (FEW_SHOT_PROMPT, FEW_SHOT_SETTINGS, MAX_CLIP_SECONDS, clip_seed, few_shot, make_take,
                        transfer_source)
from .clips import five_by_five, one_second_clip
from .loadtest import HttpCaller
from .process import launched_server, vm_kb


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def run_bench(backbone_dir=None, prompts_dir=None, repeats: int = 30, server: bool = True,
              threads: int | None = None) -> dict[str, Any]:
    """All figures; ``server=False`` skips launching app.py (then ``peak_rss_mb`` is this process's peak).
    ``threads``: torch threads, by default the app's own setting (``app.settings.serving_threads``)."""
    torch.set_num_threads(threads or serving_threads())
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
    verbalize = _median_ms(lambda: prompt.classify(out.logits), repeats)[0]
    p50, p95 = _median_ms(lambda: engine.analyze(wav_bytes, [task]), repeats)
    one_task = _median_ms(lambda: engine.predict_units(units, [task]), repeats)[0]
    all_tasks = _median_ms(lambda: engine.predict_units(units, engine.tasks), repeats)[0]
    enc_lm = _median_ms(lambda: engine.predict_units(engine.backbone.encoder(audio.wav), [task]), repeats)[0]
    all_e2e = _median_ms(lambda: engine.analyze(wav_bytes, engine.tasks), max(5, repeats // 3))[0]
    ten = (engine.tasks * 10)[:10]  # "a batch of 10 tasks" (tasks repeat if fewer are loaded)
    ten_e2e = _median_ms(lambda: engine.analyze(wav_bytes, ten), max(5, repeats // 3))[0]

    live = live_training(engine)
    obj: dict[str, Any] = {
        "backbone": engine.backbone.id,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "tasks_loaded": len(engine.tasks),
        "load_seconds": round(load_s, 2),
        "clip": clip_src,
        "units_in_clip": len(units),
        "latency_ms_p50": round(p50, 2),
        "latency_ms_p95": round(p95, 2),
        "stage_ms": {"decode": round(decode, 2), "encode": round(encode, 2), "lm": round(lm_only, 2),
                     "verbalizer": round(verbalize, 3)},
        "encoder_plus_lm_ms": round(enc_lm, 2),
        "all_tasks_end_to_end_ms": round(all_e2e, 2),
        # the clip, all tasks in one batch, end to end (decode + encode once + one batched LM pass) over one task
        "batch_all_tasks_over_one_task": round(all_e2e / p50, 3),
        "batch_10_tasks_over_one_task": round(ten_e2e / p50, 3),
        # the LM pass alone: rows share no LM work (each task's prompt enters every layer), so it grows ~linearly
        "lm_one_task_ms": round(one_task, 2),
        "lm_all_tasks_ms": round(all_tasks, 2),
        "lm_batch_all_tasks_over_one_task": round(all_tasks / one_task, 3),
        **live,
        "bench_process_peak_rss_mb": _self_peak_rss_mb(),
    }
    if server:
        obj.update(app_memory(backbone_dir, prompts_dir, wav_bytes))
    else:
        obj["peak_rss_mb"] = obj["bench_process_peak_rss_mb"]
        obj["peak_rss_source"] = "this benchmark process (--no-server)"
    return obj


def live_training(engine: Engine) -> dict[str, Any]:
    """What "Train a prompt" runs, on 5 classes x 5 clips: encode each clip and its perturbed copies (as "Add to
    class" does), then the library's few-shot run (the step budget, no held-out split); then, timed apart, the
    k-fold estimate the view shows after it."""
    items, train_src = five_by_five()
    examples: dict[str, list] = {}
    cpu = time.process_time()  # this process's CPU time: what the run costs when no other job shares the cores
    t = time.perf_counter()
    for src, label in items:
        audio, units = engine.encode(src, max_seconds=MAX_CLIP_SECONDS)
        take = make_take(engine.backbone.encoder, audio.wav, FEW_SHOT_SETTINGS.copies, clip_seed(audio.wav),
                         NOISE_DIR, units)
        examples.setdefault(label, []).append(take)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    lm = engine.backbone.lm
    config = replace(FEW_SHOT_PROMPT, prompt_length=5, deep=True, verbalizer="learnable")
    shot = few_shot(lm, "bench", "bench", examples, config, source=transfer_source(engine.prompts, config))
    shot.run(lm, estimate=False)
    train_s = time.perf_counter() - t
    cpu = time.process_time() - cpu
    t = time.perf_counter()
    from ..training import cross_validate
    est = cross_validate(lm, shot.info, shot.config, shot.train, shot.settings)
    cv_s = time.perf_counter() - t
    m = shot.prompt.info.metrics
    epochs = int(m["epochs_run"])
    return {
        "train_set": train_src,
        "train_5x5_seconds": round(encode_s + train_s, 2),
        "train_5x5_cpu_seconds": round(cpu, 2),
        "train_5x5_encode_seconds": round(encode_s, 2),
        "train_5x5_copies_per_clip": FEW_SHOT_SETTINGS.copies,
        "train_5x5_train_seconds": round(train_s, 2),
        "train_5x5_steps": FEW_SHOT_SETTINGS.steps,
        "train_5x5_started_from": shot.source.task if shot.source is not None else None,
        "train_5x5_epochs": epochs,
        "train_5x5_train_acc": m["train_accuracy"],
        "train_5x5_cv_seconds": round(cv_s, 2),
        "train_5x5_cv_accuracy": None if est is None else round(est["accuracy"], 4),
        "train_examples_per_second": round(shot.rows * epochs / max(float(m["train_seconds"]), 1e-9), 1),
        "trainable_params": shot.prompt.num_trainable(),
    }


def app_memory(backbone_dir, prompts_dir, wav_bytes: bytes) -> dict[str, Any]:
    """Launch app.py on a free loopback port, exercise /classify and /classify_all (sequential calls, 8 at once,
    and a 10-minute upload), and read the app's peak resident memory (VmHWM)."""
    from concurrent.futures import ThreadPoolExecutor

    x, sr = sf.read(io.BytesIO(wav_bytes), dtype="int16")
    buf = io.BytesIO()
    sf.write(buf, np.resize(x, 600 * sr), sr, subtype="PCM_16", format="WAV")
    long_clip = buf.getvalue()
    t = time.perf_counter()
    with launched_server(backbone_dir, prompts_dir) as server:
        start_s = time.perf_counter() - t
        rss_idle = server.rss_mb()
        call = HttpCaller(server.url, 8, 120.0)
        try:
            task = call(wav_bytes, "clip.wav", "classify_all")[0]["task"]
            times = []
            for _ in range(10):
                t = time.perf_counter()
                call(wav_bytes, "clip.wav", "classify", task)
                times.append((time.perf_counter() - t) * 1e3)
            for _ in range(3):
                call(wav_bytes, "clip.wav", "classify_all")
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _: call(wav_bytes, "clip.wav", "classify", task), range(16)))
            capped = call(long_clip, "ten minutes.wav", "classify", task)
        finally:
            call.close()
        peak = server.peak_rss_mb()
        rss_end = server.rss_mb()
    return {
        "peak_rss_mb": peak,
        "peak_rss_source": "app.py (VmHWM) after /classify x27, /classify_all x4, 8 concurrent calls, a 10-min upload",
        "app_startup_seconds": round(start_s, 1),
        "app_rss_mb_idle": rss_idle,
        "app_rss_mb_end": rss_end,
        "api_latency_ms_p50": round(statistics.median(times), 1),
        "ten_minute_upload_notices": capped.get("notices", []),
    }


def _self_peak_rss_mb() -> float:
    kb = vm_kb(os.getpid(), "VmHWM")
    return round((kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024, 1)


@torch.no_grad()
def _lm_pass(lm, units, prompt) -> torch.Tensor:
    return prompted_forward(lm, [units], [prompt]).unit_logits
