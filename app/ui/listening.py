"""Listen mode's state and its small HTML view (no Gradio here): microphone chunks in, words and labels out.

A :class:`Listener` keeps the last few seconds of one visitor's stream in a bounded buffer, cuts it into words with
:class:`~app.encoder.vad.EnergyVAD`, classifies each finished word with the chosen prompt (and, while a word goes on,
the word so far: the live guess), and remembers the last detections and a short timeline of units. The view is one
light HTML block (label, detections, unit timeline) rebuilt per change: no plotly figure per chunk.
"""
from __future__ import annotations

import html
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..encoder.audio import AudioError
from ..encoder.vad import EnergyVAD, Segment
from ..engine import Engine
from .plots import unit_color

BUFFER_S = 4.0  # audio kept per visitor (a word is at most VADConfig.max_word_s = 2 s, plus its pre-roll)
MAX_STREAM_S = 120.0  # one listening session hears at most this much audio; press Record again for more
MAX_CHUNK_S = 2.0  # a chunk longer than this (a client that does not stream) is cut to its last MAX_CHUNK_S
LIVE_EVERY_S = 0.3  # the live guess on the word so far is refreshed at most this often
LIVE_MIN_S = 0.25  # and only once the word is this long
DETECTIONS = 6
TIMELINE_UNITS = 90


@dataclass
class Detection:
    label: str
    confidence: float
    at_s: float  # where the word ended in the stream (s)
    end_sample: int  # the end of its last loud frame, in stream samples
    span: tuple[int, int]  # the stretch of the stream that was classified (samples)
    sample_rate: int
    server_ms: float  # from the chunk that ended the word arriving to its answer being ready
    units: int


class Listener:
    """One visitor's live stream: buffer, VAD, detections, unit timeline (a plain object: ``gr.State`` copies it
    for each visitor)."""

    def __init__(self, sample_rate: int = 0, task: str | None = None) -> None:
        self.sample_rate = sample_rate
        self.task = task
        self.vad: EnergyVAD | None = EnergyVAD(sample_rate) if sample_rate else None
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0  # stream index of buffer[0]
        self.received = 0  # samples received in this stream
        self.detections: deque[Detection] = deque(maxlen=DETECTIONS)
        self.timeline: deque[tuple] = deque(maxlen=TIMELINE_UNITS)  # (unit, frames) or ("gap", seconds)
        self.live: tuple[str, float] | None = None  # the live guess for the word in progress
        self.live_at = 0  # stream sample of the last live guess
        self.last_end: int | None = None  # where the previous word ended (for the timeline's gaps)
        self.note = ""
        self.stopped = False

    def reset(self, sample_rate: int, task: str | None) -> None:
        self.__init__(sample_rate, task)  # type: ignore[misc]

    @property
    def seconds(self) -> float:
        return self.received / self.sample_rate if self.sample_rate else 0.0

    def feed(self, engine: Engine, task: str | None, sample_rate: int, samples: np.ndarray) -> bool:
        """Take the next chunk; classify what it finishes. Returns whether the view changed."""
        t_arrived = time.perf_counter()
        if self.vad is None or sample_rate != self.sample_rate or task != self.task:
            self.reset(sample_rate, task)
        if self.stopped:
            return False
        x = _mono_float(samples)[-int(MAX_CHUNK_S * sample_rate):]
        if self.seconds + x.size / sample_rate > MAX_STREAM_S:
            self.stopped = True
            self.note = f"Stopped listening after {MAX_STREAM_S / 60:.0f} minutes: press Record again to go on."
            return True
        self.received += x.size
        self.buffer = np.concatenate([self.buffer, x])
        keep = int(BUFFER_S * sample_rate)
        if self.buffer.size > keep:
            self.buffer_start += self.buffer.size - keep
            self.buffer = self.buffer[-keep:]
        assert self.vad is not None
        was_in_word = self.vad.in_word
        changed = False
        for seg in self.vad.push(x):
            changed |= self._finish(engine, seg, t_arrived)
        if self.vad.in_word:
            start = int(self.vad.start or 0)
            long_enough = self.received - start >= LIVE_MIN_S * sample_rate
            if not was_in_word:
                self.live, self.live_at, changed = None, self.received, True
            if task and long_enough and self.received - self.live_at >= LIVE_EVERY_S * sample_rate:
                pred = self._classify(engine, start, self.received)
                if pred is not None:
                    self.live = (pred[0], pred[1])
                    self.live_at = self.received
                    changed = True
        elif was_in_word and self.live is not None:
            self.live = None
            changed = True
        return changed

    def _clip(self, start: int, end: int) -> np.ndarray:
        a, b = max(start - self.buffer_start, 0), max(end - self.buffer_start, 0)
        return self.buffer[a:b]

    def _classify(self, engine: Engine, start: int, end: int) -> tuple[str, float, list[tuple[int, int]]] | None:
        clip = self._clip(start, end)
        if not self.task or clip.size < 0.05 * self.sample_rate:
            return None
        try:
            analysis = engine.analyze((self.sample_rate, clip), [self.task])
        except AudioError:
            return None
        pred = analysis.predictions[0]
        units = list(zip(analysis.units.ids.tolist(), analysis.units.durations.tolist()))
        return pred.label, pred.confidence, units

    def _finish(self, engine: Engine, seg: Segment, t_arrived: float) -> bool:
        if self.timeline and self.last_end is not None and seg.start > self.last_end:
            self.timeline.append(("gap", (seg.start - self.last_end) / self.sample_rate))
        self.last_end = seg.end
        pred = self._classify(engine, seg.start, seg.end)
        self.live = None
        if pred is None:
            return True
        label, conf, units = pred
        self.timeline.extend(units)
        self.detections.appendleft(Detection(
            label=label, confidence=conf, at_s=seg.speech_end / self.sample_rate, end_sample=seg.speech_end,
            span=(seg.start, seg.end), sample_rate=self.sample_rate,
            server_ms=(time.perf_counter() - t_arrived) * 1e3, units=len(units)))
        return True


