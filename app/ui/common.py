"""What every view shares: the per-visitor session, user-facing errors, task lists, example clips, sizes."""
from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, TypeVar

import gradio as gr
from safetensors.torch import save as safetensors_bytes

from ..audio import AudioError
from ..backbone import ROOT, BackboneError
from ..data import DataError
from ..engine import Engine
from ..prompts import PromptError, TaskPrompt
from ..units import Units

log = logging.getLogger(__name__)
EXAMPLES_DIR = ROOT / "assets" / "examples"
# Every event that runs the model shares one queue slot pool: at most this many clips are encoded/classified at
# once, whichever view or API endpoint they come from (more would only make everyone slower on a small CPU).
INFERENCE_CONCURRENCY = max(1, int(os.environ.get("SPEECHPROMPT_CONCURRENCY", "2")))
INFERENCE = {"concurrency_id": "inference", "concurrency_limit": INFERENCE_CONCURRENCY}


def serving_threads() -> int:
    """torch threads for the app: the cores shared out between the concurrent workers (``SPEECHPROMPT_THREADS``
    overrides). Two workers with two threads each on two cores spend their time waiting for each other."""
    if os.environ.get("SPEECHPROMPT_THREADS"):
        return max(1, int(os.environ["SPEECHPROMPT_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // INFERENCE_CONCURRENCY)


USER_ERRORS = (AudioError, PromptError, DataError, BackboneError, ValueError)
F = TypeVar("F", bound=Callable[..., Any])
_WORKDIRS: set[str] = set()  # every visitor folder of this process, removed at exit at the latest


@dataclass
class Session:
    """One visitor's private state (kept in ``gr.State``): their own prompts and training examples."""

    prompts: dict[str, TaskPrompt] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    examples: dict[str, list[Units]] = field(default_factory=dict)
    last_task: str | None = None
    workdir: str | None = None

    def folder(self) -> Path:
        """A private temporary folder for this visitor's downloads (removed by :meth:`cleanup`)."""
        if self.workdir is None or not Path(self.workdir).is_dir():
            self.workdir = tempfile.mkdtemp(prefix="speechprompt-visitor-")
            _WORKDIRS.add(self.workdir)
        return Path(self.workdir)

    def cleanup(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            _WORKDIRS.discard(self.workdir)
            self.workdir = None


@atexit.register
def _remove_workdirs() -> None:
    for folder in list(_WORKDIRS):
        shutil.rmtree(folder, ignore_errors=True)


def cleanup_session(session: Session | None) -> None:
    """``gr.State`` delete callback: a visitor left, remove their temporary files."""
    if isinstance(session, Session):
        session.cleanup()


def fail(message: str) -> gr.Error:
    """An error for the visitor: shown as a message, not logged as a traceback (the server is fine)."""
    return gr.Error(message, print_exception=False)


def user_errors(fn: F) -> F:
    """Turn problems a visitor can fix into a ``gr.Error`` with a clear message; never show a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as exc:
            raise fail(str(exc)) from None
        except Exception as exc:  # unexpected: log it for us, a short message for them
            log.exception("unexpected error in %s", fn.__name__)
            raise fail(f"Something went wrong ({type(exc).__name__}). Please try another clip.") from None

    return wrapper  # type: ignore[return-value]


def session_engine(engine: Engine, session: Session | None) -> Engine:
    """The shared engine plus this visitor's own prompts (a view: the shared engine is never modified)."""
    if session is None or not session.prompts:
        return engine
    view = Engine(engine.backbone, {**engine.prompts, **session.prompts})
    view.skipped = engine.skipped
    return view


def task_choices(engine: Engine, session: Session | None = None) -> list[tuple[str, str]]:
    """Dropdown choices ``(title, id)``: the loaded tasks, then the visitor's own (marked)."""
    out = [(f"{engine.prompts[t].info.title} ({t})", t) for t in engine.tasks]
    if session is not None:
        out += [(f"★ {p.info.title} ({t}, yours)", t) for t, p in sorted(session.prompts.items())]
    return out


def require_audio(path: str | None) -> str:
    if not path:
        raise fail("Record or upload a clip first, or click one of the example clips.")
    return path


def prompt_bytes(prompt: TaskPrompt) -> int:
    """Size of the prompt's file: the real one if it was loaded from disk, else the exact serialised size."""
    if prompt.folder is not None and (prompt.folder / "prompt.safetensors").is_file():
        return (prompt.folder / "prompt.safetensors").stat().st_size
    return len(safetensors_bytes(prompt.state_tensors(), metadata={"task": prompt.task}))


def lm_bytes(engine: Engine) -> int:
    """Size of one copy of the LM's weights: the real file if the backbone has a folder, else float32 size."""
    folder = engine.backbone.folder
    if folder is not None and (Path(folder) / "lm.safetensors").is_file():
        return (Path(folder) / "lm.safetensors").stat().st_size
    return engine.backbone.lm.num_params() * 4


class Example(NamedTuple):
    caption: str
    path: str
    task: str | None  # the task the clip shows off (the Try view switches to it when that task is loaded)


def examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    """Bundled example clips, from ``examples.json`` (else every ``*.wav``, with no task)."""
    listing = folder / "examples.json"
    out: list[Example] = []
    if listing.is_file():
        try:
            for item in json.loads(listing.read_text(encoding="utf-8")):
                path = folder / str(item["file"])
                if path.is_file() and path.parent == folder:
                    task = item.get("task")
                    out.append(Example(str(item.get("caption") or path.stem), str(path),
                                       str(task) if task else None))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("ignoring malformed %s", listing)
            out = []
    if not out and folder.is_dir():
        out = [Example(p.stem.replace("_", " "), str(p), None) for p in sorted(folder.glob("*.wav"))]
    return out


def example_buttons(prefix: str) -> list[tuple[gr.Button, Example]]:
    """A row of buttons, one per bundled example clip (ids ``{prefix}-example-{i}``), with their examples."""
    clips = examples()
    if not clips:
        return []
    gr.Markdown("**Or try an example clip:**", elem_classes=["examples-title"])
    with gr.Row(elem_classes=["example-row"]):
        return [(gr.Button(ex.caption, size="sm", min_width=80, elem_id=f"{prefix}-example-{i}"), ex)
                for i, ex in enumerate(clips)]


def slug(text: str) -> str:
    """A task id from a visitor's title: lower-case letters, digits and '-' only."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
    return s or "my-task"
