"""Plotly figures and small HTML pieces for the views. Pure functions of tensors: no Gradio in here."""
from __future__ import annotations

import html
import math
from typing import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..encoder.audio import Audio
from ..prompting import TaskCard, TaskInfo, TaskPrompt, verbalizer_input
from ..encoder.units import DURATION_EDGES, PITCH_EDGES_HZ, Units

ACCENT = "#4f46e5"
MUTED = "#cbd5e1"
POSITIVE, NEGATIVE = "#059669", "#dc2626"
FONT = "IBM Plex Sans, system-ui, -apple-system, Segoe UI, sans-serif"
# 20 well-separated colours (Tableau 20 order), so equal unit ids share a colour everywhere.
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f"]


def unit_color(unit: int) -> str:
    return PALETTE[int(unit) % len(PALETTE)]


def _layout(fig: go.Figure, height: int, title: str | None = None, top: int | None = None, **kw) -> go.Figure:
    fig.update_layout(
        height=height, template="plotly_white", font=dict(family=FONT, size=13),
        margin=dict(l=60, r=30, t=top or (56 if title else 24), b=40), showlegend=kw.pop("showlegend", False),
        title=dict(text=title, x=0.01, font=dict(size=15)) if title else None, **kw,
    )
    return fig


def percent(p: float) -> str:
    """A probability as the charts print it: whole percent, and "<1%" for a small non-zero one (not "0%")."""
    text = f"{p:.0%}"
    return "<1%" if text == "0%" and p > 0 else text


def unit_label(unit: int, vocab_size: int) -> str:
    return "end" if unit == vocab_size - 1 else str(unit)


