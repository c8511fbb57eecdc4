"""Measure Listen mode in a real browser: end of a spoken word -> its label on screen.

Method. The fake microphone plays a WAV of words separated by digital silence. An init script taps the same
MediaStream that Gradio records (``getUserMedia`` is wrapped) with a Web Audio ScriptProcessor of 256 samples and
finds each word's end: the last sample above -50 dBFS, followed by 150 ms of silence. It dates that end on the
page's clock (``performance.now()``) in two ways that bracket the truth:

- callback clock (``latency_ms``): the time the audio callback that holds the end ran, less the samples after the
  end in its buffer. A callback runs after its samples were captured, so this end is late and the latency a lower
  bound (by the callback's delay: a few ms on an idle page, much more when the cores are oversubscribed);
- sample clock (``latency_hi_ms``): t0 + the end's sample index / rate, where t0 is the lowest ``callback time -
  samples so far / rate`` (the least delayed callback). If the capture drops samples (it does when the cores are
  oversubscribed), the index falls behind and this latency is an upper bound.

On an idle machine the two agree within a few ms. A MutationObserver notes when each new detection
(``.listen-det``, keyed by its stream sample) enters the DOM and, one animation frame later, when it is painted.
Latency = paint time - the word's end.
"""
from __future__ import annotations

import io
import statistics
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

PROBE_JS = r"""
(() => {
  const L = window.__listen = {ends: [], dets: [], taps: 0, seen: {}};
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const orig = md.getUserMedia.bind(md);
    md.getUserMedia = async (c) => { const s = await orig(c); try { tap(s); } catch (e) { L.err = String(e); } return s; };
  }
  function tap(stream) {
    if (!stream.getAudioTracks().length) return;
    const ctx = new AudioContext(), id = ++L.taps;
    const src = ctx.createMediaStreamSource(stream), proc = ctx.createScriptProcessor(256, 1, 1);
    const tap = L['tap' + id] = {t0: Infinity, rate: ctx.sampleRate, ends: []};
    let loud = false, lastLoud = 0, lastCb = 0, frames = 0;
    proc.onaudioprocess = (e) => {
      const now = performance.now(), x = e.inputBuffer.getChannelData(0), n = x.length;
      let last = -1;
      for (let i = n - 1; i >= 0; i--) if (Math.abs(x[i]) > 0.003) { last = i; break; }
      if (last >= 0) { lastLoud = frames + last + 1; lastCb = now - (n - 1 - last) / ctx.sampleRate * 1000; loud = true; }
      else if (loud && frames + n - lastLoud > 0.15 * ctx.sampleRate) { tap.ends.push([lastLoud, lastCb]); loud = false; }
      frames += n;
      tap.t0 = Math.min(tap.t0, now - frames / ctx.sampleRate * 1000);
    };
    L.endTimes = () => [].concat(...Array.from({length: L.taps}, (_, i) => {
      const t = L['tap' + (i + 1)];
      return t ? t.ends.map(([k, cb]) => ({tap: i + 1, t: cb, hi: t.t0 + k / t.rate * 1000})) : [];
    }));
    const g = ctx.createGain(); g.gain.value = 0;
    src.connect(proc); proc.connect(g); g.connect(ctx.destination);
  }
  const scan = () => {
    const t = performance.now();
    document.querySelectorAll('.listen-det').forEach((el) => {
      const key = el.dataset.endSample;
      if (key && !(key in L.seen)) {
        L.seen[key] = t;
        const d = {key, label: el.querySelector('b')?.textContent, dom: t, server: +el.dataset.serverMs};
        L.dets.push(d);
        requestAnimationFrame(() => { d.paint = performance.now(); });
      }
    });
  };
  new MutationObserver(scan).observe(document, {childList: true, subtree: true, characterData: true});
})();
"""


def espeak_words(path: Path, words=("one", "two", "three", "four"), gap_s: float = 1.2, sr: int = 48_000) -> Path:
    """A WAV (``sr``, 16 bit) of espeak-ng words separated by ``gap_s`` of digital silence, as a fake microphone."""
    import torch
    import torchaudio.functional as AF

    parts = [np.zeros(int(0.8 * sr), np.float32)]
    for w in words:
        raw = subprocess.run(["espeak-ng", "-s", "150", "--stdout", w], capture_output=True, check=True,
                             timeout=30).stdout
        x, rate = sf.read(io.BytesIO(raw), dtype="float32")
        x = AF.resample(torch.from_numpy(x), rate, sr).numpy()
        loud = np.nonzero(np.abs(x) > 1e-3)[0]
        x = x[loud[0]:loud[-1] + 1]
        parts += [0.5 * x / np.abs(x).max(), np.zeros(int(gap_s * sr), np.float32)]
    sf.write(path, np.concatenate(parts), sr, subtype="PCM_16")
    return path


def listen_latencies(page, seconds: float, screenshot=None) -> list[dict]:
    """Record ``seconds`` in Listen mode (the page is on the app, its init script is PROBE_JS); returns one dict
    per detection: label, latency_ms (word end -> painted, callback clock), latency_hi_ms (sample clock), dom_ms
    (-> in the DOM, callback clock), server_ms. ``screenshot()``,
    if given, is called while still listening."""
    page.get_by_role("tab", name="Listen").click()
    mic = page.locator("#listen-mic")
    mic.locator("button.record-button").click()
    page.wait_for_timeout(int(seconds * 1000))
    if screenshot is not None:
        screenshot()
    stop = mic.locator("button.stop-button")
    if stop.count():
        stop.first.click()
    page.wait_for_timeout(300)
    data = page.evaluate("({dets: window.__listen.dets, ends: window.__listen.endTimes ? "
                         "window.__listen.endTimes() : []})")
    out = []
    for d in data["dets"]:
        before = [e for e in data["ends"] if e["t"] <= d["dom"]]
        if not before or "paint" not in d:
            continue
        end = max(before, key=lambda e: e["t"])
        hi = max([e["hi"] for e in before if e["tap"] == end["tap"]] or [end["t"]])
        out.append({"label": d["label"], "latency_ms": d["paint"] - end["t"], "latency_hi_ms": d["paint"] - hi,
                    "dom_ms": d["dom"] - end["t"], "server_ms": d["server"]})
    return out


def median(values) -> float:
    return float(statistics.median(values)) if values else float("nan")
