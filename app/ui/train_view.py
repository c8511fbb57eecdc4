"""View 3, "Train a prompt" (educator mode): name classes, give a few examples, train only the prompt, test it.

The examples live in :mod:`.train_data`, the training run in :mod:`.train_run`; this module lays out the view.
Everything a visitor adds or trains is in their own session (``gr.State``): nobody else sees it.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

import gradio as gr

from ..engine import Engine
from ..settings import TRAIN_SET_DIR
from ..training import FEW_SHOT_SECONDS, MAX_CLASSES, MIN_CLASSES, MIN_PER_CLASS
from .feedback import alert_html, message_of
from .guards import lock_training
from .session import Session
from .train_data import (MAX_FILES_PER_ADD, add_background, add_examples, clear_examples, examples_status,
                         load_bundled, remove_last, set_classes)
from .train_run import test_clip, train
from .widgets import INFERENCE

log = logging.getLogger(__name__)


def _busy() -> dict:
    return gr.update(interactive=False, value="Training…")


#: What a teacher should know about the bundled set (docs/FEWSHOT.md measures how its prompts fare on real people).
BUNDLED_NOTE = "The bundled takes are synthetic voices (espeak-ng), not recordings of people."
BUNDLED_HINT = ("A prompt trained on them alone often fails on real voices: record a few takes of real people for "
                "each class as well before you train.")


def build(engine: Engine, state: gr.State) -> dict[str, Any]:
    """Lay out the view and wire its events; returns the components the layout connects to other views."""
    gr.Markdown(
        f"Teach the frozen speech LM a new task by training **only a prompt**. Name {MIN_CLASSES}–{MAX_CLASSES} "
        f"classes, give each at least {MIN_PER_CLASS} examples (record, upload, or load the bundled set), then train. "
        "Takes from several voices help most: each take is also heard slower, faster, higher, lower, in a room and "
        "in noise. After training you see an estimate of the accuracy on takes the prompt never heard "
        f"(cross-validation over your takes). A run takes at most {FEW_SHOT_SECONDS:.0f} s. Your examples and prompts "
        "are private to this browser tab.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            gr.Markdown("#### 1. Classes")
            classes = gr.Textbox(label="Class names", placeholder="yes, no, stop", elem_id="train-classes")
            with gr.Row():
                set_btn = gr.Button("Set classes", size="sm")
                bundled_btn = gr.Button("Load the bundled yes / no / stop set", size="sm",
                                        visible=TRAIN_SET_DIR.is_dir(), elem_id="train-bundled")
            background_btn = gr.Button("Add a background class (room noise, no word)", size="sm",
                                       elem_id="train-background")
            gr.Markdown("#### 2. Examples")
            label = gr.Dropdown(choices=[], label="These examples are of class", elem_id="train-label")
            recording = gr.Audio(sources=["microphone", "upload"], type="filepath", elem_id="train-recording",
                                 label="Record one example (added to this class when you stop)")
            files = gr.File(file_count="multiple", file_types=["audio"], label=f"…or upload up to "
                            f"{MAX_FILES_PER_ADD} clips at once", height=170)
            with gr.Row():
                add_btn = gr.Button("Add to class", variant="secondary", size="sm")
                undo_btn = gr.Button("Remove this class's last example", size="sm", elem_id="train-undo")
                clear_btn = gr.Button("Clear examples", size="sm", elem_id="train-clear")
            with gr.Row(visible=False, elem_id="train-clear-confirm") as confirm_row:
                confirm_text = gr.Markdown()
                clear_yes = gr.Button("Yes, delete them", size="sm", variant="stop", elem_id="train-clear-yes")
                clear_no = gr.Button("Keep them", size="sm", elem_id="train-clear-no")
            alert = gr.HTML(elem_id="train-alert")  # what went wrong with the last action (or what to know about it)
            status = gr.Markdown(examples_status(Session()), elem_id="train-status")
        with gr.Column(scale=1, min_width=320):
            gr.Markdown("#### 3. Train")
            title = gr.Textbox(label="Task name", value="My words", max_length=60)
            length = gr.Slider(1, 16, value=5, step=1, label="Prompt length (vectors)")
            verbalizer = gr.Radio(["learnable", "freq", "random"], value="learnable", label="Verbalizer",
                                  info="learnable: a linear map from the LM's whole next-token output, units plus "
                                       "duration and pitch buckets (v2); "
                                       "freq / random: one fixed unit token per class (v1)")
            deep = gr.Checkbox(True, label="Deep prompt (key/value prefixes at every layer)")
            train_btn = gr.Button("Train the prompt", variant="primary", elem_id="train-run")
            train_status = gr.Markdown(elem_classes=["facts"], elem_id="train-log")
            curve = gr.Plot(show_label=False, elem_id="train-curve", elem_classes=["sp-figure"])
            download = gr.DownloadButton("Download the prompt (.zip)", visible=False, elem_id="train-download")
            with gr.Column(visible=False) as test_box:
                gr.Markdown("#### 4. Test it")
                test_audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="A new clip")
                test_btn = gr.Button("Test", variant="primary", size="sm")
                test_head = gr.HTML()
                test_probs = gr.Plot(show_label=False, elem_id="train-test-probs", elem_classes=["sp-figure"])

    def on_set(session: Session, text: str) -> tuple:
        try:
            session, table, names = set_classes(session, text)
        except gr.Error as exc:
            return session, gr.skip(), gr.skip(), alert_html(message_of(exc), "Then press Set classes again.")
        return session, table, gr.update(choices=names, value=names[0]), ""

    def on_bundled(session: Session) -> tuple:
        try:
            session, text, table = load_bundled(engine, session)
        except gr.Error as exc:
            return session, gr.skip(), gr.skip(), gr.skip(), alert_html(message_of(exc))
        return (session, text, table, gr.update(choices=session.classes, value=session.classes[0]),
                alert_html(BUNDLED_NOTE, BUNDLED_HINT))

    def on_background(session: Session) -> tuple:
        try:
            session, table, names = add_background(engine, session)
        except gr.Error as exc:
            return session, gr.skip(), gr.skip(), gr.skip(), alert_html(message_of(exc))
        return session, ", ".join(names), table, gr.update(choices=names, value=names[-1]), ""

    def on_add(session: Session, lab: str, rec: str | None, fs: list[str] | None) -> tuple:
        """Add the clips; whatever happens the recorder and the file box are emptied (their files are used up), and
        any problem stays on the page above the table."""
        try:
            session, table, warnings = add_examples(engine, session, lab, rec, fs)
        except gr.Error as exc:
            return session, gr.skip(), None, None, alert_html(message_of(exc))
        note = ""
        if warnings:
            more = f" (and {len(warnings) - 5} more)" if len(warnings) > 5 else ""
            note = alert_html("Not added: " + " · ".join(warnings[:5]) + more,
                              "Record again, or upload other clips.")
        return session, table, None, None, note

    def on_recorded(session: Session, lab: str, rec: str | None) -> tuple:
        out = on_add(session, lab, rec, None)  # the session, the table, an empty recorder, the alert
        return out[0], out[1], out[2], out[4]

    def on_undo(session: Session, lab: str | None) -> tuple:
        try:
            session, table = remove_last(session, lab)
        except gr.Error as exc:
            return session, gr.skip(), alert_html(message_of(exc))
        return session, table, ""

    def on_clear_asked(session: Session) -> tuple:
        n = sum(len(v) for v in session.examples.values())
        if not n:
            return gr.update(visible=False), "", alert_html("There are no examples to clear.")
        return gr.update(visible=True), f"Delete all **{n}** examples? This cannot be undone.", ""

    def on_clear(session: Session) -> tuple:
        session, table = clear_examples(session)
        return session, table, gr.update(visible=False)

    def on_train(session: Session, name: str, p_len: float, verb: str, use_deep: bool, request: gr.Request,
                 progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Outputs: log, curve, session, download, test box, the train button, the new task id (None unless
        this run trained one). The click locks the button at once; this handler unlocks it however the run ends
        (an event chained after a failed one would never run), and a refusal (not enough examples...) stays in the
        log with what to do next."""
        visitor = getattr(request, "session_hash", None) or "anonymous"
        busy, idle = _busy(), gr.update(interactive=True, value="Train the prompt")
        try:
            for up in train(engine, session, name, p_len, verb, use_deep, visitor, progress):
                if not up.done:
                    yield up.status, up.curve, gr.skip(), gr.skip(), gr.skip(), busy, None
                else:
                    yield (up.status, up.curve, session, gr.update(value=up.zip_path, visible=True),
                           gr.update(visible=True), idle, up.task)
        except Exception as exc:  # noqa: BLE001 - whatever happened, the visitor can try again
            if not isinstance(exc, gr.Error):
                log.exception("training run failed")
            text = message_of(exc) if isinstance(exc, gr.Error) else f"Training failed ({type(exc).__name__})."
            yield (alert_html(text, "Fix that, then press Train the prompt again."), gr.skip(),
                   gr.skip(), gr.skip(), gr.skip(), idle, None)

    def on_test(session: Session, path: str | None) -> tuple:
        try:
            return test_clip(engine, session, path)
        except gr.Error as exc:
            return alert_html(message_of(exc)), None

    set_btn.click(on_set, [state, classes], [state, status, label, alert], api_visibility="private")
    classes.submit(on_set, [state, classes], [state, status, label, alert], api_visibility="private")
    bundled_btn.click(on_bundled, [state], [state, classes, status, label, alert], api_visibility="private",
                      **INFERENCE)
    background_btn.click(on_background, [state], [state, classes, status, label, alert], api_visibility="private",
                         **INFERENCE)
    add_btn.click(on_add, [state, label, recording, files], [state, status, recording, files, alert],
                  api_visibility="private", **INFERENCE)
    # Record, stop, record again: each finished recording goes to the chosen class and the recorder is free again.
    recording.stop_recording(on_recorded, [state, label, recording], [state, status, recording, alert],
                             api_visibility="private", **INFERENCE)
    undo_btn.click(on_undo, [state, label], [state, status, alert], api_visibility="private")
    clear_btn.click(on_clear_asked, [state], [confirm_row, confirm_text, alert], api_visibility="private",
                    queue=False)
    clear_yes.click(on_clear, [state], [state, status, confirm_row], api_visibility="private", queue=False)
    clear_no.click(lambda: gr.update(visible=False), None, confirm_row, api_visibility="private", queue=False)
    new_task = gr.State(None)
    # A full training queue is said in this first (queued) step, before the button is locked: a request refused at
    # the queue's door never reaches on_train, which unlocks it.
    locked = train_btn.click(lock_training, None, train_btn, api_visibility="private")
    trained = locked.success(on_train, [state, title, length, verbalizer, deep],
                          [train_status, curve, state, download, test_box, train_btn, new_task],
                          api_visibility="private", concurrency_id="train", concurrency_limit=1)
    test_btn.click(on_test, [state, test_audio], [test_head, test_probs], api_visibility="private", **INFERENCE)
    test_audio.stop_recording(on_test, [state, test_audio], [test_head, test_probs], api_visibility="private",
                              **INFERENCE)  # a recorded test clip is tested when the recording stops
    return {"trained": trained, "new_task": new_task}

