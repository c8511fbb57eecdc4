"""View 1, "Try a task": one clip, one task prompt, and everything in between made visible."""
from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any, Iterator

import gradio as gr
import plotly.graph_objects as go

from ..engine import Analysis, Engine, Prediction
from . import hear, plots
from ..prompt_files import prompt_file_bytes
from .feedback import alert_html, fail, message_of, require_audio, require_speech, user_errors
from .session import Session, session_engine, task_choices
from .widgets import INFERENCE, Example, example_buttons

PLACEHOLDER = ('<div class="headline headline-empty">Pick a task, then record (the clip is classified when you '
               'stop), upload a clip and press <b>Classify</b>, or click an example.</div>')


@dataclass
class TryOutputs:
    """Everything the view shows for one run, in the order of the view's output components."""

    headline: str
    probs: go.Figure
    facts: str
    signal: go.Figure
    strip: str
    steering: go.Figure
    verbalizer: go.Figure

    def as_tuple(self) -> tuple:
        return (self.headline, self.probs, self.facts, self.signal, self.strip, self.steering, self.verbalizer)

    @classmethod
    def cleared(cls, headline: str) -> "TryOutputs":
        """Only ``headline`` (a message); every figure of an earlier answer is cleared, so none is left stale."""
        return cls(headline, None, "", None, "", None, None)  # type: ignore[arg-type]


def task_card(engine: Engine, session: Session | None, task: str | None) -> str:
    """Markdown describing a task: title, description, labels, verbalizer, prompt size, and its measured figure
    (with its card: the honest one, whose speech it learned from and what it is not for)."""
    eng = session_engine(engine, session)
    if not task or task not in eng.prompts:
        if not eng.tasks:
            return "No task prompts are loaded yet. Train one in **Train a prompt**."
        return "Choose a task."
    p = eng.prompts[task]
    labels = " ".join(f"`{lab}`" for lab in p.labels[:40])
    if len(p.labels) > 40:
        labels += f" … ({len(p.labels)} in all)"
    bits = [f"**{p.info.title}**" + (f" — {p.info.description}" if p.info.description else ""),
            f"**Labels ({len(p.labels)}):** {labels}",
            f"Prompt: {p.config.prompt_length} vectors{' + deep prefixes' if p.config.deep else ''}, "
            f"{p.config.verbalizer} verbalizer, {p.num_trainable():,} trainable parameters."]
    figure = plots.card_figure(p.info)
    acc = p.info.metrics.get("test_accuracy") if isinstance(p.info.metrics, dict) else None
    if figure:
        bits[-1] += f" Measured: {figure}."
        bits.append(f"**Learned from:** {plots.learned_from(p.info.card)}. **Not for:** {p.info.card.not_for}.")
    elif isinstance(acc, (int, float)):
        bits[-1] += f" Test accuracy {acc:.1%}."
    return "\n\n".join(bits)


def facts_markdown(engine: Engine, task: str, timings: dict[str, float], extra_ms: float, notices: list[str]) -> str:
    """Latency per stage and the prompt's size against the frozen LM's."""
    p = engine.prompts[task]
    n_p, n_lm = p.num_trainable(), engine.backbone.lm.num_params()
    t = timings
    lines = [
        f"**Latency:** decode {t['decode']:.0f} ms · units {t['encode']:.0f} ms · prompted LM {t['lm']:.0f} ms · "
        f"**total {t['total']:.0f} ms** (the no-prompt comparison below took {extra_ms:.0f} ms more)",
        f"**This prompt:** {n_p:,} trainable parameters ({plots.human_bytes(prompt_file_bytes(p))}) · "
        f"**frozen LM:** {n_lm:,} parameters ({plots.human_bytes(engine.backbone.lm_bytes())}) — the prompt is "
        f"{n_p / max(n_lm, 1):.2%} of the LM.",
    ]
    lines += [f"**Note:** {html.escape(n)}" for n in notices]
    return "\n\n".join(lines)


DEFAULT_TASK = "digits"  # what a visitor can check by saying a number; else the first task


def default_task(engine: Engine) -> str | None:
    """The task the view opens on."""
    return DEFAULT_TASK if DEFAULT_TASK in engine.prompts else (engine.tasks[0] if engine.tasks else None)


