"""Paths and environment settings, in one place: where the repository, backbone, prompts and examples live, and
the environment variables that change them."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository (app.py, assets/, prompts/)
DEFAULT_BACKBONE_DIR = ROOT / "assets" / "backbone"
BACKBONE_ENV = "SPEECHPROMPT_BACKBONE"  # another backbone folder
DEFAULT_PROMPTS_DIR = ROOT / "prompts"
EXAMPLES_DIR = ROOT / "assets" / "examples"  # the bundled example clips (examples.json lists them)
TRAIN_SET_DIR = EXAMPLES_DIR / "train_set"  # the bundled labelled set: one sub-folder per class
# Background recordings (16 kHz wav) mixed under training takes' perturbed copies and used for the Train view's
# background class (SPEECHPROMPT_NOISE); without them, generated coloured noise stands in.
NOISE_DIR = Path(os.environ.get("SPEECHPROMPT_NOISE") or ROOT.parent / "shared" / "data" / "noise")
# Every model call of the app shares one pool: at most this many clips are encoded/classified at once
# (SPEECHPROMPT_CONCURRENCY); more would only make everyone slower on a small CPU.
INFERENCE_CONCURRENCY = max(1, int(os.environ.get("SPEECHPROMPT_CONCURRENCY", "2")))
# Uploads to the app: MB per minute from one client address and from everyone, and what the upload folder may hold.
UPLOAD_MB_PER_CLIENT = int(os.environ.get("SPEECHPROMPT_UPLOAD_MB_PER_MIN", "60"))
UPLOAD_MB_TOTAL = int(os.environ.get("SPEECHPROMPT_UPLOAD_TOTAL_MB_PER_MIN", "240"))
UPLOAD_DISK_MB = int(os.environ.get("SPEECHPROMPT_UPLOAD_DISK_MB", "2048"))


def default_backbone_dir() -> Path:
    """The folder named by $SPEECHPROMPT_BACKBONE, else the embedded default in assets/backbone."""
    return Path(os.environ.get(BACKBONE_ENV) or DEFAULT_BACKBONE_DIR)


def serving_threads() -> int:
    """torch threads for the app: the cores shared out between the concurrent workers (``SPEECHPROMPT_THREADS``
    overrides). Two workers with two threads each on two cores spend their time waiting for each other."""
    if os.environ.get("SPEECHPROMPT_THREADS"):
        return max(1, int(os.environ["SPEECHPROMPT_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // INFERENCE_CONCURRENCY)
