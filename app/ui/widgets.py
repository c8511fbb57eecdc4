"""Pieces several views share: the inference queue pool, the bundled example clips and their buttons."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import gradio as gr

from ..settings import EXAMPLES_DIR, INFERENCE_CONCURRENCY

log = logging.getLogger(__name__)
# Every event that runs the model shares one queue slot pool (settings.INFERENCE_CONCURRENCY), whichever view or
# API endpoint it comes from.
INFERENCE = {"concurrency_id": "inference", "concurrency_limit": INFERENCE_CONCURRENCY}


class Example(NamedTuple):
    caption: str
    path: str
    task: str | None  # the task the clip shows off (the Try view switches to it when that task is loaded)
    label: str | None = None  # the answer that task's shipped prompt gives (checked by tests)


def examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    """Bundled example clips, from ``examples.json`` (else every ``*.wav``, with no task)."""
    listing = folder / "examples.json"
    out: list[Example] = []
    if listing.is_file():
        try:
            for item in json.loads(listing.read_text(encoding="utf-8")):
                path = folder / str(item["file"])
                if path.is_file() and path.parent == folder:
                    task, label = item.get("task"), item.get("label")
                    out.append(Example(str(item.get("caption") or path.stem), str(path),
                                       str(task) if task else None, str(label) if label else None))
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
