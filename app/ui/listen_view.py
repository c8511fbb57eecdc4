"""View "Listen": the microphone streams, each word is classified as soon as it ends (Teachable Machine style).

Gradio streams the microphone in short chunks (``STREAM_EVERY``) to :func:`on_chunk`, which feeds the visitor's
:class:`~app.ui.listening.Listener` and returns one light HTML block (or nothing when nothing changed). Streams
have their own queue pool (``LISTEN``), a time limit, and a bounded buffer per visitor.
"""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from ..engine import Engine
from .listening import IDLE_HTML, Listener, listen_html
from .session import Session, session_engine, task_choices
from .try_view import default_task

STREAM_EVERY = 0.1  # s of audio per chunk: the latency a word's end waits at most before the server hears it
TIME_LIMIT = 150  # s: a stream is closed after this (the Listener already stops after MAX_STREAM_S of audio)
# Streams have their own pool, apart from "inference": a stream holds its slot while it lasts (mostly waiting for
# chunks), so this many visitors can listen at once; the next one waits in the queue until a stream ends.
LISTEN = {"concurrency_id": "listen", "concurrency_limit": 8}


def on_chunk(engine: Engine, session: Session | None, listener: Listener | None, task: str | None, chunk: Any) -> Any:
    """One microphone chunk ``(rate, samples)`` into the visitor's listener (changed in place: no state is sent
    back per chunk); returns the new view, or skips it when nothing changed."""
    if not isinstance(listener, Listener) or not isinstance(chunk, tuple) or len(chunk) != 2:
        return gr.skip()
    rate, samples = chunk
    eng = session_engine(engine, session)
    task = task if task in eng.prompts else None
    try:
        rate = int(rate)
        samples = np.asarray(samples)
        if not 4000 <= rate <= 192_000 or samples.dtype.kind not in "iuf" or samples.size == 0:
            return gr.skip()
    except (TypeError, ValueError):
        return gr.skip()
    changed = listener.feed(eng, task, rate, samples)
    if not changed:
        return gr.skip()
    title = eng.prompts[task].info.title if task else "Choose a task"
    return listen_html(listener, title)


def build(engine: Engine, state: gr.State) -> dict[str, Any]:
    """Lay out the view and wire the stream; returns the components other views update."""
    listener = gr.State(Listener())  # one per visitor, replaced at each Record
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            task = gr.Dropdown(choices=task_choices(engine), value=default_task(engine), label="Task",
                               elem_id="listen-task")
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                           elem_id="listen-mic")
            gr.Markdown("Press **Record** and speak one word at a time, with a short pause between words. Your own "
                        "prompt from **Train a prompt** is in the task list too.", elem_classes=["caption"])
        with gr.Column(scale=3, min_width=320):
            view = gr.HTML(IDLE_HTML, elem_id="listen-live")

    def chunk(session: Session, lis: Listener | None, task_id: str | None, audio: Any) -> Any:
        return on_chunk(engine, session, lis, task_id, audio)

    def start() -> tuple:
        return Listener(), listen_html(None)

    mic.start_recording(start, None, [listener, view], api_visibility="private", queue=False)
    mic.stream(chunk, [state, listener, task, mic], view, stream_every=STREAM_EVERY,
               time_limit=TIME_LIMIT, show_progress="hidden", api_visibility="private", **LISTEN)
    return {"task": task}
