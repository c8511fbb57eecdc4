"""One training run of "Train a prompt": only the prompt learns, in a thread, reported epoch by epoch.

One run at a time on the server (the event's concurrency limit) and one per visitor (:data:`_ACTIVE`); a run
whose visitor leaves stops at its next epoch. The trained prompt goes to the visitor's session only.
"""
from __future__ import annotations

import functools
import logging
import queue
import re
import threading
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import plotly.graph_objects as go

from ..engine import Engine
from ..errors import USER_ERRORS
from ..prompt_files import prompt_file_bytes, save_prompt
from ..prompting import PromptConfig
from ..training import (FEW_SHOT_PROMPT, FEW_SHOT_SECONDS, MIN_CLASSES, MIN_PER_CLASS, few_shot,
                        transfer_source)
from . import plots
from .feedback import fail, require_audio, require_speech, user_errors
from .session import Session
from .train_data import ready

MAX_OWN_PROMPTS = 5
log = logging.getLogger(__name__)
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


def slug(text: str) -> str:
    """A task id from a visitor's title: lower-case letters, digits and '-' only."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
    return s or "my-task"


def new_task_id(engine: Engine, session: Session, title: str) -> str:
    """A task id for the visitor's title that never shadows a loaded task (retraining one's own replaces it)."""
    base = slug(title)
    tid, i = base, 2
    while tid in engine.prompts:
        tid = f"{base}-{i}"
        i += 1
    if tid not in session.prompts and len(session.prompts) >= MAX_OWN_PROMPTS:
        raise fail(f"You already have {MAX_OWN_PROMPTS} prompts of your own; retrain one of them (same name) "
                       "instead of adding another.")
    return tid


def whole_number(value: Any, what: str) -> int:
    """A number a visitor (or a hand-written API call) gave, as an int, else a message saying what is expected."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer():
        raise fail(f"{what} must be a whole number, got {str(value)[:40]!r}.")
    return int(number)


@dataclass
class TrainUpdate:
    """One step of a training run, for the view: a status text, the live curve, and at the end the zip."""

    status: str
    curve: go.Figure
    history: list[dict] = field(default_factory=list)
    done: bool = False
    task: str | None = None
    zip_path: str | None = None


def _run_in_thread(fn: Callable[[Callable[[dict], None], Callable[[], bool]], Any]) -> Iterator[dict | tuple[str, Any]]:
    """Run ``fn(progress_callback, should_stop)`` in a thread and yield each progress row as it arrives, then
    ``("result", value)`` or ``("error", exception)``. Closing this generator makes ``should_stop()`` true, so
    the training loop ends after its current epoch and a visitor who leaves does not keep the training slot busy."""
    q: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            q.put(("result", fn(q.put, stop.is_set)))
        except BaseException as exc:  # handed to the caller, which raises it in the request's thread
            q.put(("error", exc))

    thread = threading.Thread(target=work, daemon=True, name="prompt-training")
    thread.start()
    try:
        while True:
            item = q.get()
            yield item
            if isinstance(item, tuple):
                return
    finally:
        stop.set()


def not_ready_message(session: Session) -> str:
    """Plain words (no markup: it may end up in a toast) for what is missing before training."""
    if len(session.classes) < MIN_CLASSES:
        return "Set the classes first (step 1), or load the bundled yes / no / stop set."
    missing = [f"'{c}' needs {MIN_PER_CLASS - len(session.examples.get(c, []))} more"
               for c in session.classes if len(session.examples.get(c, [])) < MIN_PER_CLASS]
    return f"Every class needs at least {MIN_PER_CLASS} examples before training: {', '.join(missing)}."


def train(engine: Engine, session: Session, title: str | None, prompt_length: int, verbalizer: str, deep: bool,
          visitor: str = "local", progress: Callable[..., Any] | None = None,
          max_seconds: float = FEW_SHOT_SECONDS) -> Iterator[TrainUpdate]:
    """Train a prompt on the visitor's examples (only the prompt learns) and yield an update per epoch."""
    if not ready(session):
        raise fail(not_ready_message(session))
    title = (title or "").strip() or "My task"
    if len(title) > 60:
        raise fail("Keep the task name under 60 characters.")
    prompt_length = whole_number(prompt_length, "The prompt length")
    with _ACTIVE_LOCK:
        if visitor in _ACTIVE:
            raise fail("You already have a training run going; wait for it to finish.")
        _ACTIVE.add(visitor)
    try:
        yield from _train(engine, session, title, prompt_length, verbalizer, bool(deep), progress, max_seconds)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(visitor)