def pick_example(engine: Engine, example: Example, current: str | None) -> tuple[str, str | None]:
    """``(clip, task)`` after a click on an example: its own task when that is loaded, else the current one."""
    return example.path, example.task if example.task in engine.prompts else current


@dataclass
class Answer:
    """One clip classified with one task: what the first, fast update shows and the rest is built from."""

    engine: Engine
    task: str
    analysis: Analysis

    @property
    def prediction(self) -> Prediction:
        return self.analysis.predictions[0]

    def headline(self) -> str:
        pred = self.prediction
        info = self.engine.prompts[self.task].info
        return plots.headline_html(pred.label, pred.confidence, info.title) + plots.card_html(info)

    def probs(self) -> go.Figure:
        return plots.probs_figure(self.prediction.labels, self.prediction.probs)


@user_errors
def answer_task(engine: Engine, session: Session | None, audio_path: str | None, task: str | None) -> Answer:
    """Classify one clip with one task (no figures yet)."""
    path = require_audio(audio_path)
    eng = session_engine(engine, session)
    if not task:
        raise fail("Choose a task first." if eng.tasks else
                       "No task prompts are loaded yet: train one in the 'Train a prompt' tab.")
    eng.get(task)
    analysis = eng.analyze(path, [task])
    require_speech(analysis.audio.seconds)
    return Answer(eng, task, analysis)


@user_errors
def explain(answer: Answer) -> TryOutputs:
    """Every figure of the view for an answer (the headline and probabilities included)."""
    eng, task, analysis, pred = answer.engine, answer.task, answer.analysis, answer.prediction
    prompt = eng.get(task)
    t0 = time.perf_counter()
    base = eng.unprompted_distribution(analysis.units)
    extra_ms = (time.perf_counter() - t0) * 1e3
    tokens = prompt.tokens.tolist() if prompt.verbalizer is None else []
    enc, buckets = eng.backbone.encoder, eng.backbone.lm.config.voice_buckets
    window_s = enc.voice.window * enc.hop / eng.backbone.sample_rate if enc.voice is not None else 1.0
    return TryOutputs(
        headline=answer.headline(),
        probs=answer.probs(),
        facts=facts_markdown(eng, task, analysis.timings_ms, extra_ms, analysis.notices),
        signal=plots.signal_figure(analysis.audio, analysis.units, buckets),
        strip=hear.unit_strip_html(analysis.audio, analysis.units, buckets, window_s),
        steering=plots.steering_figure(base, pred.unit_probs, tokens, prompt.labels if tokens else ()),
        verbalizer=hear.name_units(plots.verbalizer_figure(prompt, pred.probs, pred.stream_probs), analysis.units),
    )


def run_task(engine: Engine, session: Session | None, audio_path: str | None, task: str | None) -> TryOutputs:
    """Classify one clip with one task and build every figure of the view."""
    return explain(answer_task(engine, session, audio_path, task))


def run_staged(engine: Engine, session: Session | None, audio_path: str | None, task: str | None) -> Iterator[tuple]:
    """The view's outputs in three updates of one event: the answer (the headline) as soon as the clip is classified,
    then the probabilities, then the figures that explain it (building and drawing those is most of the time; the
    browser draws each update while the server builds the next). The first update clears the previous answer's
    figures, so none is left beside the new headline."""
    answer = answer_task(engine, session, audio_path, task)
    skip = gr.skip()
    yield TryOutputs.cleared(answer.headline()).as_tuple()
    yield (skip, answer.probs()) + (skip,) * 5
    out = explain(answer)
    yield (skip, skip) + out.as_tuple()[2:]


def answer_or_alert(engine: Engine, session: Session | None, audio_path: str | None, task: str | None) -> tuple:
    """The view's outputs for one run; a problem clears the previous answer and stays on the page as an alert
    (with what to do next) instead of a toast that vanishes over a stale answer."""
    try:
        return run_task(engine, session, audio_path, task).as_tuple()
    except gr.Error as exc:
        return answer_or_alert_message(exc, audio_path)


def answer_or_alert_message(exc: gr.Error, audio_path: str | None) -> tuple:
    """The view's outputs for a problem: the previous answer cleared, the message and what to do next."""
    hint = ("Fix that and press Classify again, or try another clip (WAV, FLAC, OGG or MP3) or an example clip."
            if audio_path else
            "Record (it is classified when you stop), upload a clip, or click an example clip.")
    return TryOutputs.cleared(alert_html(message_of(exc), hint)).as_tuple()


