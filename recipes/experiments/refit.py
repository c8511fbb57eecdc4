"""A read-out trained again on train + validation once validation has chosen it (what the LR baselines do).

    python -m recipes.experiments.refit --task digits --variant v2_mean_aug

train_prompts chooses a task's shipped prompt on its validation speakers, so their takes never train it. This trains
the chosen read-out again on the train and validation splits together (same budget, caps and copies as
train_prompts; no early stopping: the --epochs budget runs out) and prints its test figure with the speaker spread.
Nothing is shipped or written. Details: docs/BACKBONE_V2.md section 20.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import torch

from app.backbone import Backbone
from app.prompting import TaskInfo
from app.settings import NOISE_DIR
from app.training import Take, TrainConfig, predict_proba, prompt_logits_fn, train_task
from recipes.build.train_prompts import (AUGMENTED, CHANNEL_ONLY, PROMPT_VARIANTS, SHIPPABLE, add_budget_args, scores,
                                         split_cap, split_examples)
from recipes.common.paths import WORK
from recipes.common.results import encode_copies, encode_split
from recipes.common.tasks import TASKS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--variant", required=True, choices=SHIPPABLE)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--cache", type=Path, default=WORK / "units")
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    add_budget_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bb, task = Backbone.load(args.backbone), TASKS[args.task]
    caps = SimpleNamespace(max_train=args.max_train, max_val=args.max_val)
    takes, test = [], None
    for split in task.splits:
        cap = split_cap(caps, split, task.id)
        units, labels, _ = encode_split(bb.encoder, bb.encoder_fingerprint, task, split, args.cache, cap, args.seed)
        if split not in ("train", "val"):
            test = test or (split, units, labels, split_examples(task, split, cap, args.seed))
            continue
        copies = (encode_copies(bb.encoder, bb.encoder_fingerprint, task, split, args.cache, args.copies, cap,
                                args.seed, NOISE_DIR, task.id in CHANNEL_ONLY)
                  if args.variant in AUGMENTED else [[] for _ in units])
        takes += [(Take(u, c), y) for u, y, c in zip(units, labels, copies)]
    info = TaskInfo(id=task.id, labels=list(task.labels), title=task.title)
    torch.manual_seed(args.seed)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=args.patience,
                      seed=args.seed, max_seconds=args.max_minutes * 60)
    prompt, res = train_task(bb.lm, info, PROMPT_VARIANTS[args.variant], takes, None, cfg,
                             verbalizer_init="class_means" if args.variant in AUGMENTED else "random", seed=args.seed,
                             sample_copies=args.variant in AUGMENTED)
    split, units, labels, examples = test
    out = scores(task, predict_proba(prompt_logits_fn(bb.lm, prompt), units), labels, examples, args.seed)
    print(json.dumps({"task": task.id, "variant": args.variant, "trained_on": "train + val", "split": split,
                      "accuracy": out["accuracy"], "spread": out["spread"], "epochs": len(res.history),
                      "train_seconds": round(res.seconds, 1), "backbone": bb.fingerprint}))


if __name__ == "__main__":
    main()