def _train(engine: Engine, session: Session, title: str, prompt_length: int, verbalizer: str, deep: bool,
           progress: Callable[..., Any] | None, max_seconds: float) -> Iterator[TrainUpdate]:
    task = new_task_id(engine, session, title)
    try:
        config = PromptConfig(prompt_length=prompt_length, deep=deep, verbalizer=verbalizer,
                              read_at=FEW_SHOT_PROMPT.read_at)
    except ValueError as exc:
        raise fail(str(exc)) from None
    lm = engine.backbone.lm
    shot = few_shot(lm, task, title, {c: session.examples[c] for c in session.classes}, config, max_seconds,
                    source=transfer_source(engine.prompts, config))
    history: list[dict] = []
    n_copies = sum(len(t.copies) for t, _ in shot.train)
    epochs = shot.train_config().epochs
    intro = (f"Training **{title}**: {len(shot.train)} clips + {n_copies} perturbed copies (speed, pitch, room, "
             f"noise), {shot.settings.steps} steps"
             + (f", starting from the **{shot.source.info.title}** prompt" if shot.source is not None else "")
             + f"; only the prompt learns, the LM's {lm.num_params():,} parameters stay frozen.")
    if progress is not None:
        progress(0.0, desc="Starting")
    yield TrainUpdate(intro, plots.training_figure(history), list(history))
    result = None
    for item in _run_in_thread(functools.partial(shot.run, lm)):
        if isinstance(item, tuple):
            kind, value = item
            if kind == "error":
                log.error("prompt training failed", exc_info=value)
                raise fail(f"Training failed ({type(value).__name__}: {value}).") from None
            result = value
            break
        history.append(item)
        if progress is not None:
            progress(min(item["epoch"] / epochs, 1.0), desc=f"epoch {item['epoch']}")
        status = (f"{intro}\n\nEpoch {item['epoch']}/{epochs}: loss {item['loss']:.3f}, "
                  f"training accuracy {item['train_acc']:.0%}")
        if item["epoch"] == epochs and shot.settings.cv_folds:
            status += (f"\n\nNow estimating accuracy on new takes ({shot.settings.cv_folds}-fold cross-validation "
                       "over your takes)…")
        yield TrainUpdate(status, plots.training_figure(history), list(history))
    prompt = shot.prompt
    session.prompts[task] = prompt
    session.last_task = task
    zip_path = export_zip(engine, session, task)
    why = {"target": "every training clip is right", "time": f"the {max_seconds:.0f} s budget ran out",
           "early": "held-out accuracy stopped improving", "epochs": "the step budget ran",
           "stopped": "the run was stopped"}[result.stopped]
    done = (f"✓ Trained **{title}** (`{task}`) in {len(result.history)} epochs, {result.seconds:.1f} s "
            f"(stopped: {why}). Training accuracy {result.train_acc:.0%} (on the takes it learned from).\n\n"
            + estimate_text(shot.estimate) +
            f"\n\nOnly the prompt learned: {prompt.num_trainable():,} parameters "
            f"({plots.human_bytes(prompt_file_bytes(prompt))}); the frozen LM's {lm.num_params():,} did not change. "
            "Test it below, download it, or use it in **Try a task** and **All tasks** (only you can see it).")
    yield TrainUpdate(done, plots.training_figure(history), list(history), done=True, task=task, zip_path=zip_path)


def estimate_text(estimate: dict | None) -> str:
    """The held-out feedback: k-fold accuracy over the visitor's takes, per class, labelled as an estimate."""
    if not estimate:
        return ("**On new takes:** not estimated (each class needs at least 2 takes; record more for an estimate).")
    worst = sorted(estimate["per_class"].items(), key=lambda kv: kv[1])
    per = ", ".join(f"{c} {a:.0%}" for c, a in worst)
    return (f"**Estimated accuracy on new takes: {estimate['accuracy']:.0%}** ({estimate['folds']}-fold "
            f"cross-validation: each take was classified by a shorter run, {estimate['steps_per_fold']} steps, that "
            f"never heard it; {estimate['takes']} takes, {estimate['seconds']:.0f} s). By class: {per}. A class "
            "far below the others needs more takes, from more voices.")


def export_zip(engine: Engine, session: Session, task: str) -> str:
    """``<task>.zip`` holding ``<task>/prompt.safetensors`` and ``<task>/task.json``, ready for ``prompts/``."""
    folder = session.folder()
    out = save_prompt(session.prompts[task], folder / task, engine.backbone.id, engine.backbone.fingerprint)
    zip_path = folder / f"{task}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("prompt.safetensors", "task.json"):
            z.write(out / name, f"{task}/{name}")
    return str(zip_path)


@user_errors
def test_clip(engine: Engine, session: Session, audio_path: str | None) -> tuple[str, go.Figure]:
    """Classify a clip with the prompt the visitor just trained."""
    path = require_audio(audio_path)
    if not session.last_task or session.last_task not in session.prompts:
        raise fail("Train a prompt first.")
    prompt = session.prompts[session.last_task]
    view = Engine(engine.backbone, {prompt.task: prompt})
    analysis = view.analyze(path, [prompt.task])
    require_speech(analysis.audio.seconds)
    pred = analysis.predictions[0]
    head = plots.headline_html(pred.label, pred.confidence, prompt.info.title)
    return head, plots.probs_figure(pred.labels, pred.probs)


