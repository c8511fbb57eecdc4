"""The visitor's labelled examples for "Train a prompt": classes, recordings and uploads encoded to units, limits.

Clips are encoded as soon as they arrive and only their units are kept (in the visitor's
:class:`~app.ui.session.Session`); the uploaded files are then removed from Gradio's upload folder.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from gradio.utils import get_upload_folder

from ..encoder.audio import TARGET_SR, AudioError, normalize_level
from ..encoder.augment import background
from ..data import list_labelled
from ..engine import Engine
from ..settings import NOISE_DIR, TRAIN_SET_DIR
from ..training import (FEW_SHOT_SETTINGS, MAX_CLASSES, MAX_CLIP_SECONDS, MAX_PER_CLASS, MIN_CLASSES, MIN_PER_CLASS,
                        Take, clip_seed, make_take)
from .feedback import MIN_SPEECH_SECONDS, fail, user_errors
from .session import Session

MAX_FILES_PER_ADD = 30
BACKGROUND = "background"  # the class "Add a background class" makes (Teachable Machine's "Background Noise")
BACKGROUND_TAKES = 5
MAX_LABEL_CHARS = 40
_UNSAFE = re.compile(r"[|`<>\\\x00-\x1f]")


def parse_classes(text: str | None) -> list[str]:
    """'yes, no, stop' (commas or new lines) -> ['yes', 'no', 'stop'], checked: 2 to 10 distinct names."""
    names = []
    for line in (text or "").splitlines():  # blank lines and a comma at the end of a line are harmless
        parts = [n.strip() for n in line.strip().strip(",").split(",")]
        if "" in parts and line.strip(" ,"):
            raise fail(f"'{line.strip()}' has an empty name between two commas. Name that class or remove the "
                       "extra comma.")
        names += [n for n in parts if n]
    if len(names) < MIN_CLASSES:
        raise fail(f"Name at least {MIN_CLASSES} classes, separated by commas (e.g. 'yes, no, stop').")
    if len(names) > MAX_CLASSES:
        raise fail(f"At most {MAX_CLASSES} classes, please ({len(names)} given).")
    if len({n.lower() for n in names}) != len(names):
        raise fail("Class names must be different from each other.")
    if any(len(n) > MAX_LABEL_CHARS for n in names):
        raise fail(f"Keep class names under {MAX_LABEL_CHARS} characters.")
    if any(_UNSAFE.search(n) for n in names):
        raise fail("Class names may not contain | ` < > or backslashes.")
    return names


def examples_status(session: Session) -> str:
    """A small table: examples per class and what is still missing."""
    if not session.classes:
        return "No classes yet: name them above and press **Set classes**, or load the bundled yes/no/stop set."
    rows = ["| class | examples | |", "|---|---:|---|"]
    for c in session.classes:
        n = len(session.examples.get(c, []))
        need = "✓ ready" if n >= MIN_PER_CLASS else f"needs {MIN_PER_CLASS - n} more"
        rows.append(f"| {c} | {n} | {need} |")
    return "\n".join(rows)


def ready(session: Session) -> bool:
    return len(session.classes) >= MIN_CLASSES and all(
        len(session.examples.get(c, [])) >= MIN_PER_CLASS for c in session.classes)


@user_errors
def set_classes(session: Session, text: str | None) -> tuple[Session, str, list[str]]:
    """Set the visitor's classes; examples of classes that are kept stay."""
    names = parse_classes(text)
    session.classes = names
    session.examples = {c: session.examples.get(c, []) for c in names}
    return session, examples_status(session), names


def _discard_upload(path: str) -> None:
    """Remove a consumed upload from Gradio's upload folder (never anything outside it)."""
    try:
        p = Path(path).resolve()
        if Path(get_upload_folder()).resolve() in p.parents:
            p.unlink(missing_ok=True)
    except OSError:
        pass


