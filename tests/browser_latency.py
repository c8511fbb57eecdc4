"""Browser latency figures of a running app, for docs/BENCHMARKS.md (headless Chromium, fake microphone).

    python -m tests.browser_latency --url http://127.0.0.1:7860/ --runs 9 [--no-listen] [--json]

- click -> answer: upload a 1 s clip (espeak-ng "seven", "three", "two" in turn, so the headline changes), click
  Classify; ms to the headline's label painted, and to the last figure's change (tests/answer_probe.py).
- stop -> answer: a fresh page answers the example "three" first (so plotly.js is loaded and figures are drawn, as
  for a visitor's second try), then records 1 s of "seven" through the fake microphone; ms from Stop to the new
  headline painted (the upload of the recording included).
- listen: Listen mode on a fake microphone playing espeak-ng "one two three four" with 1.2 s pauses; ms from the end
  of each word (as the page's own audio tap hears it) to its label painted (tests/listen_probe.py: the callback
  clock, a lower bound, and the sample clock, an upper bound; they agree on an idle machine).
Medians over the runs; the first click of a page (which also loads plotly.js) is left out. Issue #15's targets
(click -> answer, stop -> answer, end of word -> label, medians <= 500 ms; Listen by its upper bound) are checked
here, not in the tests: ``targets`` in the output says which medians meet them, and the exit code is 1 when one
misses. Measure on a quiet machine: Chromium and the app share its cores, so load from other work is measured too.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from playwright.sync_api import sync_playwright

from .answer_probe import PROBE_JS as ANSWER_JS, answer_times
from .listen_probe import PROBE_JS as LISTEN_JS, espeak_words, listen_latencies

CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 500  # issue #15: a visitor's wait, median
TARGETS = ("click_to_answer_median_ms", "stop_to_answer_median_ms", "listen_word_end_to_label_hi_median_ms")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]


def spoken(path: Path, word: str, seconds: float = 1.0, sr: int = 16_000) -> Path:
    raw = subprocess.run(["espeak-ng", "-s", "150", "--stdout", word], capture_output=True, check=True).stdout
    x, rate = sf.read(io.BytesIO(raw), dtype="float32")
    out = np.zeros(int(seconds * rate), np.float32)
    out[:min(out.size, x.size)] = x[:out.size]
    sf.write(path, out, rate)
    return path


def _mic(p, wav: Path):
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}"])


def measure(url: str, runs: int, listen: bool, tmp: Path) -> dict:
    out: dict = {"load_1min_at_start": round(os.getloadavg()[0], 2)}
    clips = [spoken(tmp / f"{w}.wav", w) for w in ("seven", "three", "two")]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.add_init_script(ANSWER_JS)
        page = ctx.new_page()
        page.goto(url)
        clicks = []
        for i in range(runs + 1):
            audio = page.locator("#try-audio")
            clear = audio.locator("button[aria-label='Clear']")
            if clear.count():
                clear.first.click()
            audio.get_by_role("button", name="Upload file").click()
            audio.locator("input[type=file]").set_input_files(str(clips[i % len(clips)]))
            audio.locator(".play-pause-button").wait_for()
            page.wait_for_timeout(300)
            clicks.append(answer_times(page, lambda: page.locator("#try-run").click()))
        browser.close()
        clicks = clicks[1:]
        out["click_to_answer_ms"] = [round(c["paint_ms"]) for c in clicks]
        out["click_to_all_figures_ms"] = [round(c["figures_ms"]) for c in clicks if c["figures_ms"] is not None]
        mic = tmp / "seven48k.wav"
        x, rate = sf.read(clips[0], dtype="float32")
        import torch
        import torchaudio.functional as AF
        sf.write(mic, np.tile(AF.resample(torch.from_numpy(x), rate, 48_000).numpy(), 6), 48_000, subtype="PCM_16")
        browser = _mic(p, mic)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"])
        ctx.add_init_script(ANSWER_JS)
        page = ctx.new_page()
        stops = []
        for _ in range(runs):
            page.goto(url)
            answer_times(page, lambda: page.locator("#try-example-1").click(), settle_ms=1500)
            audio = page.locator("#try-audio")
            clear = audio.locator("button[aria-label='Clear']")
            if clear.count():
                clear.first.click()
            audio.locator("button.record-button").click()
            page.wait_for_timeout(1000)
            stops.append(answer_times(page, lambda: audio.locator("button.stop-button").first.click(), settle_ms=300))
        browser.close()
        out["stop_to_answer_ms"] = [round(c["paint_ms"]) for c in stops]
        if listen:
            browser = _mic(p, espeak_words(tmp / "words.wav"))
            ctx = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"])
            ctx.add_init_script(LISTEN_JS)
            dets = []
            for _ in range(max(1, runs // 3)):
                page = ctx.new_page()
                page.goto(url)
                dets += listen_latencies(page, seconds=9.5)
                page.close()
            browser.close()
            out["listen_word_end_to_label_ms"] = [round(d["latency_ms"]) for d in dets]
            out["listen_word_end_to_label_hi_ms"] = [round(d["latency_hi_ms"]) for d in dets]
            out["listen_labels"] = [d["label"] for d in dets]
            out["listen_server_ms"] = [round(d["server_ms"]) for d in dets]
    for k in [k for k in out if k.endswith("_ms") and out[k]]:
        out[k.replace("_ms", "_median_ms")] = round(statistics.median(out[k]))
    out["load_1min_at_end"] = round(os.getloadavg()[0], 2)
    out["targets"] = targets(out)
    return out


def targets(figures: dict, target_ms: float = TARGET_MS) -> dict:
    """Each measured median of TARGETS against the target: {name: {"median_ms", "target_ms", "met"}}."""
    return {k: {"median_ms": figures[k], "target_ms": target_ms, "met": figures[k] <= target_ms}
            for k in TARGETS if k in figures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--no-listen", action="store_true", help="skip Listen mode (an app without it)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = measure(args.url, args.runs, not args.no_listen, Path(tmp))
    print(json.dumps(res, indent=None if args.json else 1))
    raise SystemExit(0 if all(t["met"] for t in res["targets"].values()) else 1)


if __name__ == "__main__":
    main()
