"""The Gradio app: one module per view (try, all tasks, train, how it works), figures in plots.py.

``build_ui(engine)`` makes the Blocks from any :class:`~app.engine.Engine` (the real one in ``app.py``, a tiny one
in tests); ``launch_options()`` gives what ``launch()`` needs (theme, CSS, upload limit, allowed paths).
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from ..engine import Engine
from . import all_view, api, guards, how_view, listen_view, train_view, try_view
from ..settings import (EXAMPLES_DIR, INFERENCE_CONCURRENCY, UPLOAD_DISK_MB, UPLOAD_MB_PER_CLIENT,
                        UPLOAD_MB_TOTAL)
from .session import Session, cleanup_session, session_engine, task_choices
from .hear import HEAR_CSS, HEAR_JS
from .listening import LISTEN_CSS
from .style import CSS, THEME, header_html

MAX_UPLOAD = "20mb"  # per file; a 10-minute 16 kHz WAV still fits, and is capped to 30 s when decoded
QUEUE_SIZE = 64  # per pool: requests waiting beyond this are refused at once ("queue full"), not left to time out
__all__ = ["build_ui", "launch_options"]


def build_ui(engine: Engine) -> gr.Blocks:
    """All four views around one shared engine; each visitor's own prompts and examples live in ``gr.State``."""
    with gr.Blocks(title="SpeechPrompt v2: one frozen speech LM, many tiny prompts",
                   delete_cache=(1800, 3600)) as demo:
        state = gr.State(Session(), delete_callback=cleanup_session)
        gr.HTML(header_html(engine))
        with gr.Tabs(overflow_behavior="wrap"):  # every tab name stays on screen (on a phone too), none in a menu
            with gr.Tab("Try a task", id="try"):
                tried = try_view.build(engine, state)
            with gr.Tab("Listen", id="listen"):
                listening = listen_view.build(engine, state)
            with gr.Tab("All tasks at once", id="all"):
                every = all_view.build(engine, state)
            with gr.Tab("Train a prompt", id="train"):
                trained = train_view.build(engine, state)
            with gr.Tab("How it works", id="how"):
                how_view.build(engine)
        api.build(engine)

        def after_training(session: Session, new_task: str | None, audio: str | None) -> tuple:
            """Put the visitor's new prompt in their task pickers and storage story (nothing when the run was
            refused or failed); the Try view's answer for the previous task goes."""
            if not new_task:
                return (gr.skip(),) * (4 + len(tried["outputs"]))
            text, fig = all_view.storage_story(session_engine(engine, session))
            return (gr.update(choices=task_choices(engine, session), value=new_task),
                    try_view.task_card(engine, session, new_task), text, fig,
                    *try_view.task_changed(engine, session, new_task, audio))

        trained["trained"].then(after_training, [state, trained["new_task"], tried["audio"]],
                                [tried["task"], tried["card"], every["storage"], every["storage_fig"],
                                 *tried["outputs"]], api_visibility="private")
        trained["trained"].then(  # Listen mode can use the new prompt at once
            lambda session, new_task: gr.update(choices=task_choices(engine, session), value=new_task)
            if new_task else gr.skip(), [state, trained["new_task"]], listening["task"], api_visibility="private",
            queue=False)
    # Model events share the "inference" pool (widgets.INFERENCE); training runs one at a time ("train").
    demo.queue(default_concurrency_limit=INFERENCE_CONCURRENCY, max_size=QUEUE_SIZE)
    guards.limit_queue(demo, QUEUE_SIZE)  # QUEUE_SIZE places per pool; training: one running + 3 waiting
    return demo


def launch_options() -> dict[str, Any]:
    """Keyword arguments for ``demo.launch()`` shared by app.py and the tests."""
    from gradio.utils import get_upload_folder
    from starlette.middleware import Middleware

    budget = Middleware(guards.UploadBudget, per_client=UPLOAD_MB_PER_CLIENT * guards.MB,
                        total=UPLOAD_MB_TOTAL * guards.MB, disk=UPLOAD_DISK_MB * guards.MB, folder=get_upload_folder)
    return {"theme": THEME, "css": CSS + LISTEN_CSS + HEAR_CSS, "head": HEAR_JS, "max_file_size": MAX_UPLOAD,
            "allowed_paths": [str(EXAMPLES_DIR)], "footer_links": ["api"], "app_kwargs": {"middleware": [budget]}}
