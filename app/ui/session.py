"""One visitor's private state (kept in ``gr.State``): their own prompts and training examples, a private
temporary folder, and the engine and task list as they see them."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..encoder.units import Units
from ..engine import Engine
from ..prompting import TaskPrompt

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
