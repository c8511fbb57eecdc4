"""Named API endpoints for gradio_client: ``/classify`` and ``/classify_all``, one JSON output each.

``/classify`` -> ``{"task", "label", "probs", "notices"}``; ``/classify_all`` -> a list of those, one per task.
``notices`` says what was done to the clip (capped at 30 s, padded, NaN samples replaced, clipped...).
They live on hidden components so the client gets a plain value (not a tuple of every figure the views show).
Bad input ends in a ``gr.Error`` with a clear message; the server keeps serving.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from ..engine import Engine
from .feedback import fail, user_errors
from .widgets import INFERENCE


def _audio(path: Any) -> str:
    if isinstance(path, dict):  # a FileData-like dict from a hand-written client
        path = path.get("path")
    if not path or not isinstance(path, str):
        raise fail("Send an audio file (e.g. handle_file('clip.wav') with gradio_client).")
    return path


@user_errors
def classify(engine: Engine, audio: Any, task: Any) -> dict[str, Any]:
    """One task on one clip -> ``{"task", "label", "probs"}``."""
    path = _audio(audio)
    if not isinstance(task, str) or not task.strip():
        raise fail(f"Give a task id. Available: {', '.join(engine.tasks) or 'none'}.")
    task = task.strip()
    engine.get(task)  # unknown or malformed ids -> a clear message before any decoding
    analysis = engine.analyze(path, [task])
    return {**analysis.predictions[0].to_dict(), "notices": analysis.notices}


@user_errors
def classify_all(engine: Engine, audio: Any) -> list[dict[str, Any]]:
    """Every loaded task on one clip, in one batched pass -> a list of ``{"task", "label", "probs"}``."""
    path = _audio(audio)
    if not engine.tasks:
        raise fail("No task prompts are loaded on this server.")
    analysis = engine.analyze(path, engine.tasks)
    return [{**p.to_dict(), "notices": analysis.notices} for p in analysis.predictions]


def build(engine: Engine) -> None:
    """Hidden inputs, outputs and buttons that carry the two endpoints."""
    with gr.Row(visible=False):
        audio = gr.Audio(type="filepath", sources=["upload"], label="audio")
        task = gr.Textbox(label="task")
        out_one = gr.JSON(label="prediction")
        out_all = gr.JSON(label="predictions")
        one = gr.Button("classify")
        every = gr.Button("classify_all")

    def api_classify(audio_path: str | None, task_id: str) -> dict[str, Any]:
        return classify(engine, audio_path, task_id)

    def api_classify_all(audio_path: str | None) -> list[dict[str, Any]]:
        return classify_all(engine, audio_path)

    one.click(api_classify, [audio, task], out_one, api_name="classify", **INFERENCE,
              api_description="Classify an audio file with one task prompt: {task, label, probs, notices}.")
    every.click(api_classify_all, [audio], out_all, api_name="classify_all", **INFERENCE,
                api_description="Classify an audio file with every task prompt in one batched pass.")
