"""Where the voice streams lose acted emotion, and what a next backbone's voice quantizer should be fit on.

    python -m recipes.experiments.voice_fit                  # writes docs/results/voice_fit.json, prints a table

The shipped backbone's voice streams are window statistics (mean | std over 1 s) of its voice encoder's block,
whitened onto the top principal directions of its pretraining corpus (mostly espeak-ng speech) and cut into 8
equal-mass buckets per direction (app.encoder.units.VoiceQuantizer). This probe keeps the same encoder block and
windows and changes only the quantizer: the shipped one, and quantizers of 16, 32 and 64 directions fit (same
recipe, :meth:`VoiceQuantizer.fit`) on the windows of real training recordings only
(:func:`recipes.common.splits.real_training_audio`, no validation or test speaker; RAVDESS actors 13 and 14, emotion's
second validation pair, left out too). Each clip becomes a bag of its voice codes (per direction, the share of its
windows in each bucket); standardised + logistic regression, C picked on validation. Reference rows: the continuous
whitened statistics (no buckets) and the clip's pooled frames (mean | std of the block: what the block hears).

Tasks (real recordings, speakers never heard in training): emotion (RAVDESS actors 15 + 16 and 13 + 14 validate in
turn, 17-20 test), gender (the same actors, labelled by sex), speaker (FSDD's four speakers, closed set, by take).
Details and figures: docs/BACKBONE_V2.md section 25.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from app.backbone import Backbone
from app.encoder.audio import prepare
from app.encoder.units import VoiceQuantizer, window_stats
from recipes.common.paths import DOCS, written_whole
from recipes.common.results import log
from recipes.common.splits import real_training_audio
from recipes.common.tasks import SPEAKER_TAKES, _emotion, _ravdess_gender, _real
from recipes.experiments.stream_probe import probe

FOLD_ACTORS = ("13", "14")  # emotion's second validation pair: kept out of the fit pool as out of training
CS = (0.003, 0.01, 0.03, 0.1, 0.3)


def block_frames(bb: Backbone, path: str) -> torch.Tensor:
    """The voice encoder block's frames ``(F, D)`` of one recording, prepared as the backbone prepares audio."""
    enc = bb.encoder
    dense = enc.voice_dense if enc.voice_dense is not None else enc.dense
    with torch.no_grad():
        h = dense.hidden_states(prepare(path).wav)[enc.voice.layer]
    return (h[0] if h.dim() == 3 else h).float()


