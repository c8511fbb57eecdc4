"""Make the task data sets (definitions: recipes/common/tasks.py).

    python -m recipes.build.tasks --list                # clips per split and label for every task (no generation)
    python -m recipes.build.tasks --build [TASK ...]    # synthesize the missing cached clips (resumable)
    python -m recipes.build.tasks --csv TASK SPLIT > split.csv   # its clips as path,label (made where missing),
                                                        # for ``python -m app eval --task TASK --data split.csv``
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from recipes.common.tasks import CACHE, TASKS, Task


def _list(tasks: Iterable[Task]) -> None:
    for task in tasks:
        missing = task.missing_data()
        if missing:
            print(f"{task.id}: skipped, shared data missing: {', '.join(missing)}\n")
            continue
        print(f"{task.id}  ({task.title}; {len(task.labels)} labels; metric {task.metric})")
        for split in task.splits:
            clips = task.clips(split)
            by = Counter(c.label for c in clips)
            src = Counter(c.source for c in clips)
            spk = len({c.speaker for c in clips})
            print(f"  {split:5s} {len(clips):5d} clips  {spk:4d} speakers  "
                  + " ".join(f"{k}={v}" for k, v in sorted(src.items())))
            print("        " + "  ".join(f"{lab}:{by.get(lab, 0)}" for lab in task.labels))
        print()


def write_csv(task: Task, split: str, out) -> int:
    """Write ``path,label`` lines of a split's clips to ``out`` (synthetic ones are made first where missing);
    returns how many."""
    if split not in task.splits:
        raise ValueError(f"{task.id} has no split {split!r}; its splits: {', '.join(task.splits)}")
    examples = task.examples(split)
    for e in examples:
        out.write(f"{e.audio},{e.label}\n")
    return len(examples)


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*.flac")] if path.exists() else []
    return len(files), sum(p.stat().st_size for p in files)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print clips per split and label")
    ap.add_argument("--build", nargs="*", metavar="TASK", help="make the synthetic clips of these tasks (default all)")
    ap.add_argument("--cache", type=Path, default=None, help=f"cache folder (default {CACHE})")
    ap.add_argument("--csv", nargs=2, metavar=("TASK", "SPLIT"), help="print a split's clips as path,label lines")
    args = ap.parse_args(argv)
    if args.csv:
        name, split = args.csv
        if name not in TASKS:
            ap.error(f"unknown task {name}; tasks: {', '.join(TASKS)}")
        try:
            write_csv(TASKS[name], split, sys.stdout)
        except ValueError as e:  # a split the task does not have
            ap.error(str(e))
        return
    if args.build is None and not args.list:
        ap.error("give --list, --build or --csv")
    if args.build is not None:
        names = args.build or list(TASKS)
        unknown = [n for n in names if n not in TASKS]
        if unknown:
            ap.error(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
        t_all = time.time()
        for name in names:
            task = TASKS[name]
            if task.missing_data():
                print(f"{name}: skipped, shared data missing: {', '.join(task.missing_data())}")
                continue
            t0 = time.time()
            made = task.build(args.cache)
            n, size = _size((args.cache or CACHE) / name)
            print(f"{name}: made {made} clips in {time.time() - t0:.0f} s; cache {n} files, {size / 1e6:.1f} MB",
                  flush=True)
        print(f"built in {time.time() - t_all:.0f} s")
    if args.list:
        _list(TASKS[n] for n in (args.build or TASKS))


if __name__ == "__main__":
    main()
