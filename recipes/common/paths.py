"""Where the recipes read and write, from the environment (nothing machine-specific in the code).

- ``SPEECHPROMPT_DATA``: the shared data sets (default ``../shared/data`` beside the repository);
- ``SPEECHPROMPT_WORK``: big intermediate files: corpus, caches, checkpoints (default ``work/`` in the repository,
  which git ignores).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from app.settings import ROOT

DATA_ROOT = Path(os.environ.get("SPEECHPROMPT_DATA") or ROOT.parent / "shared" / "data")
WORK = Path(os.environ.get("SPEECHPROMPT_WORK") or ROOT / "work")
DOCS = ROOT / "docs"


@contextlib.contextmanager
def written_whole(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (``suffix`` for writers that go by the extension); it replaces
    ``path`` in one step when the block ends without error, so a reader in another process, or a run resumed after
    an interruption, never finds half a file."""
    tmp = path.with_name(path.name + ".tmp" + suffix)
    yield tmp
    os.replace(tmp, path)
