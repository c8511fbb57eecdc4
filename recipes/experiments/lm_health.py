"""The frozen LM's health figure (issue #13): does the LM keep what its units carry?

    python -m recipes.experiments.lm_health [--tasks digits commands gender emotion language] [--shots 5 10]

Per task (the prompts' own splits and unit cache, so nothing new is encoded when train_prompts ran first), two
order-free clip features, each read by a standardised logistic regression:

- **bag**: relative frequency of every code of every stream over the clip's units (units, duration and pitch
  buckets, voice codes when the backbone has them);
- **hidden**: the frozen LM's last hidden states over the clip (no prompt), mean and standard deviation over
  positions.

Few-shot: K training clips per class (``--draws`` seeded draws), all of the test split. The LM is healthy when
"hidden" at least matches "bag". Writes docs/results/lm_health.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from app.backbone import Backbone
from app.encoder.units import N_DURATION_BUCKETS, N_PITCH_BUCKETS, Units
from app.prompting import collate
from recipes.common.paths import WORK
from recipes.common.results import RESULTS_DIR, encode_split, log
from recipes.common.tasks import TASKS

TEST_SPLIT = {"language": "real"}  # the language task's honest test: real VoxForge volunteers


def bag(u: Units, n_units: int, n_voice: int, voice_buckets: int) -> np.ndarray:
    """Relative frequency of each code of each stream over the clip's units."""
    n = max(len(u), 1)
    parts = [np.bincount(u.ids.numpy(), minlength=n_units)[:n_units],
             np.bincount(u.duration_buckets().numpy(), minlength=N_DURATION_BUCKETS),
             np.bincount(u.pitch_buckets().numpy(), minlength=N_PITCH_BUCKETS)]
    if n_voice and u.voice is not None:
        codes = (u.voice.clamp(0, voice_buckets - 1) + torch.arange(n_voice) * voice_buckets).flatten().numpy()
        parts.append(np.bincount(codes, minlength=n_voice * voice_buckets))
    return np.concatenate(parts).astype(np.float32) / n


@torch.no_grad()
def hidden(lm, units: list[Units], batch: int = 32) -> np.ndarray:
    """Mean and std over positions of the frozen LM's last hidden states, per clip."""
    out = []
    for i in range(0, len(units), batch):
        b = collate(units[i : i + batch], lm.config.block_size)
        h = lm.run(lm.embed(b.ids, b.dur, b.pitch, b.voice))
        for j, n in enumerate(b.lengths):
            hj = h[j, : max(n, 1)]
            out.append(torch.cat([hj.mean(0), hj.std(0, unbiased=False)]).numpy())
    return np.stack(out)


def few_shot(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, k: int, draws: int) -> list:
    """Accuracy of a standardised logistic regression on K clips per class, one figure per seeded draw."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    accs = []
    for d in range(draws):
        rng = np.random.default_rng(d)
        idx = np.concatenate([rng.permutation(np.flatnonzero(y_tr == c))[:k] for c in np.unique(y_tr)])
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)).fit(x_tr[idx], y_tr[idx])
        accs.append(float(clf.score(x_te, y_te)))
    return accs


def run_task(task, bb: Backbone, cache: Path, shots: list[int], draws: int, max_train: int) -> dict:
    lm, cfg = bb.lm, bb.lm.config
    splits = {"train": ("train", max_train), "test": (TEST_SPLIT.get(task.id, "test"), 0)}
    data = {}
    for name, (split, cap) in splits.items():
        units, labels, _ = encode_split(bb.encoder, bb.encoder_fingerprint, task, split, cache, cap)
        data[name] = {"bag": np.stack([bag(u, bb.n_units, cfg.n_voice, cfg.voice_buckets) for u in units]),
                      "hidden": hidden(lm, units), "y": np.array(labels)}
    out = {"test_split": splits["test"][0], "test_clips": int(len(data["test"]["y"]))}
    for k in shots + [0]:
        key = f"k{k}" if k else "all"
        for feat in ("bag", "hidden"):
            tr, te = data["train"], data["test"]
            accs = few_shot(tr[feat], tr["y"], te[feat], te["y"], k if k else 10**9, draws if k else 1)
            out[f"{key}_{feat}"] = {"mean": round(float(np.mean(accs)), 4), "min": round(min(accs), 4),
                                    "max": round(max(accs), 4), "draws": len(accs)}
        log(f"{task.id} {key}: bag {out[f'{key}_bag']['mean']:.3f}  hidden {out[f'{key}_hidden']['mean']:.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=["digits", "commands", "gender", "emotion", "language"])
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--cache", type=Path, default=WORK / "units")
    ap.add_argument("--shots", nargs="*", type=int, default=[5, 10])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--max-train", type=int, default=1000, help="the train split's cap (as train_prompts)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "lm_health.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bb = Backbone.load(args.backbone)
    results = {"backbone": bb.id, "fingerprint": bb.fingerprint, "tasks": {}}
    for tid in args.tasks:
        results["tasks"][tid] = run_task(TASKS[tid], bb, args.cache, args.shots, args.draws, args.max_train)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    keys = [f"k{k}" for k in args.shots] + ["all"]
    print("| task | " + " | ".join(f"{k} bag | {k} hidden" for k in keys) + " |")
    print("|---|" + "---|---|" * len(keys))
    for tid, r in results["tasks"].items():
        print(f"| {tid} | " + " | ".join(f"{r[f'{k}_bag']['mean']:.3f} | {r[f'{k}_hidden']['mean']:.3f}"
                                         for k in keys) + " |")


if __name__ == "__main__":
    main()
