"""Where the recipes read and write, from the environment (nothing machine-specific in the code).

- ``SPEECHPROMPT_DATA``: the shared data sets (default ``../shared/data`` beside the repository);
- ``SPEECHPROMPT_WORK``: big intermediate files: corpus, caches, checkpoints (default ``work/`` in the repository,
  which git ignores).
"""
from __future__ import annotations

import os
from pathlib import Path

from app.settings import ROOT

DATA_ROOT = Path(os.environ.get("SPEECHPROMPT_DATA") or ROOT.parent / "shared" / "data")
WORK = Path(os.environ.get("SPEECHPROMPT_WORK") or ROOT / "work")
DOCS = ROOT / "docs"
