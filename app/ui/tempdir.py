"""The server's own temporary folder: every upload (Gradio's cache), visitor folder and decoder scratch file of one
``python app.py`` lives in ``<tmp>/speechprompt-app/<pid>/``. It is removed when the server stops (SIGTERM, SIGINT
or a normal exit), and folders left by servers that died without stopping (SIGKILL, a crash) are removed when the
next one starts. Nothing outside that folder is touched (other Gradio apps keep their ``/tmp/gradio``).
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

PARENT = "speechprompt-app"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(parent: Path) -> list[Path]:
    """Remove the folders of servers that are no longer running; returns what was removed."""
    removed = []
    if not parent.is_dir():
        return removed
    for sub in parent.iterdir():
        pid = sub.name.split("-")[0]
        if sub.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(sub, ignore_errors=True)
            removed.append(sub)
    return removed


def claim(base: str | None = None) -> Path:
    """Make this process's folder (after removing stale ones), point Gradio's upload cache (GRADIO_TEMP_DIR) and
    Python's ``tempfile`` into it, and return it. Call before the UI is built."""
    parent = Path(base or os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / PARENT
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent)
    root = parent / str(os.getpid())
    shutil.rmtree(root, ignore_errors=True)
    (root / "gradio").mkdir(parents=True)
    (root / "tmp").mkdir()
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    tempfile.tempdir = str(root / "tmp")
    return root


def release(root: Path) -> None:
    """Remove the folder (at shutdown)."""
    shutil.rmtree(root, ignore_errors=True)
    if tempfile.tempdir and Path(tempfile.tempdir).is_relative_to(root):
        tempfile.tempdir = None


def stop_on_signals(root: Path, grace_s: float = 10.0) -> None:
    """SIGTERM and SIGINT end the server like Ctrl+C (KeyboardInterrupt), so it closes and its cleanup runs; if
    closing takes longer than ``grace_s`` (a stream or a request that does not let go), the folder is removed and
    the process exits anyway: a stop always stops."""

    def last_resort() -> None:
        time.sleep(grace_s)
        release(root)
        os._exit(0)

    def handler(signum, frame):  # noqa: ARG001
        threading.Thread(target=last_resort, daemon=True).start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
