"""What a linear verbalizer could read from the frozen LM alone: logistic regression on the LM's next-token output.

    python -m recipes.experiments.readout_probe --tasks emotion [--backbone DIR]   # docs/results/readout_probe.json

No prompt: each clip's units (with duration, pitch and voice streams) go through the frozen LM, and the features are
what a ``read_at="mean"`` verbalizer reads, per stream: the log of the LM's next-token distribution averaged over the
clip (:func:`app.prompting.mean_log_distribution`). Standardised + logistic regression, C picked on the mean of the
task's validation folds (its own validation split and :data:`recipes.build.train_prompts.CHOICE_FOLDS`), units from
train_prompts' cache. A prompt whose verbalizer reads the same features should reach at least this figure; when
it stays below, prompt tuning is losing what the LM's outputs keep (docs/BACKBONE_V2.md section 26).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from app.backbone import Backbone
from app.encoder.units import Units
from app.prompting import mean_log_distribution
from recipes.common.paths import DOCS, WORK, written_whole
from recipes.common.results import encode_split, log
from recipes.common.tasks import TASKS

CS = (0.001, 0.003, 0.01, 0.03, 0.1)


@torch.no_grad()
def mean_outputs(bb: Backbone, units: list[Units]) -> dict[str, np.ndarray]:
    """Per clip and stream, the log of the LM's next-token distribution averaged over the clip ``(N, n)``."""
    lm, rows = bb.lm, {}
    for u in units:
        n = min(len(u), lm.config.block_size - 1)
        x = lm.embed(u.ids[None, :n], u.duration_buckets()[None, :n], u.pitch_buckets()[None, :n],
                     u.voice[None, :n] if u.voice is not None else None)
        out = lm.next_token_logits(lm.run(x))
        ends = torch.tensor([n - 1])
        for k, v in out.items():
            rows.setdefault(k, []).append(mean_log_distribution(v, torch.tensor([0]), ends)[0].numpy())
    return {k: np.stack(v) for k, v in rows.items()}


def probe(folds: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
          test: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """C picked on the mean validation accuracy over ``folds`` (train x, train y, val x, val y); at that C, each
    fold's validation accuracy and the test accuracy of a model fit on ``test``'s training part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def fit_score(xt, yt, xv, yv, c):
        sc = StandardScaler().fit(xt)
        clf = LogisticRegression(C=c, max_iter=3000).fit(sc.transform(xt), yt)
        return float((clf.predict(sc.transform(xv)) == yv).mean())

    scores = {c: [fit_score(*f, c) for f in folds] for c in CS}
    c = max(CS, key=lambda k: (np.mean(scores[k]), -k))
    return {"C": c, "folds": [round(s, 4) for s in scores[c]], "val_mean": round(float(np.mean(scores[c])), 4),
            "test": round(fit_score(*test, c), 4)}


def main() -> None:
    from recipes.build.train_prompts import CHOICE_FOLDS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=["emotion"])
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--cache", type=Path, default=WORK / "units")
    ap.add_argument("--out", type=Path, default=DOCS / "results" / "readout_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bb = Backbone.load(args.backbone)
    fp = bb.encoder_fingerprint
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for tid in args.tasks:
        def split(task, s):
            cap = {"train": 1000, "val": 300}.get(s, 0)
            units, labels, _ = encode_split(bb.encoder, fp, task, s, args.cache, cap)
            return mean_outputs(bb, units), np.array(labels)
        own = TASKS[tid]
        parts = [(own, {s: split(own, s) for s in ("train", "val")})]
        parts += [(t, {s: split(t, s) for s in ("train", "val")}) for t in CHOICE_FOLDS.get(tid, ())]
        test = split(own, "test")
        streams = list(test[0])
        row = {}
        for name, keep in [("all streams", streams)] + [(s, [s]) for s in streams]:
            def x(d):
                return np.concatenate([d[0][k] for k in keep], axis=1)
            folds = [(x(p["train"]), p["train"][1], x(p["val"]), p["val"][1]) for _, p in parts]
            tr = parts[0][1]["train"]
            row[name] = probe(folds, (x(tr), tr[1], x(test), test[1]))
            log(f"{tid} {name}: {row[name]}")
        results.setdefault(bb.fingerprint, {"backbone": bb.id})[tid] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(args.out) as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
