"""Which audio should the content codebook be fit on? And how many voice streams, from which block?

    python -m recipes.experiments.codebook_sample --backbone work/bb_v3_out [--tasks digits language commands emotion]
    python -m recipes.experiments.codebook_sample --backbone work/bb_v3_out --voice gender

Codebook part: three k-means codebooks on the backbone encoder's frames (the frames its own k-means quantizes), 60
random frames from each of 3,000 corpus clips (voxforge excluded, as the backbone recipe does): the backbone's own
(its recipe's random sample, ~80 % espeak-ng speech), one fit on half real recordings and half synthetic clips
(``--real-share 0.5`` of recipes/build/backbone.py), one on real recordings only. Each task's clips -> units
(nearest centroid, repeats collapsed) -> relative frequency of each unit over the clip -> standardised logistic
regression (C = 0.1), trained on the prompts' training split (cap 1,000), scored on the test split (language: the
real volunteers).

Voice part (``--voice TASK``): VoiceQuantizer fits on the window statistics (1 s windows) of every encoder block,
``--streams`` (16, 32) streams of 8 codes, fit on the task's own training clips (600), then a bag of the codes + LR
as above.

Prints one line per figure and writes docs/results/codebook_sample.json (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from app.backbone import Backbone
from app.encoder.audio import prepare
from app.encoder.units import VoiceQuantizer, collapse, window_stats
from recipes.build import backbone as recipe
from recipes.common.paths import WORK
from recipes.common.results import RESULTS_DIR, log, split_examples
from recipes.common.tasks import TASKS
from recipes.experiments.lm_health import TEST_SPLIT


def lr_score(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)).fit(x_tr, y_tr)
    return round(float(clf.score(x_te, y_te)), 4)


def corpus_frames(encoder, rows: list[dict], n_clips: int, rng: np.random.Generator) -> torch.Tensor:
    """60 random frames of each of ``n_clips`` random clips of ``rows``."""
    out = []
    for j in rng.permutation(len(rows))[:n_clips]:
        with torch.no_grad():
            f = encoder.features(recipe.load_wav(rows[j]["path"])).float()
        out.append(f[torch.from_numpy(rng.permutation(f.shape[0])[:60])])
    return torch.cat(out)


def codebooks(bb: Backbone, corpus: Path, clips: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The backbone's own codebook and two refits of the same size: half real / half synthetic, real only."""
    rows = [r for r in recipe.read_manifest(corpus) if r.get("dataset") != "voxforge"]
    rng = np.random.default_rng(seed)
    real = corpus_frames(bb.encoder, [r for r in rows if recipe.is_real(r)], clips // 2, rng)
    synth = corpus_frames(bb.encoder, [r for r in rows if not recipe.is_real(r)], clips // 2, rng)
    log(f"codebook samples: {real.shape[0]} real frames, {synth.shape[0]} synthetic frames")
    k = bb.n_units
    return {"backbone's own (random corpus sample)": bb.encoder.centroids.float(),
            "half real, half synthetic": recipe.kmeans(torch.cat([real, synth]), k, iters=20, seed=seed),
            "real only": recipe.kmeans(real, k, iters=20, seed=seed)}


def task_frames(bb: Backbone, task, split: str, cap: int) -> tuple[list[torch.Tensor], np.ndarray]:
    examples = split_examples(task, split, cap, 0)
    with torch.no_grad():
        frames = [bb.encoder.features(prepare(e.audio).wav).float() for e in examples]
    return frames, np.array([task.labels.index(e.label) for e in examples])


def unit_bags(frames: list[torch.Tensor], centroids: torch.Tensor) -> np.ndarray:
    k = centroids.shape[0]
    bags = [np.bincount(collapse(torch.cdist(f, centroids).argmin(1))[0].numpy(), minlength=k) for f in frames]
    return np.stack([b / max(b.sum(), 1) for b in bags])


def codebook_part(bb: Backbone, tasks: list[str], corpus: Path, clips: int) -> dict:
    books = codebooks(bb, corpus, clips)
    out: dict[str, dict[str, float]] = {}
    for tid in tasks:
        task = TASKS[tid]
        (f_tr, y_tr), (f_te, y_te) = task_frames(bb, task, "train", 1000), \
            task_frames(bb, task, TEST_SPLIT.get(tid, "test"), 0)
        out[tid] = {name: lr_score(unit_bags(f_tr, c), y_tr, unit_bags(f_te, c), y_te) for name, c in books.items()}
        for name, acc in out[tid].items():
            log(f"{tid} | {name}: {acc:.3f}")
    return out


def voice_part(bb: Backbone, tid: str, streams: tuple[int, ...] = (16, 32)) -> dict:
    """Bag of voice codes + LR for a quantizer on each encoder block's window statistics."""
    task = TASKS[tid]

    def stats(split: str, cap: int):
        examples = split_examples(task, split, cap, 0)
        with torch.no_grad():
            out = [[window_stats(h.float(), 50)[0] for h in bb.encoder.dense.hidden_states(prepare(e.audio).wav)]
                   for e in examples]
        return out, np.array([task.labels.index(e.label) for e in examples])

    (s_tr, y_tr), (s_te, y_te) = stats("train", 600), stats(TEST_SPLIT.get(tid, "test"), 0)
    out = {}
    for layer in range(len(s_tr[0])):
        for n in streams:
            vq = VoiceQuantizer.fit(torch.cat([s[layer] for s in s_tr]), layer, 50, n, 8)

            def bag(st: list[torch.Tensor]) -> np.ndarray:
                z = vq.whiten(st[layer])
                codes = (z[:, :, None] > vq.edges[None]).sum(-1)
                return np.bincount((codes + torch.arange(n) * 8).flatten().numpy(), minlength=n * 8) / len(codes)
            acc = lr_score(np.stack([bag(s) for s in s_tr]), y_tr, np.stack([bag(s) for s in s_te]), y_te)
            out[f"block {layer}, {n} streams"] = acc
            log(f"{tid} voice | block {layer}, {n} streams: {acc:.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--tasks", nargs="*", default=["digits", "language", "commands", "emotion"])
    ap.add_argument("--voice", default=None, metavar="TASK", help="run the voice-stream part on this task instead")
    ap.add_argument("--streams", nargs="*", type=int, default=[16, 32], help="voice part: stream counts to try")
    ap.add_argument("--corpus", type=Path, default=WORK / "corpus")
    ap.add_argument("--clips", type=int, default=3000, help="corpus clips sampled for each refit codebook")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "codebook_sample.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe.log = lambda *a, **k: None  # k-means' per-iteration lines
    bb = Backbone.load(args.backbone)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    entry = result.setdefault(bb.fingerprint, {"backbone": bb.id})
    if args.voice:
        entry.setdefault("voice", {})[args.voice] = voice_part(bb, args.voice, tuple(args.streams))
    else:
        entry["codebook"] = codebook_part(bb, args.tasks, args.corpus, args.clips)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