def clip_windows(bb: Backbone, paths: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Per clip, its window statistics ``(W, 2D)``, and the clip's pooled frames (mean | std) ``(N, 2D)``."""
    windows, pooled = [], []
    for i, p in enumerate(paths):
        fr = block_frames(bb, p)
        windows.append(window_stats(fr, bb.encoder.voice.window)[0].numpy())
        pooled.append(torch.cat([fr.mean(0), fr.std(0, unbiased=False)]).numpy())
        if i and i % 300 == 0:
            log(f"  {i}/{len(paths)} clips")
    return windows, np.stack(pooled)


def bag(q: VoiceQuantizer, windows: list[np.ndarray]) -> np.ndarray:
    """Per clip, the share of its windows in each bucket of each direction ``(N, n_streams * n_buckets)``."""
    out = []
    for w in windows:
        codes = q.quantize(torch.from_numpy(w))
        hist = torch.nn.functional.one_hot(codes, q.n_buckets).float().mean(0)
        out.append(hist.flatten().numpy())
    return np.stack(out)


def whitened(q: VoiceQuantizer, windows: list[np.ndarray]) -> np.ndarray:
    """Per clip, mean | std over its windows of the whitened statistics (the quantizer without its buckets)."""
    rows = []
    for w in windows:
        z = q.whiten(torch.from_numpy(w))
        rows.append(torch.cat([z.mean(0), z.std(0, unbiased=False)]).numpy())
    return np.stack(rows)


def task_sets() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """(path, label) of each task's train / val / test: emotion on its two folds, gender, speaker."""
    def pairs(clips):
        return [(c.path, c.label) for c in clips]
    gender = {s: [(c.path, _ravdess_gender(Path(c.path))) for c in _emotion(s)] for s in ("train", "val", "test")}
    fsdd = _real("fsdd", "all", lambda path: path.stem.split("_")[1])
    speaker = {s: [(c.path, c.label) for c in fsdd if int(Path(c.path).stem.split("_")[2]) in SPEAKER_TAKES[s]]
               for s in ("train", "val", "test")}
    return {"emotion": {s: pairs(_emotion(s)) for s in ("train", "val", "test")},
            "emotion_val_13_14": {s: pairs(_emotion(s, FOLD_ACTORS)) for s in ("train", "val", "test")},
            "gender": gender, "speaker": speaker}


def fit_pool(per_dataset: int, seed: int = 0) -> list[str]:
    """Up to ``per_dataset`` real training recordings of each shared dataset (RAVDESS actors 13 + 14 left out)."""
    rng = random.Random(seed)
    by_ds: dict[str, list[str]] = {}
    for path, ds, _, spk in real_training_audio(seed):
        if ds == "ravdess" and str(spk).zfill(2) in FOLD_ACTORS:
            continue
        by_ds.setdefault(ds, []).append(str(path))
    out = []
    for ds in sorted(by_ds):
        paths = sorted(by_ds[ds])
        out += rng.sample(paths, min(per_dataset, len(paths)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default=None, help="backbone folder (default: the shipped one)")
    ap.add_argument("--streams", nargs="*", type=int, default=[16, 32, 64], help="directions of the refit quantizers")
    ap.add_argument("--per-dataset", type=int, default=400, help="fit pool: recordings per shared dataset")
    ap.add_argument("--out", type=Path, default=DOCS / "results" / "voice_fit.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bb = Backbone.load(args.backbone)
    shipped = bb.encoder.voice  # the backbone's own quantizer (the shipped one by default)
    if shipped is None:
        raise SystemExit("This backbone has no voice streams.")
    sets = task_sets()
    paths = sorted({p for t in sets.values() for s in t.values() for p, _ in s})
    log(f"encoding {len(paths)} task clips")
    windows, pooled = clip_windows(bb, paths)
    index = {p: i for i, p in enumerate(paths)}
    pool = fit_pool(args.per_dataset)
    log(f"encoding the fit pool: {len(pool)} real training recordings")
    pool_windows, _ = clip_windows(bb, pool)
    stats = torch.from_numpy(np.concatenate(pool_windows))
    quantizers = {f"the backbone's own ({shipped.n_streams} x {shipped.n_buckets})": shipped}
    for n in args.streams:
        quantizers[f"real fit {n} x {shipped.n_buckets}"] = VoiceQuantizer.fit(
            stats, shipped.layer, shipped.window, n_streams=n, n_buckets=shipped.n_buckets)
    features = {"pooled frames (mean | std of the block)": lambda ix: pooled[ix]}
    for name, q in quantizers.items():
        features[f"bag: {name}"] = lambda ix, q=q: bag(q, [windows[i] for i in ix])
    features["whitened, no buckets: the backbone's directions"] = lambda ix: whitened(shipped, [windows[i] for i in ix])
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for fname, make in features.items():
        rows[fname] = {}
        for task, parts in sets.items():
            ix = {s: [index[p] for p, _ in parts[s]] for s in parts}
            labels = sorted({lab for _, lab in parts["train"]})
            y = {s: np.array([labels.index(lab) for _, lab in parts[s]]) for s in parts}
            x = {s: make(ix[s]) for s in parts}
            rows[fname][task] = probe((x["train"], y["train"]), (x["val"], y["val"]), {"test": (x["test"], y["test"])},
                                      CS)
        log(f"{fname}: " + ", ".join(f"{t} {r['val']:.3f}/{r['test']:.3f}" for t, r in rows[fname].items()))
    result = {"backbone": bb.id, "fingerprint": bb.fingerprint, "layer": shipped.layer, "window": shipped.window,
              "fit_pool_clips": len(pool), "fit_pool_windows": int(stats.shape[0]), "rows": rows}
    with written_whole(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    print(table(result))


def table(result: dict) -> str:
    """The rows as a markdown table: validation / test accuracy per task, and emotion's two-fold validation mean."""
    tasks = ["emotion", "emotion_val_13_14", "gender", "speaker"]
    lines = ["| features (voice encoder block, 1 s windows) | emotion, val 15+16 / test | emotion, val 13+14 | "
             "emotion, two-fold val | gender, val / test | speaker, val / test |", "|---" * 6 + "|"]
    for name, r in result["rows"].items():
        e, e2 = r[tasks[0]], r[tasks[1]]
        lines.append(f"| {name} | {e['val']:.3f} / {e['test']:.3f} | {e2['val']:.3f} | "
                     f"{(e['val'] + e2['val']) / 2:.3f} | {r['gender']['val']:.3f} / {r['gender']['test']:.3f} | "
                     f"{r['speaker']['val']:.3f} / {r['speaker']['test']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
