"""What the backbone's streams carry: a bag-of-streams logistic regression per task, on the prompts' own splits.

    python -m recipes.experiments.stream_probe            # every task; writes docs/STREAM_PROBE.md

Per-clip histograms of units, of duration and pitch buckets, or both, against the prompts, full fine-tuning and
MFCC statistics. Details: docs/RECIPES.md#stream_probe.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


from app.backbone import Backbone
from app.encoder.units import N_DURATION_BUCKETS, N_PITCH_BUCKETS, Units
from app.settings import ROOT
from recipes.common.paths import WORK
from recipes.common.results import encode_split, load_results, shipped
from recipes.common.tasks import TASKS

FEATURES = ("units", "prosody", "all", "rise")


def final_rise(u: Units) -> np.ndarray:
    """The end of the clip's melody from the pitch stream (the statement/question cue): mean log f0 of its last 5,
    10 and 25 voiced frames (each unit's pitch repeated over its duration) against the clip's median, the slope over
    those 25 frames, and the spread of the whole track."""
    track = np.repeat(u.pitch.double().numpy(), u.durations.numpy())
    f0 = np.log(track[track > 0])
    if f0.size == 0:
        return np.zeros(5)
    f0 = np.pad(f0, (max(0, 10 - f0.size), 0), mode="edge")
    last, median = f0[-25:], np.median(f0)
    slope = np.polyfit(np.arange(last.size), last, 1)[0]
    return np.array([f0[-5:].mean() - median, f0[-10:].mean() - median, last.mean() - median, slope, f0.std()])


def clip_features(u: Units, n_units: int) -> dict[str, np.ndarray]:
    """Order-free per-clip statistics of the three streams."""
    n = max(len(u.ids), 1)
    units = np.bincount(u.ids.numpy(), minlength=n_units)[:n_units] / n
    dur = np.bincount(u.duration_buckets().numpy(), minlength=N_DURATION_BUCKETS) / n
    pitch = np.bincount(u.pitch_buckets().numpy(), minlength=N_PITCH_BUCKETS) / n
    f0 = u.pitch[u.pitch > 0].double().log().numpy()
    stats = [f0.mean(), f0.std()] if f0.size else [0.0, 0.0]
    prosody = np.concatenate([dur, pitch, stats, [np.log(n)]])
    return {"units": units, "prosody": prosody, "all": np.concatenate([units, prosody]), "rise": final_rise(u)}


def probe(train: tuple[np.ndarray, list[int]], val: tuple[np.ndarray, list[int]],
          evals: dict[str, tuple[np.ndarray, list[int]]], cs: tuple[float, ...] = (0.01, 0.1, 1.0)) -> dict[str, float]:
    """Logistic regression with C picked on validation among ``cs``; accuracy on each evaluation split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in cs:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(*train)
        score = clf.score(*val)
        if best is None or score > best[0]:
            best = (score, clf)
    clf = best[1]
    return {"val": round(best[0], 4), **{s: round(clf.score(*xy), 4) for s, xy in evals.items()}}


def run(task, bb: Backbone, cache: Path, caps: dict[str, int]) -> dict:
    n_units = bb.n_units
    feats: dict[str, dict[str, tuple[np.ndarray, list[int]]]] = {k: {} for k in FEATURES}
    for s in task.splits:
        units, labels, _ = encode_split(bb.encoder, bb.encoder_fingerprint, task, s, cache, caps.get(s, 0))
        rows = [clip_features(u, n_units) for u in units]
        for k in FEATURES:
            feats[k][s] = (np.stack([r[k] for r in rows]), labels)
    evals = [s for s in task.splits if s not in ("train", "val")]
    return {k: probe(feats[k]["train"], feats[k]["val"], {s: feats[k][s] for s in evals}) for k in FEATURES}


def report(rows: dict[str, dict], bb: Backbone) -> str:
    lines = ["# What the backbone's streams carry", "",
             f"Backbone `{bb.id}` (fingerprint `{bb.fingerprint}`). Made by "
             "`python -m recipes.experiments.stream_probe` "
             "(see its docstring): a logistic regression on order-free per-clip histograms of the streams a prompt "
             "sees, against the prompts, full fine-tuning and MFCC statistics from docs/RESULTS.md (same splits, "
             "test accuracy).", "",
             "| task | probe: units | probe: prosody | probe: all streams | probe: final pitch movement | "
             "SpeechPrompt v2 (shipped) | full fine-tuning | MFCC + LR |", "|---|---|---|---|---|---|---|---|"]
    results = load_results(bb)  # rows measured on another backbone are left out

    def acc(row: dict | None) -> str:
        return f"{row['test']['accuracy']:.3f}" if row else ""

    for tid, r in rows.items():
        res = results.get(tid, {})
        extra = [f" ({s} {r['all'][s]:.3f})" for s in r["all"] if s not in ("val", "test")]
        lines.append(f"| {tid} | {r['units']['test']:.3f} | {r['prosody']['test']:.3f} | "
                     f"{r['all']['test']:.3f}{''.join(extra)} | {r['rise']['test']:.3f} | {acc(shipped(res))} | "
                     f"{acc(res.get('finetune'))} | {acc(res.get('mfcc'))} |")
    lines += ["", "Accuracy for every task (fake included; its EER is in RESULTS.md). How to read it: where the "
              "probe, the prompts and full fine-tuning stop at about the same accuracy and MFCC statistics do much "
              "better, the streams have dropped what the task needs (a better prompt cannot bring it back); where "
              "the probe beats the prompts, the information is in the streams and the prompt does not get it out.",
              ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--cache", type=Path, default=WORK / "units")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--max-val", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "STREAM_PROBE.md")
    args = ap.parse_args()
    bb = Backbone.load(args.backbone)
    rows = {}
    for tid in args.tasks:
        task = TASKS[tid]
        if task.missing_data():
            continue
        rows[tid] = run(task, bb, args.cache, {"train": args.max_train, "val": args.max_val})
        print(tid, json.dumps(rows[tid]), flush=True)
    args.out.write_text(report(rows, bb))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