def stream_feature_label(stream: str, i: int, vocab_size: int, voice_buckets: int = 8) -> str:
    """A verbalizer input, short enough for an axis: ``unit 17``, ``dur 5-6 fr`` (the next unit's duration in
    frames), ``pitch 120-141 Hz`` (its pitch bucket), ``unvoiced``, ``voice 3: 6/8`` (voice stream 3, bucket 6 of
    ``voice_buckets``; input ``i`` of the voice stream is stream ``i // voice_buckets``, bucket ``i % voice_buckets``,
    both counted from 1 on screen)."""
    if stream == "units":
        return f"unit {unit_label(i, vocab_size)}"
    if stream == "duration":
        lo = ([1] + list(DURATION_EDGES))[i]
        if i == len(DURATION_EDGES):
            return f"dur {lo}+ fr"
        hi = DURATION_EDGES[i] - 1
        return f"dur {lo} fr" if hi == lo else f"dur {lo}-{hi} fr"
    if stream == "pitch":
        if i == 0:
            return "unvoiced"
        edges = [60.0] + list(PITCH_EDGES_HZ) + [500.0]
        return f"pitch {edges[i - 1]:.0f}-{edges[i]:.0f} Hz"
    if stream == "voice":
        return voice_code_label(i // voice_buckets, i % voice_buckets, voice_buckets)
    return f"{stream} {i}"


def voice_code_label(stream: int, code: int, buckets: int = 8) -> str:
    """Voice stream ``stream`` (0-based) at code ``code`` (0-based) as the app words it: ``voice 4: 7/8``."""
    return f"voice {stream + 1}: {code + 1}/{buckets}"


def voice_legend(buckets: int = 8) -> str:
    """What a voice code label means, in one line (the verbalizer figure's legend)."""
    return f"“voice k: b/{buckets}” = timbre direction k, bucket b of {buckets} (low..high)"


# ---------------------------------------------------------------- what the model heard


def spectrogram(wav: torch.Tensor, sr: int = 16_000, hop: int = 320, max_hz: float = 5000.0,
                max_frames: int = 600) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-magnitude spectrogram in dB ``(freqs, frames)`` with its frame times (s) and bin frequencies (Hz)."""
    n_fft = 512
    spec = torch.stft(wav, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True, center=True).abs()
    freqs = torch.fft.rfftfreq(n_fft, 1 / sr)
    keep = freqs <= max_hz
    db = 20 * torch.log10(spec[keep] + 1e-5)
    db = db.clamp_min(db.max() - 70)
    pool = max(1, math.ceil(db.shape[1] / max_frames))
    if pool > 1:
        db = torch.nn.functional.avg_pool1d(db[None], pool, ceil_mode=True)[0]
    times = (torch.arange(db.shape[1]) * hop * pool) / sr
    return db, times, freqs[keep]


VOICE_COLORS = ["#0d0887", "#46039f", "#7201a8", "#9c179e", "#bd3786", "#d8576b", "#ed7953", "#fdb42f"]  # plasma


def voice_runs(units: Units) -> list[tuple[float, float, list[int]]]:
    """The clip's voice codes as runs of units that share them (about one per ~1 s window): ``(start s, end s,
    codes)``, codes 0-based, one per stream. Empty without voice streams."""
    if units.voice is None or len(units) == 0:
        return []
    fr = units.frame_rate
    starts, durs, codes = units.starts.tolist(), units.durations.tolist(), units.voice.tolist()
    runs: list[tuple[float, float, list[int]]] = []
    for s, d, c in zip(starts, durs, codes):
        if runs and runs[-1][2] == c:
            runs[-1] = (runs[-1][0], (s + d) / fr, c)
        else:
            runs.append((s / fr, (s + d) / fr, c))
    return runs


def voice_colorscale(buckets: int) -> list[list]:
    """``buckets`` flat colour bands (low..high) for z in 1..buckets with zmin 0.5, zmax buckets + 0.5."""
    cols = [VOICE_COLORS[round(i * (len(VOICE_COLORS) - 1) / max(buckets - 1, 1))] for i in range(buckets)]
    return [[edge, c] for i, c in enumerate(cols) for edge in (i / buckets, (i + 1) / buckets)]


def voice_heatmap(units: Units, buckets: int = 8) -> go.Heatmap | None:
    """The voice codes the LM reads beside the units, as a small heatmap: one row per voice stream (1 at the top),
    one column per run of units sharing their codes, ``buckets`` colour levels (dark = low, bright = high). A cell's
    customdata is ``[bucket, start s, length ms, stream]``: a click plays its stretch (hear.py). None without voice
    streams."""
    runs = voice_runs(units)
    if not runs:
        return None
    n = len(runs[0][2])
    z = [[c[k] + 1 for _, _, c in runs] for k in range(n)]
    custom = [[[c[k] + 1, round(a, 3), round((b - a) * 1000), k + 1] for a, b, c in runs] for k in range(n)]
    return go.Heatmap(
        z=z, x=[a for a, _, _ in runs] + [runs[-1][1]], y=list(range(1, n + 1)), customdata=custom,
        colorscale=voice_colorscale(buckets), zmin=0.5, zmax=buckets + 0.5, showscale=False, xgap=1, name="voice",
        hovertemplate=(f"voice stream %{{customdata[3]}}: bucket %{{customdata[0]}} of {buckets}<br>"
                       "%{customdata[1]:.2f} s, %{customdata[2]} ms<extra></extra>"))


def signal_figure(audio: Audio, units: Units, voice_buckets: int = 8) -> go.Figure:
    """Waveform, spectrogram with the pitch curve, and the unit sequence as coloured segments on one time axis; with
    voice streams, the units' voice codes as a heatmap under them (:func:`voice_heatmap`)."""
    wav, sr = audio.wav, audio.sample_rate
    voice = voice_heatmap(units, voice_buckets)
    rows, heights, height = 3, [0.2, 0.55, 0.25], 430
    area = height - 56 - 40  # the plotting area between the title and the axis title (_layout's margins)
    if voice is not None:  # the first three rows keep their pixel heights; the voice map gets ~6 px per stream
        extra = 24 + 6 * len(voice.y)
        heights = [f * area / (area + extra) for f in heights] + [extra / (area + extra)]
        rows, height = 4, height + extra
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.04 * area / (height - 96),
                        row_heights=heights, specs=[[{}], [{"secondary_y": True}]] + [[{}]] * (rows - 2))
    # Waveform as a min/max envelope (~1000 columns).
    cols = max(1, wav.numel() // 1000)
    n = wav.numel() // cols * cols
    env = wav[:n].view(-1, cols)
    t = (torch.arange(env.shape[0]) * cols + cols / 2) / sr
    fig.add_trace(go.Scatter(x=t.tolist(), y=env.max(1).values.tolist(), line=dict(width=0.8, color="#64748b"),
                             hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t.tolist(), y=env.min(1).values.tolist(), line=dict(width=0.8, color="#64748b"),
                             fill="tonexty", fillcolor="rgba(100,116,139,0.35)", hoverinfo="skip"), row=1, col=1)
    # Spectrogram and pitch.
    db, times, freqs = spectrogram(wav, sr)
    fig.add_trace(go.Heatmap(z=[[round(float(v), 1) for v in row] for row in db], x=times.tolist(),
                             y=freqs.tolist(), colorscale="Magma", showscale=False,
                             hovertemplate="%{x:.2f} s, %{y:.0f} Hz<extra></extra>"), row=2, col=1)
    fp = units.frame_pitch if units.frame_pitch is not None else torch.zeros(0)
    pt = ((torch.arange(fp.numel()) + 0.5) / units.frame_rate).tolist()
    fig.add_trace(go.Scatter(x=pt, y=[float(v) if v > 0 else None for v in fp], mode="lines",
                             line=dict(color="#22d3ee", width=2.5), name="pitch",
                             hovertemplate="pitch %{y:.0f} Hz at %{x:.2f} s<extra></extra>"),
                  row=2, col=1, secondary_y=True)
    # Units as coloured segments, aligned by their durations.
    start = (units.starts.float() / units.frame_rate).tolist()
    dur = (units.durations.float() / units.frame_rate).tolist()
    ids = units.ids.tolist()
    pitch = units.pitch.tolist()
    fig.add_trace(go.Bar(
        x=[s + d / 2 for s, d in zip(start, dur)], y=[1] * len(ids), width=dur, base=0,
        marker=dict(color=[unit_color(u) for u in ids], line=dict(color="white", width=0.5)),
        text=[str(u) for u in ids], textposition="inside", insidetextanchor="middle",
        textfont=dict(color="white", size=11),
        customdata=[[u, s, d * 1000, p] for u, s, d, p in zip(ids, start, dur, pitch)],
        hovertemplate="unit %{customdata[0]}<br>start %{customdata[1]:.2f} s<br>%{customdata[2]:.0f} ms"
                      "<br>pitch %{customdata[3]:.0f} Hz<extra></extra>",
    ), row=3, col=1)
    fig.update_yaxes(visible=False, row=1, col=1)
    fig.update_yaxes(title_text="Hz", row=2, col=1, secondary_y=False)
    fig.update_yaxes(title_text="pitch (Hz)", range=[0, 450], row=2, col=1, secondary_y=True, showgrid=False,
                     color="#0891b2")
    fig.update_yaxes(visible=False, range=[0, 1], row=3, col=1)
    if voice is not None:
        fig.add_trace(voice, row=4, col=1)
        fig.update_yaxes(title_text="voice", title_font_size=11, autorange="reversed", tickvals=[1, len(voice.y)],
                         tickfont_size=9, showgrid=False, row=4, col=1)
    fig.update_xaxes(title_text="time (s)", row=rows, col=1)
    fig.update_layout(uniformtext=dict(minsize=8, mode="hide"), bargap=0)
    # short enough for a phone's width (the accordion around it already says "What the model heard")
    return _layout(fig, height, f"{len(ids)} units from {audio.seconds:.2f} s of audio")


def unit_strip_html(units: Units, vocab_size: int | None = None) -> str:
    """The collapsed unit sequence as coloured tokens; hovering one shows its id, start, duration and pitch."""
    spans = []
    starts = units.starts.tolist()
    for u, s, d, p in zip(units.ids.tolist(), starts, units.durations.tolist(), units.pitch.tolist()):
        tip = (f"unit {u} · starts {s / units.frame_rate:.2f} s · {d / units.frame_rate * 1000:.0f} ms · "
               + (f"{p:.0f} Hz" if p > 0 else "unvoiced"))
        spans.append(f'<span class="unit-tok" tabindex="0" style="background:{unit_color(u)}" '
                     f'title="{html.escape(tip)}">{u}</span>')  # focusable: a tap shows the same (style.py)
    frames = int(units.durations.sum())
    head = (f'<div class="unit-caption">{len(spans)} units after collapsing {frames} frames '
            f'({units.frame_rate:.0f} per second); hover or tap a token for its timing and pitch.</div>')
    return f'<div class="unit-strip">{head}<div class="unit-tokens">{"".join(spans)}</div></div>'


# ---------------------------------------------------------------- the answer


def probs_figure(labels: Sequence[str], probs: torch.Tensor, top: int = 12,
                 title: str = "Class probabilities") -> go.Figure:
    """Sorted horizontal bars, the winner highlighted."""
    order = probs.argsort(descending=True)[:top].tolist()
    labs = [labels[i] for i in order]
    vals = [float(probs[i]) for i in order]
    colors = [ACCENT] + [MUTED] * (len(order) - 1)
    fig = go.Figure(go.Bar(x=vals, y=labs, orientation="h", marker_color=colors,
                           text=[percent(v) for v in vals], textposition="outside",
                           cliponaxis=False, hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(range=[0, 1.12], tickformat=".0%", showgrid=True)
    fig.update_yaxes(autorange="reversed", automargin=True)
    more = f" (top {top} of {len(labels)})" if len(labels) > top else ""
    return _layout(fig, 90 + 34 * len(order), title + more)


def figure_text(metric: str, value: float, hint: bool = True) -> str:
    """A headline figure in words: ``accuracy 92.6%``, or ``EER 7.0% (lower is better)`` for an error rate."""
    if metric.endswith("eer"):
        return f"EER {value:.1%}" + (" (lower is better)" if hint else "")
    return f"accuracy {value:.1%}"


def card_figure(info: TaskInfo) -> str:
    """The card's honest figure with what it measures: ``92.6% — accuracy on a real speaker never heard...`` (an
    error rate says lower is better); '' without a card."""
    card, head = info.card, info.headline()
    if card is None or head is None:
        return ""
    return f"{head[1]:.1%}{' (lower is better)' if card.lower_is_better else ''} — {card.test_means}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def learned_from(card: TaskCard) -> str:
    """Whose speech a prompt learned from, in words."""
    people = _count(card.real_speakers, "real person", "real people")
    voices = _count(card.synthetic_voices, "synthetic voice", "synthetic voices")
    return {"real": f"recordings of {people}", "synthetic": f"{voices} only, no real person",
            "both": f"{people} and {voices}"}[card.training_speech]


def card_html(info: TaskInfo) -> str:
    """The task card beside an answer: the honest figure and what it measures, whose speech the prompt learned
    from, and what it is not for ('' for a prompt without a card, e.g. one trained in the app)."""
    card, figure = info.card, card_figure(info)
    if card is None or not figure:
        return ""
    rows = [("How well", figure), ("Learned from", learned_from(card)), ("Not for", card.not_for)]
    return ('<div class="trust">' + "".join(f'<div class="trust-row"><span class="trust-key">{k}</span> '
                                            f'{html.escape(v)}</div>' for k, v in rows) + "</div>")


def headline_html(label: str, confidence: float, task_title: str) -> str:
    return (f'<div class="headline"><div class="headline-task">{html.escape(task_title)}</div>'
            f'<div class="headline-label">{html.escape(label)}</div>'
            f'<div class="headline-conf">{confidence:.0%} confident</div>'
            '<div class="headline-note">Confidence is not correctness: a prompt always picks one of its own classes, '
            'even for a clip it was never meant for.</div></div>')


def per_stream(voice_probs: torch.Tensor, buckets: int) -> torch.Tensor:
    """A distribution over every voice stream's codes side by side, renormalised within each stream: the LM's
    probability of each code of each stream."""
    p = voice_probs.reshape(-1, buckets)
    return (p / p.sum(-1, keepdim=True).clamp_min(1e-12)).flatten()


def verbalizer_figure(prompt: TaskPrompt, probs: torch.Tensor, stream_probs: dict[str, torch.Tensor] | torch.Tensor,
                      classes: int = 3, top: int = 6) -> go.Figure:
    """How the verbalizer turns the LM's next-token distribution into classes.

    Learnable: for the most likely classes, the inputs (units, and for a prosody LM the next duration and pitch
    buckets, and on a backbone with voice streams the next unit's voice codes, ``voice k: b/8``) whose
    ``weight x standardised log-probability`` pushes that class most (up or down). Fixed: each class's unit token
    and the prompted LM's probability for it. ``stream_probs``: ``Prediction.stream_probs``
    (a bare tensor is the next-unit distribution)."""
    streams = {"units": stream_probs} if isinstance(stream_probs, torch.Tensor) else stream_probs
    unit_probs = streams["units"]
    V = unit_probs.numel()
    if prompt.verbalizer is None:
        tokens = prompt.tokens.tolist()
        p_tok = [float(unit_probs[t]) for t in tokens]
        win = int(probs.argmax())
        fig = go.Figure(go.Bar(
            x=[f"{lab}<br><span style='font-size:11px'>unit {unit_label(t, V)}</span>"
               for lab, t in zip(prompt.labels, tokens)], y=p_tok,
            marker_color=[ACCENT if i == win else unit_color(t) for i, t in enumerate(tokens)],
            text=[f"{p:.1%}" for p in p_tok], textposition="outside", cliponaxis=False,
            hovertemplate="%{x}<br>LM probability %{y:.4f}<extra></extra>"))
        fig.update_yaxes(title_text="P(next unit)", rangemode="tozero")
        return _layout(fig, 340, f"Fixed verbalizer ({prompt.config.verbalizer})<br><sup>each class is one unit token; "
                                "the class with the likeliest token wins</sup>", top=80)
    x = verbalizer_input({k: torch.log(v.clamp_min(1e-12))[None] for k, v in streams.items()}, prompt.reads)[0]
    nb = prompt.lm_config.voice_buckets
    p_in = torch.cat([per_stream(streams[k], nb) if k == "voice" else streams[k] for k in prompt.reads])
    names = [stream_feature_label(k, i, V, nb) for k in prompt.reads for i in range(streams[k].numel())]
    contrib = prompt.verbalizer.weight.detach() * x[None, :]
    shown = probs.argsort(descending=True)[: min(classes, len(prompt.labels))].tolist()
    # One panel per class, stacked: each gets the full width, so long labels never run into a neighbour's bars.
    fig = make_subplots(rows=len(shown), cols=1, vertical_spacing=0.3 / max(len(shown), 1),
                        subplot_titles=[f"class “{prompt.labels[c]}” ({percent(float(probs[c]))})" for c in shown])
    for j, c in enumerate(shown, start=1):
        idx = contrib[c].abs().argsort(descending=True)[:top].tolist()
        vals = [float(contrib[c, i]) for i in idx]
        fig.add_trace(go.Bar(
            x=vals, y=[names[i] for i in idx], orientation="h",
            marker_color=[POSITIVE if v > 0 else NEGATIVE for v in vals],
            customdata=[[float(prompt.verbalizer.weight[c, i]), float(x[i]), float(p_in[i])] for i in idx],
            hovertemplate="next token %{y}: contribution %{x:.3f}<br>weight %{customdata[0]:.3f} × input "
                          "%{customdata[1]:.2f}<br>LM probability %{customdata[2]:.4f}<extra></extra>"), row=j, col=1)
        fig.update_yaxes(autorange="reversed", automargin=True, row=j, col=1)
        fig.update_xaxes(nticks=5, tickangle=0, zeroline=True, zerolinecolor="#94a3b8", row=j, col=1)
    fig.update_xaxes(title_text="push on the class score (weight × input)", title_font_size=12, row=len(shown), col=1)
    fig.update_annotations(font_size=13)
    lines = ["the LM's next-token guesses that push each", "likely class up (green) or down (red)",
             f"“unit 47” = speech sound no. 47 of {V - 1} (tokens above)"]
    if "duration" in prompt.reads:
        lines.append("“dur” = how long the next sound lasts (frames)")
    if "voice" in prompt.reads:
        lines.append(voice_legend(nb))
    top = 48 + 17 * len(lines) + 28  # the title and its lines, then room for the first panel's title
    fig = _layout(fig, top + 170 * len(shown), "Learnable verbalizer<br><sup>" + "<br>".join(lines) + "</sup>",
                  top=top)
    fig.update_layout(title=dict(yref="container", y=1 - 28 / fig.layout.height, yanchor="top"))
    return fig


def steering_figure(base: torch.Tensor, prompted: torch.Tensor, tokens: Sequence[int] = (),
                    token_labels: Sequence[str] = ()) -> go.Figure:
    """The frozen LM's next-unit distribution without a prompt (top) and with the task's prompt (bottom)."""
    V = base.numel()
    units = [unit_label(i, V) for i in range(V)]

    def entropy(p: torch.Tensor) -> float:
        return float(-(p * torch.log2(p.clamp_min(1e-12))).sum())

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.16, subplot_titles=[
        f"Frozen LM, no prompt: next unit<br>after the clip (entropy {entropy(base):.1f} bits)",
        f"Same frozen LM with the task prompt<br>(entropy {entropy(prompted):.1f} bits)"])
    for row, (p, color) in enumerate(((base, "#94a3b8"), (prompted, ACCENT)), start=1):
        # a filled line, not bars: with hundreds of units a bar is under a pixel wide on a phone and fades out,
        # while a line still draws every peak
        fig.add_trace(go.Scatter(x=list(range(V)), y=p.tolist(), mode="lines", line=dict(color=color, width=1.5),
                                 fill="tozeroy", customdata=units,
                                 hovertemplate="unit %{customdata}: %{y:.4f}<extra></extra>"), row=row, col=1)
        for t, lab in zip(tokens, token_labels):
            fig.add_annotation(x=t, y=float(p[t]), text=html.escape(lab), showarrow=True, arrowhead=2, ay=-24,
                               font=dict(size=11, color="#111827"), row=row, col=1)
        top = int(p.argmax())
        if top not in tokens:  # with hundreds of units a bar is under a pixel wide on a phone: name the likeliest
            fig.add_annotation(x=top, y=float(p[top]), text=f"unit {units[top]}: {float(p[top]):.0%}",
                               showarrow=True, arrowhead=2, ax=-40 if top > V / 2 else 40, ay=-20,
                               font=dict(size=11, color="#111827"), row=row, col=1)
    fig.update_xaxes(title_text="unit id (the last one: end of utterance)", row=2, col=1)
    fig.update_xaxes(range=[-0.5, V - 0.5])
    fig.update_yaxes(rangemode="tozero", tickformat=".0%", ticksuffix=" ")  # keeps "0%" clear of the x axis' "0"
    return _layout(fig, 460, None, top=50)


# ---------------------------------------------------------------- training and storage


def training_figure(history: Sequence[dict], title: str = "Training the prompt (the LM stays frozen)") -> go.Figure:
    """Loss (left axis) and accuracy (right axis) per epoch."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ep = [r["epoch"] for r in history]
    fig.add_trace(go.Scatter(x=ep, y=[r["loss"] for r in history], name="loss", mode="lines+markers",
                             line=dict(color="#f97316", width=2.5)), secondary_y=False)
    fig.add_trace(go.Scatter(x=ep, y=[r["train_acc"] for r in history], name="training accuracy",
                             mode="lines+markers", line=dict(color=ACCENT, width=2.5)), secondary_y=True)
    if any(r.get("val_acc") is not None for r in history):
        fig.add_trace(go.Scatter(x=ep, y=[r.get("val_acc") for r in history], name="held-out accuracy",
                                 mode="lines+markers", line=dict(color=POSITIVE, width=2.5, dash="dot")),
                      secondary_y=True)
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_yaxes(title_text="loss", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.05], tickformat=".0%", secondary_y=True, showgrid=False)
    return _layout(fig, 320, title, showlegend=True, legend=dict(orientation="h", y=-0.25))


def storage_figure(n_tasks: int, prompt_total: int, lm_one: int) -> go.Figure:
    """N prompts against N fine-tuned copies of the LM, with the one shared frozen LM between (log scale)."""
    n = max(n_tasks, 1)
    names = [f"{n} task prompts", "1 frozen LM<br>(shared by all)", f"{n} fine-tuned<br>LM copies"]
    vals = [prompt_total, lm_one, n * lm_one]
    fig = go.Figure(go.Bar(x=names, y=vals, marker_color=[ACCENT, "#94a3b8", "#f97316"],
                           text=[human_bytes(v) for v in vals], textposition="outside", cliponaxis=False,
                           hovertemplate="%{x}: %{y:,} bytes<extra></extra>"))
    fig.update_yaxes(title_text="bytes on disk (log scale)", type="log")
    return _layout(fig, 320, "Storage for these tasks")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