def task_changed(engine: Engine, session: Session | None, task: str | None, audio_path: str | None) -> tuple:
    """A new task was picked: the old task's answer goes (it answered another question)."""
    eng = session_engine(engine, session)
    if task in eng.prompts and audio_path:
        title = html.escape(eng.prompts[task].info.title)
        return TryOutputs.cleared(f'<div class="headline headline-empty">Task changed to <b>{title}</b>: press '
                                  "<b>Classify</b> to run it on your clip.</div>").as_tuple()
    return TryOutputs.cleared(PLACEHOLDER).as_tuple()


def staged_or_alert(engine: Engine, session: Session | None, audio_path: str | None,
                    task: str | None) -> Iterator[tuple]:
    """:func:`run_staged`, with a problem shown as :func:`answer_or_alert` shows it."""
    try:
        yield from run_staged(engine, session, audio_path, task)
    except gr.Error as exc:
        yield answer_or_alert_message(exc, audio_path)


def build(engine: Engine, state: gr.State) -> dict[str, Any]:
    """Lay out the view and wire its events; returns the components other views update."""
    choices = task_choices(engine)
    first = default_task(engine)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            task = gr.Dropdown(choices=choices, value=first, label="Task", elem_id="try-task")
            card = gr.Markdown(task_card(engine, None, first), elem_classes=["task-card"])
            audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Your clip",
                             elem_id="try-audio")
            clip_buttons = example_buttons("try")
            run = gr.Button("Classify", variant="primary", elem_id="try-run")
        with gr.Column(scale=3, min_width=360):
            headline = gr.HTML(PLACEHOLDER, elem_id="try-headline")
            probs = gr.Plot(label="Class probabilities", show_label=False, elem_id="try-probs",
                            elem_classes=["sp-figure"])
            facts = gr.Markdown(elem_classes=["facts"])
    heard = ("spectrogram, pitch, units and voice codes" if engine.backbone.encoder.n_voice
             else "spectrogram, pitch and units")
    with gr.Accordion(f"What the model heard: {heard}", open=True):
        signal = gr.Plot(show_label=False, elem_id="try-signal", elem_classes=["sp-figure"])
        strip = gr.HTML()
    with gr.Accordion("How the prompt steers the frozen LM", open=True):
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                steering = gr.Plot(show_label=False, elem_id="try-steering", elem_classes=["sp-figure"])
            with gr.Column(scale=2):
                verbalizer = gr.Plot(show_label=False, elem_id="try-verbalizer", elem_classes=["sp-figure"])
        gr.Markdown("The LM's weights are identical in both rows: only the prompt vectors in front of the units, "
                    "the key/value prefixes at every layer and the separator differ. The verbalizer then reads the "
                    "bottom distribution and turns it into class scores.", elem_classes=["caption"])

    outputs = [headline, probs, facts, signal, strip, steering, verbalizer]

    def on_run(session: Session, audio_path: str | None, task_id: str | None) -> Iterator[tuple]:
        yield from staged_or_alert(engine, session, audio_path, task_id)

    def on_task(session: Session, task_id: str | None) -> str:
        return task_card(engine, session, task_id)

    # The answer shows before the event ends (its figures follow): a click or a recording meanwhile runs right after
    # it ("always_last") instead of being dropped.
    run.click(on_run, [state, audio, task], outputs, api_visibility="private", trigger_mode="always_last",
              **INFERENCE)
    # Speak, stop, see: a finished recording is classified at once (the button stays for uploads and re-runs).
    audio.stop_recording(on_run, [state, audio, task], outputs, api_visibility="private", trigger_mode="always_last",
                         **INFERENCE)
    task.change(on_task, [state, task], card, api_visibility="private", queue=False)
    # Only a visitor's own pick clears the answer (an example click changes the task and then answers at once).
    task.input(lambda session, task_id, audio_path: task_changed(engine, session, task_id, audio_path),
               [state, task, audio], outputs, api_visibility="private", queue=False)
    for button, ex in clip_buttons:  # an example brings its task along (when loaded), then runs
        button.click(lambda current, ex=ex: pick_example(engine, ex, current), task,
                     [audio, task], api_visibility="private", queue=False).then(
            on_run, [state, audio, task], outputs, api_visibility="private", **INFERENCE)
    return {"task": task, "card": card, "audio": audio, "outputs": outputs}
