"""Labelled audio sets: a folder with one sub-folder per label, or a CSV of ``path,label`` rows.

Checked as they are read: a file listed twice (same label or conflicting labels) is refused, and after encoding
:func:`require_every_class` refuses a set in which some class has no readable clip (a prompt that never saw a
class would still name it, and report a training accuracy that means nothing).
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Sequence

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
    return check_unique(items, source)


def check_unique(items: list[tuple[Path, str]], source: str | Path) -> list[tuple[Path, str]]:
    """Refuse a set that lists one file more than once (counted by its real path, so links count too)."""
    real: dict[Path, set[str]] = {}
    counts: Counter[Path] = Counter()
    for path, label in items:
        key = path.resolve()
        counts[key] += 1
        real.setdefault(key, set()).add(label)
    conflicting = [p for p, labels in real.items() if len(labels) > 1]
    if conflicting:
        p = conflicting[0]
        raise DataError(f"{source}: {len(conflicting)} file(s) are given different labels, e.g. {p.name} as "
                        f"{' and '.join(sorted(real[p]))[:200]}; each clip needs one label.")
    dupes = {p: n for p, n in counts.items() if n > 1}
    if dupes:
        p, n = max(dupes.items(), key=lambda kv: kv[1])
        extra = sum(dupes.values()) - len(dupes)
        raise DataError(f"{source}: {extra} row(s) repeat a file already listed, e.g. {p.name} ({n} times); list "
                        "each clip once.")
    return items


def require_every_class(labels: Sequence[str], kept: Sequence[str], source: str | Path) -> None:
    """After encoding: every class in ``labels`` must have at least one readable clip among ``kept``."""
    have = Counter(kept)
    empty = [lab for lab in labels if not have[lab]]
    if empty:
        names = ", ".join(repr(x) for x in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(f"{source}: class(es) {names} have no readable clip; add usable audio for them or leave "
                        "them out.")


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
    return check_unique(rows, path)