@user_errors
def add_examples(engine: Engine, session: Session, label: str | None, recording: str | None,
                 files: Sequence[str] | None) -> tuple[Session, str, list[str]]:
    """Encode a recording and/or uploaded files as examples of ``label``; returns the session, the status table and
    warnings about clips that could not be used. Every uploaded file is removed afterwards, used or not."""
    paths = ([recording] if recording else []) + [str(f) for f in (files or [])]
    try:
        if not session.classes:
            raise fail("Set the classes first (step 1), then record or upload again: this clip was not kept.")
        if label not in session.classes:
            raise fail("Choose which class these examples belong to.")
        if not paths:
            raise fail("Record a clip or upload files first.")
        if len(paths) > MAX_FILES_PER_ADD:
            raise fail(f"At most {MAX_FILES_PER_ADD} files at a time, please.")
        have = session.examples.setdefault(label, [])
        warnings = []
        for path in paths:
            if len(have) >= MAX_PER_CLASS:
                warnings.append(f"'{label}' already has {MAX_PER_CLASS} examples; the rest were not added.")
                break
            name = "the recording" if path == recording else Path(path).name
            if not Path(path).is_file():
                warnings.append(f"{name} is gone (already used or removed): record or upload it again.")
                continue
            try:
                audio, units = engine.encode(path, max_seconds=MAX_CLIP_SECONDS)
            except AudioError as exc:
                warnings.append(f"{name}: {exc}")
                continue
            if label != BACKGROUND and audio.seconds < MIN_SPEECH_SECONDS:  # room noise may be quiet
                warnings.append(f"{name}: only {audio.seconds:.2f} s of sound, too short to learn from (say a "
                                f"whole word, at least {MIN_SPEECH_SECONDS:g} s).")
                continue
            have.append(take_of(engine, audio, units))
    finally:
        for path in paths:
            _discard_upload(path)
    return session, examples_status(session), warnings


def take_of(engine: Engine, audio, units) -> Take:
    """An encoded clip as the training flow wants it: its units and the units of its perturbed copies (made now,
    while the visitor records the next take, so that training itself only trains)."""
    return make_take(engine.backbone.encoder, audio.wav, FEW_SHOT_SETTINGS.copies, clip_seed(audio.wav), NOISE_DIR,
                     units)


def encode_take(engine: Engine, path) -> Take:
    """A clip file as a :class:`Take` (see :func:`take_of`)."""
    return take_of(engine, *engine.encode(path, max_seconds=MAX_CLIP_SECONDS))


def background_clips(n: int, seed: int = 0, seconds: float = 1.0) -> list[torch.Tensor]:
    """``n`` clips of room background: the background recordings (:data:`~app.settings.NOISE_DIR`) if present,
    else generated coloured noise, each level-normalised like any clip."""
    rng = np.random.default_rng(seed)
    return [normalize_level(background(int(seconds * TARGET_SR), rng, NOISE_DIR)) for _ in range(n)]


@user_errors
def add_background(engine: Engine, session: Session) -> tuple[Session, str, list[str]]:
    """One click: a 'background' class with a few takes of room noise, so that the prompt has an answer for 'none
    of my words' (recordings of the visitor's own room can be added to it like any class)."""
    if BACKGROUND in session.classes:
        raise fail(f"There is already a '{BACKGROUND}' class; record your room's quiet into it to add more.")
    if len(session.classes) >= MAX_CLASSES:
        raise fail(f"At most {MAX_CLASSES} classes: remove one to add a background class.")
    if not session.classes:
        raise fail("Set your classes first; the background class is added to them.")
    takes = []
    for i, wav in enumerate(background_clips(BACKGROUND_TAKES, seed=len(session.classes))):
        takes.append(make_take(engine.backbone.encoder, wav, FEW_SHOT_SETTINGS.copies, i, NOISE_DIR))
    session.classes = [*session.classes, BACKGROUND]
    session.examples[BACKGROUND] = takes
    return session, examples_status(session), session.classes


@user_errors
def load_bundled(engine: Engine, session: Session, folder: Path = TRAIN_SET_DIR) -> tuple[Session, str, str]:
    """Load the bundled labelled set (one sub-folder per class); returns the session, class text and status."""
    items = list_labelled(folder)
    classes = sorted({lab for _, lab in items})
    session.classes = classes
    session.examples = {c: [] for c in classes}
    for path, lab in items:
        if len(session.examples[lab]) < MAX_PER_CLASS:
            session.examples[lab].append(encode_take(engine, path))
    return session, ", ".join(classes), examples_status(session)


@user_errors
def remove_last(session: Session, label: str | None) -> tuple[Session, str]:
    """Drop the newest example of ``label`` (a take that went wrong); returns the session and the status table."""
    if not session.examples.get(label or ""):
        raise fail(f"'{label}' has no examples to remove." if label else "Choose a class first.")
    session.examples[label].pop()
    return session, examples_status(session)


def clear_examples(session: Session) -> tuple[Session, str]:
    session.examples = {c: [] for c in session.classes}
    return session, examples_status(session)