def _mono_float(samples: np.ndarray) -> np.ndarray:
    """A Gradio chunk (int16 or float, mono or (T, C)) as mono float32 in [-1, 1]."""
    x = np.asarray(samples)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] <= x.shape[0] else x.mean(axis=0)
    if x.dtype.kind in "iu":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = np.nan_to_num(x.astype(np.float32, copy=False).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(x, -1.0, 1.0)


IDLE_HTML = ('<div class="listen-view"><div class="listen-live listen-idle">Press <b>Record</b> and say a word '
             '(pause between words): each word is classified as soon as you stop speaking.</div></div>')


def listen_html(listener: Listener | None, title: str = "") -> str:
    """The live label, the last detections (newest first) and a timeline of the units heard."""
    if listener is None or listener.vad is None:
        return IDLE_HTML
    vad = listener.vad
    if listener.note:
        live = f'<div class="listen-live listen-idle">{html.escape(listener.note)}</div>'
    elif vad.in_word:
        guess = (f'<span class="listen-label listen-guess">{html.escape(listener.live[0])}?</span>'
                 if listener.live else '<span class="listen-label listen-guess">…</span>')
        live = f'<div class="listen-live listen-hearing"><span class="listen-dot"></span>hearing {guess}</div>'
    elif listener.detections:
        d = listener.detections[0]
        live = (f'<div class="listen-live"><span class="listen-label" data-end-sample="{d.end_sample}" '
                f'data-rate="{d.sample_rate}">{html.escape(d.label)}</span>'
                f'<span class="listen-conf">{d.confidence:.0%}</span></div>')
    else:
        live = '<div class="listen-live listen-idle"><span class="listen-dot"></span>listening… say a word</div>'
    items = "".join(
        f'<li class="listen-det" data-end-sample="{d.end_sample}" data-rate="{d.sample_rate}" '
        f'data-server-ms="{d.server_ms:.1f}"><b>{html.escape(d.label)}</b> {d.confidence:.0%}'
        f'<span class="listen-when">at {d.at_s:.1f} s · {d.units} units · {d.server_ms:.0f} ms</span></li>'
        for d in listener.detections)
    dets = (f'<ol class="listen-dets">{items}</ol>' if items else
            '<div class="listen-dets listen-empty">No words yet.</div>')
    toks = []
    for item in listener.timeline:
        if item[0] == "gap":
            toks.append(f'<span class="tl-gap" title="{item[1]:.1f} s of silence"></span>')
        else:
            u, frames = item
            toks.append(f'<span class="tl-tok" style="background:{unit_color(u)};flex-grow:{frames}" '
                        f'title="unit {u}, {frames * 20} ms">{u}</span>')
    timeline = (f'<div class="listen-timeline" aria-label="units of the last words">{"".join(toks)}</div>'
                if toks else '<div class="listen-timeline listen-empty">Units of the words you say appear here.</div>')
    head = f'<div class="listen-task">{html.escape(title)} · {listener.seconds:.0f} s heard</div>' if title else ""
    return f'<div class="listen-view">{head}{live}<div class="listen-cols">{dets}</div>{timeline}</div>'


LISTEN_CSS = """
.listen-view { display: flex; flex-direction: column; gap: 10px; min-width: 0; max-width: 100%; overflow: hidden; }
.listen-task { font-size: 0.85rem; color: #4338ca; text-transform: uppercase; letter-spacing: 0.04em; }
.listen-live { border-radius: 14px; padding: 14px 18px; background: linear-gradient(135deg, #eef2ff, #e0e7ff);
               border: 1px solid #c7d2fe; display: flex; align-items: baseline; gap: 14px; min-height: 72px;
               flex-wrap: wrap; }
.listen-idle { color: #475569; background: #f8fafc; border-color: #e2e8f0; font-size: 1.05rem; align-items: center; }
.listen-hearing { background: #fffbeb; border-color: #fcd34d; color: #92400e; font-size: 1.1rem; align-items: center; }
.listen-label { font-size: 2.3rem; font-weight: 700; color: #1e1b4b; line-height: 1.15; word-break: break-word; }
.listen-guess { color: #b45309; font-size: 1.8rem; }
.listen-conf { font-size: 1rem; color: #3730a3; }
.listen-dot { width: 12px; height: 12px; border-radius: 50%; background: #dc2626; display: inline-block;
              margin-right: 8px; animation: listen-pulse 1s infinite; }
@keyframes listen-pulse { 50% { opacity: 0.3; } }
.listen-dets { margin: 0; padding-left: 1.4em; font-size: 0.95rem; }
.listen-det { margin: 2px 0; }
.listen-when { color: #64748b; font-size: 0.8rem; margin-left: 8px; }
.listen-empty { color: #64748b; font-size: 0.88rem; padding-left: 0; }
.listen-timeline { display: flex; gap: 1px; height: 30px; overflow: hidden; justify-content: flex-end;
                   border-radius: 6px; background: #f1f5f9; width: 100%; contain: inline-size; }
.tl-tok { flex-basis: 0; min-width: 6px; max-width: 60px; color: #fff; font: 600 0.7rem var(--font-mono);
          display: flex; align-items: center; justify-content: center; overflow: hidden;
          text-shadow: 0 0 2px rgba(0,0,0,0.45); }
.tl-gap { flex: 0 0 14px; background: repeating-linear-gradient(90deg, #e2e8f0 0 2px, transparent 2px 5px); }
"""
