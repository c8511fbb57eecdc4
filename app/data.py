"""Labelled audio sets: a folder with one sub-folder per label, or a CSV of ``path,label`` rows."""
from __future__ import annotations

import csv
from pathlib import Path

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}


class DataError(ValueError):
    """A data set that cannot be read, with a message saying why."""


def list_labelled(source: str | Path) -> list[tuple[Path, str]]:
    """``[(audio_path, label), ...]`` from a label-folder tree or a ``path,label`` CSV (header optional)."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _from_csv(source)
    if not source.is_dir():
        raise DataError(f"{source} is neither a folder of label folders nor a .csv file.")
    items = [
        (f, d.name)
        for d in sorted(p for p in source.iterdir() if p.is_dir())
        for f in sorted(d.rglob("*"))
        if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
    ]
    if not items:
        raise DataError(f"{source} holds no audio in label folders (expected {source}/LABEL/clip.wav).")
    return items


def _from_csv(path: Path) -> list[tuple[Path, str]]:
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise DataError(f"{path}:{i + 1}: expected 'path,label'.")
            if i == 0 and row[0].strip().lower() == "path":
                continue
            p = Path(row[0].strip())
            rows.append((p if p.is_absolute() else path.parent / p, row[1].strip()))
    if not rows:
        raise DataError(f"{path} lists no clips.")
    missing = [str(p) for p, _ in rows if not p.is_file()]
    if missing:
        raise DataError(f"{path}: {len(missing)} listed files do not exist, e.g. {missing[0]}.")
    return rows
