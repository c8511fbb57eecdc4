"""Hear a unit: every unit of a clip can be played, so 'unit 47' becomes a sound (no Gradio here).

The unit strip carries the analysed clip (the trimmed, level-normalised 16 kHz audio the encoder read) as a small
WAV data URI, and each token its start and end in seconds; :data:`HEAR_JS` (added to the page's head) plays that
stretch on a click or a tap, from the strip, from a segment (or a voice-map cell) of the signal figure, or from a
bar of the verbalizer or steering figure that names a unit heard in the clip (:func:`name_units` renames
``unit 47`` to ``unit 47 ▶ 0.32 s``: where in the clip it sounds).
"""
from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import plotly.graph_objects as go
import soundfile as sf
import torch

from ..encoder.audio import Audio
from ..encoder.units import Units
from .plots import unit_color

FULL_RATE_S = 10.0  # clips up to this long are embedded at 16 kHz, longer ones at 8 kHz (30 s -> ~640 KB)
_UNIT = re.compile(r"^unit (\d+)$")


def wav_data_uri(wav: torch.Tensor, sample_rate: int) -> str:
    """A 16-bit PCM WAV of ``wav`` as a ``data:`` URI (at 8 kHz when the clip is longer than FULL_RATE_S)."""
    x = wav.detach().float().cpu()
    if x.numel() > FULL_RATE_S * sample_rate and sample_rate > 8000:
        import torchaudio.functional as AF

        x, sample_rate = AF.resample(x, sample_rate, 8000), 8000
    buf = io.BytesIO()
    sf.write(buf, np.clip(x.numpy(), -1, 1), sample_rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def first_occurrence(units: Units) -> dict[int, tuple[float, float]]:
    """``{unit id: (start s, end s)}`` of each unit's first (longest-lasting on ties) stretch in the clip."""
    out: dict[int, tuple[float, float]] = {}
    for u, s, d in zip(units.ids.tolist(), units.starts.tolist(), units.durations.tolist()):
        if u not in out:
            out[u] = (s / units.frame_rate, (s + d) / units.frame_rate)
    return out


def voice_caption(units: Units, buckets: int = 8, window_s: float = 1.0) -> str:
    """One line under the figure saying what its voice map is ('' without voice streams); ``window_s``: the voice
    quantizer's window in seconds."""
    if units.voice is None:
        return ""
    n = int(units.voice.shape[1])
    return (f'<div class="unit-caption voice-caption"><b>Voice map</b> (the band under the units): {n} codes per '
            f"unit for the timbre of the voice over ~{round(window_s, 1):g} s, {buckets} levels each (dark = low, "
            "bright = high). The LM reads them beside the units; tap a cell to hear its stretch.</div>")


def unit_strip_html(audio: Audio, units: Units, voice_buckets: int = 8, voice_window_s: float = 1.0) -> str:
    """The collapsed unit sequence as coloured tokens, each a button that plays its stretch of the clip; hovering
    one shows its id, start, duration and pitch (and its voice codes, 1..``voice_buckets``, with voice streams,
    under :func:`voice_caption`)."""
    toks = []
    fr = units.frame_rate
    voice = units.voice.tolist() if units.voice is not None else [None] * len(units)
    for u, s, d, p, v in zip(units.ids.tolist(), units.starts.tolist(), units.durations.tolist(),
                             units.pitch.tolist(), voice):
        tip = f"unit {u} · starts {s / fr:.2f} s · {d / fr * 1000:.0f} ms · " + (f"{p:.0f} Hz" if p > 0 else "unvoiced")
        if v is not None:
            tip += f" · voice {' '.join(str(c + 1) for c in v)} (of {voice_buckets})"
        toks.append(f'<span class="unit-tok" role="button" tabindex="0" data-unit="{u}" data-start="{s / fr:.3f}" '
                    f'data-end="{(s + d) / fr:.3f}" style="background:{unit_color(u)}" '
                    f'title="{html.escape(tip)} · click to hear it">{u}</span>')
    frames = int(units.durations.sum())
    head = (f'<div class="unit-caption">{len(toks)} units after collapsing {frames} frames ({fr:.0f} per second). '
            'Click or tap a unit to hear its stretch of the clip (also a segment in the figure above, or a '
            '<i>unit N ▶</i> bar below); hover for its timing and pitch'
            + (" and voice codes" if units.voice is not None else "") + '.</div>')
    src = wav_data_uri(audio.wav, audio.sample_rate)
    caption = voice_caption(units, voice_buckets, voice_window_s)
    return (f'<div class="unit-strip hear-strip" data-src="{src}">{caption}{head}'
            f'<div class="unit-tokens">{"".join(toks)}</div></div>')


def name_units(fig: go.Figure, units: Units) -> go.Figure:
    """Rename the ``unit N`` bars of a figure (the verbalizer's inputs) after where N sounds in the clip:
    ``unit 47 ▶ 0.32 s`` (click to hear); a unit the clip does not contain keeps its name."""
    where = first_occurrence(units)

    def rename(name: object) -> object:
        m = _UNIT.match(str(name))
        if not m:
            return name
        u = int(m.group(1))
        return f"unit {u} ▶ {where[u][0]:.2f} s" if u in where else name

    for trace in fig.data:
        for axis in ("x", "y"):
            values = getattr(trace, axis, None)
            if values is not None and len(values) and any(_UNIT.match(str(v)) for v in values):
                trace.update({axis: [rename(v) for v in values]})
    return fig


HEAR_JS = r"""
<script>
(() => {
  if (window.__hearUnits) return;
  window.__hearUnits = true;
  let ctx = null, playing = null;
  const buffers = new Map();
  async function buffer(src) {
    if (!buffers.has(src)) {
      buffers.clear();  // one clip at a time
      buffers.set(src, fetch(src).then((r) => r.arrayBuffer()).then((a) => ctx.decodeAudioData(a)));
    }
    return buffers.get(src);
  }
  function strip() { return document.querySelector('.hear-strip[data-src]'); }
  async function play(start, end, el) {
    const s = strip(); if (!s) return;
    ctx = ctx || new (window.AudioContext || window.webkitAudioContext)();
    if (ctx.state === 'suspended') await ctx.resume();
    const buf = await buffer(s.dataset.src);
    let a = Math.max(0, +start), b = Math.min(buf.duration, +end);
    if (b - a < 0.15) { const mid = (a + b) / 2; a = Math.max(0, mid - 0.075); b = Math.min(buf.duration, a + 0.15); }
    if (playing) { try { playing.stop(); } catch (e) {} }
    const src = ctx.createBufferSource(), gain = ctx.createGain();
    src.buffer = buf; src.connect(gain); gain.connect(ctx.destination);
    const t = ctx.currentTime, d = b - a, f = Math.min(0.01, d / 4);
    gain.gain.setValueAtTime(0, t); gain.gain.linearRampToValueAtTime(1, t + f);
    gain.gain.setValueAtTime(1, t + d - f); gain.gain.linearRampToValueAtTime(0, t + d);
    src.start(t, a, d); playing = src;
    window.__hearLast = {start: a, end: b};
    if (el) { el.classList.add('hearing'); setTimeout(() => el.classList.remove('hearing'), d * 1000 + 150); }
  }
  function playUnit(u) {
    const tok = document.querySelector(`.hear-strip .unit-tok[data-unit="${u}"]`);
    if (tok) play(tok.dataset.start, tok.dataset.end, tok);
  }
  document.addEventListener('click', (e) => {
    const tok = e.target.closest && e.target.closest('.hear-strip .unit-tok[data-start]');
    if (tok) play(tok.dataset.start, tok.dataset.end, tok);
  });
  document.addEventListener('keydown', (e) => {
    const tok = e.target.closest && e.target.closest('.hear-strip .unit-tok[data-start]');
    if (tok && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault(); play(tok.dataset.start, tok.dataset.end, tok);
    }
  });
  function onPlotClick(ev) {
    const pt = ev && ev.points && ev.points[0]; if (!pt) return;
    const cd = pt.customdata;
    if (Array.isArray(cd) && cd.length === 4) { play(cd[1], cd[1] + cd[2] / 1000); return; }  // a segment
    const name = String(typeof pt.y === 'string' ? pt.y : (typeof pt.x === 'string' ? pt.x : ''));
    const m = name.match(/^unit (\d+)/) || (cd !== undefined && String(cd).match(/^(\d+)$/));
    if (m) playUnit(m[1]);
  }
  const hook = () => {
    document.querySelectorAll('.js-plotly-plot').forEach((el) => {
      if (!el.__hear && typeof el.on === 'function') { el.__hear = true; el.on('plotly_click', onPlotClick); }
    });
  };
  new MutationObserver(hook).observe(document.documentElement, {childList: true, subtree: true});
})();
</script>
"""

HEAR_CSS = """
.hear-strip .unit-tok { cursor: pointer; touch-action: manipulation; }
.hear-strip .unit-tok.hearing { outline: 3px solid #111827; transform: scale(1.12); }
@media (pointer: coarse) { .hear-strip .unit-tok { min-width: 34px; padding: 6px 5px; } }
"""
