"""View 2, "All tasks at once": one clip through every loaded prompt in a single batched pass."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from ..engine import Engine
from . import plots
from ..prompt_files import prompt_file_bytes
from .feedback import alert_html, fail, message_of, require_audio, require_speech, user_errors
from .session import Session, session_engine
from .widgets import INFERENCE, example_buttons

HEADERS = ["Task", "Answer", "Confidence", "Runner-up"]


@dataclass
class AllOutputs:
    rows: list[list[Any]]
    timing: str
    storage: str
    storage_fig: go.Figure

    def as_tuple(self) -> tuple:
        return (self.rows, self.timing, self.storage, self.storage_fig)


def storage_story(engine: Engine) -> tuple[str, go.Figure]:
    """N prompts x KB against N fine-tuned LM copies x MB, from real file sizes and parameter counts."""
    tasks = engine.tasks
    n = len(tasks)
    sizes = [prompt_file_bytes(engine.prompts[t]) for t in tasks]
    params = [engine.prompts[t].num_trainable() for t in tasks]
    lm_b, lm_p = engine.backbone.lm_bytes(), engine.backbone.lm.num_params()
    total = sum(sizes)
    text = (f"**Storage.** {n} task prompts take **{plots.human_bytes(total)}** in all "
            f"({plots.human_bytes(total / max(n, 1))} and {sum(params) // max(n, 1):,} parameters each on average), "
            f"on top of one frozen LM of {plots.human_bytes(lm_b)} ({lm_p:,} parameters) that they all share. "
            f"Fine-tuning instead would store {n} copies of the LM: **{plots.human_bytes(n * lm_b)}**, "
            f"{n * lm_b / max(total, 1):,.0f}× the prompts.")
    return text, plots.storage_figure(n, total, lm_b)


@user_errors
def run_all(engine: Engine, session: Session | None, audio_path: str | None) -> AllOutputs:
    """Every task (the loaded ones and this visitor's own) on one clip, in one batched forward pass."""
    path = require_audio(audio_path)
    eng = session_engine(engine, session)
    if not eng.tasks:
        raise fail("No task prompts are loaded yet: train one in the 'Train a prompt' tab.")
    analysis = eng.analyze(path, eng.tasks)
    require_speech(analysis.audio.seconds)
    rows = []
    for pred in analysis.predictions:
        order = pred.probs.argsort(descending=True).tolist()
        second = f"{pred.labels[order[1]]} ({float(pred.probs[order[1]]):.0%})" if len(order) > 1 else ""
        rows.append([eng.prompts[pred.task].info.title, pred.label, f"{pred.confidence:.0%}", second])
    t = analysis.timings_ms
    timing = (f"**{len(rows)} tasks in one batched pass of the frozen LM: {t['lm']:.0f} ms** "
              f"(decoding {t['decode']:.0f} ms and units {t['encode']:.0f} ms are done once for all tasks; "
              f"total {t['total']:.0f} ms).")
    if analysis.notices:
        timing += "\n\n" + "\n\n".join(f"**Note:** {n}" for n in analysis.notices)
    text, fig = storage_story(eng)
    return AllOutputs(rows=rows, timing=timing, storage=text, storage_fig=fig)


CONFIDENCE_NOTE = ("Confidence is not correctness: every prompt must pick one of its own classes, so it answers "
                   "(often with 100 %) even for a clip it was never meant for, such as a sentence given to the "
                   "digits prompt. Only the task that matches your clip gives a meaningful answer.")


def answer_or_alert(engine: Engine, session: Session | None, audio_path: str | None) -> tuple:
    """The view's outputs; a problem empties the answer table and stays on the page as an alert."""
    try:
        return run_all(engine, session, audio_path).as_tuple()
    except gr.Error as exc:
        return [], alert_html(message_of(exc), "Record, upload or click an example clip, then run again."), \
            gr.skip(), gr.skip()


def build(engine: Engine, state: gr.State) -> dict[str, Any]:
    gr.Markdown("One clip, every task prompt: the clip is turned into units once, then one batch runs through the "
                "frozen LM with a different prompt on each row.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Your clip", elem_id="all-audio")
            buttons = example_buttons("all")
            run = gr.Button("Run every task", variant="primary", elem_id="all-run")
        with gr.Column(scale=3, min_width=360):
            table = gr.Dataframe(headers=HEADERS, value=[], interactive=False, wrap=True, label="Answers",
                                 elem_id="all-table", max_height=2000)  # every task's row, no inner scrolling
            gr.Markdown(CONFIDENCE_NOTE, elem_classes=["caption"], elem_id="all-confidence-note")
            timing = gr.Markdown(elem_classes=["facts"])
    text, fig = storage_story(engine)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            storage = gr.Markdown(text, elem_classes=["facts"])
        with gr.Column(scale=3):
            storage_fig = gr.Plot(fig, show_label=False)
    outputs = [table, timing, storage, storage_fig]

    def on_run(session: Session, audio_path: str | None) -> tuple:
        return answer_or_alert(engine, session, audio_path)

    run.click(on_run, [state, audio], outputs, api_visibility="private", **INFERENCE)
    audio.stop_recording(on_run, [state, audio], outputs, api_visibility="private", **INFERENCE)  # runs on stop
    for button, ex in buttons:
        button.click(lambda p=ex.path: p, None, audio, api_visibility="private", queue=False).then(
            on_run, [state, audio], outputs, api_visibility="private", **INFERENCE)
    return {"audio": audio, "storage": storage, "storage_fig": storage_fig}
