"""Which frame encoder gives the best discrete units? FSDD spoken digits, leave-one-speaker-out: log-mel against
Whisper tiny.en layers 1..4, as k-means unit n-grams and as pooled dense features (recipes.common.fsdd_probe).

    python -m recipes.experiments.probe_encoders latency --model work/whisper_tiny_en
    python -m recipes.experiments.probe_encoders probe --seeds 3 --cache work/probe_feats_full.npz \
        --json work/probe_results_full.json          # resumable: finished feature sets are kept

Method: docs/RECIPES.md#probe_encoders. Results: docs/ENCODER_COMPARISON.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.encoder.whisper import WhisperEncoder
from recipes.common.fsdd_probe import SPEAKERS, SR, evaluate, load_fsdd
from recipes.common.paths import DATA_ROOT, WORK

DEFAULT_THREADS = torch.get_num_threads()  # what torch picks, before we pin it
N_MEL_4K = 62  # mel bins 0..61 lie below 4 kHz, the Nyquist frequency of the 8 kHz FSDD recordings


# ----------------------------------------------------------------------------- latency

def latency(model: WhisperEncoder, runs: int) -> None:
    wav = 0.1 * torch.randn(SR)  # 1 s
    for threads in (DEFAULT_THREADS, 1):
        torch.set_num_threads(threads)
        row = []
        for name, fn in [("log-mel only", lambda: model.log_mel(wav[None]))] + [
            (f"layers 1..{n}", lambda n=n: model(wav, n_layers=n)) for n in range(1, model.cfg.n_layer + 1)
        ]:
            with torch.inference_mode():
                for _ in range(5):
                    fn()
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    fn()
                    times.append(1000 * (time.perf_counter() - t0))
            row.append(f"{name}: {statistics.median(times):.2f} ms")
        print(f"torch threads={threads}: " + " | ".join(row))


# ----------------------------------------------------------------------------- features

def logmel_frames(mel: torch.Tensor) -> np.ndarray:
    """[80, n] log-mel -> per-utterance CMVN, pairs averaged to 50 Hz, +-2 context -> [ceil(n/2), 400]."""
    x = mel.T
    x = (x - x.mean(0)) / (x.std(0) + 1e-5)
    if x.shape[0] % 2:
        x = torch.cat([x, x[-1:]])
    x = x.view(-1, 2, x.shape[1]).mean(1)
    p = F.pad(x.T[None], (2, 2), mode="replicate")[0].T
    return torch.cat([p[i : i + x.shape[0]] for i in range(5)], dim=1).numpy()


def whisper_layers(model: WhisperEncoder, mel: torch.Tensor, n_frames: int) -> list[np.ndarray]:
    """Outputs of blocks 1..n_layer (last one after ln_post), first n_frames frames."""
    outs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o)) for b in model.blocks[:-1]]
    try:
        final = model.encode_mel(mel)
    finally:
        for h in hooks:
            h.remove()
    return [o[0, :n_frames].numpy().astype(np.float32) for o in outs + [final]]


def save_features(path: Path, feats: dict[str, list[np.ndarray]]) -> None:
    """Per-clip feature arrays as one concatenated array + offsets per feature set (np.savez, no pickle)."""
    arrays = {}
    for name, clips in feats.items():
        arrays[f"{name}.data"] = np.concatenate(clips)
        arrays[f"{name}.offsets"] = np.cumsum([0] + [len(c) for c in clips])
    with path.open("wb") as fh:
        np.savez(fh, **arrays)


def load_features(path: Path) -> dict[str, list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        names = sorted({k.rsplit(".", 1)[0] for k in z.files})
        return {n: [z[f"{n}.data"][a:b] for a, b in zip(z[f"{n}.offsets"][:-1], z[f"{n}.offsets"][1:])] for n in names}


def extract(model: WhisperEncoder, items, padded: bool) -> dict[str, list[np.ndarray]]:
    feats: dict[str, list[np.ndarray]] = {"logmel": [], "logmel_4k": [], "logmel_dense": [], "logmel_4k_dense": []}
    n = model.cfg.n_layer
    for k in range(1, n + 1):
        feats[f"whisper_L{k}"] = []
        if padded:
            feats[f"whisper30s_L{k}"] = []
    t0 = time.time()
    with torch.inference_mode():
        for i, (wav, _, _) in enumerate(items):
            mel = model.log_mel(wav[None])
            frames = logmel_frames(mel[0])
            feats["logmel"].append(frames)
            feats["logmel_4k"].append(logmel_frames(mel[0, :N_MEL_4K]))
            feats["logmel_dense"].append(mel[0].T.numpy())
            feats["logmel_4k_dense"].append(mel[0, :N_MEL_4K].T.numpy())
            for k, f in enumerate(whisper_layers(model, mel, frames.shape[0]), 1):
                feats[f"whisper_L{k}"].append(f)
            if padded:
                mel30 = model.log_mel(F.pad(wav, (0, 30 * SR - wav.numel()))[None])
                for k, f in enumerate(whisper_layers(model, mel30, frames.shape[0]), 1):
                    feats[f"whisper30s_L{k}"].append(f)
            if i % 250 == 0:
                print(f"  extracted {i}/{len(items)} clips, {time.time() - t0:.0f} s", flush=True)
    return feats


# ----------------------------------------------------------------------------- probe

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["latency", "probe"])
    ap.add_argument("--model", type=Path, default=WORK / "whisper_tiny_en")
    ap.add_argument("--data", type=Path, default=DATA_ROOT / "fsdd" / "recordings")
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=1, help="k-means seeds averaged per fold")
    ap.add_argument("--padded", action="store_true", help="also Whisper features from 30 s padded input")
    ap.add_argument("--limit", type=int, default=0, help="use every k-th clip (0 = all), for quick runs")
    ap.add_argument("--runs", type=int, default=50, help="latency: timed runs per setting")
    ap.add_argument("--json", type=Path, default=None, help="probe: write results here")
    ap.add_argument("--cache", type=Path, default=None, help="probe: reuse / save extracted features (.npz, no pickle)")
    args = ap.parse_args()

    model = WhisperEncoder.from_pretrained(args.model)
    if args.cmd == "latency":
        latency(model, args.runs)
        return

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    t0 = time.time()
    items = load_fsdd(args.data)
    if args.limit:
        items = items[:: args.limit]
    y = np.array([d for _, d, _ in items])
    spk = np.array([s for _, _, s in items])
    print(f"{len(items)} clips, {sum(w.numel() for w, _, _ in items) / SR / 60:.1f} min of audio")
    if args.cache and args.cache.exists():
        feats = load_features(args.cache)
    else:
        feats = extract(model, items, args.padded)
        if args.cache:
            save_features(args.cache, feats)
    print(f"features: {time.time() - t0:.0f} s")
    results: dict = {}
    if args.json and args.json.exists():  # resume: keep feature sets already evaluated with the same settings
        old = json.loads(args.json.read_text())
        if {k: old["args"].get(k) for k in ("clusters", "seeds", "limit")} == {
                k: str(getattr(args, k)) for k in ("clusters", "seeds", "limit")}:
            results = old["results"]
    for name, frames in feats.items():
        if name.endswith("_dense") or name in results:
            continue
        t1 = time.time()
        dense = feats.get(name + "_dense")  # log-mel: pool the raw log-mel (after CMVN mean/std are 0/1)
        results[name] = r = evaluate(frames, y, spk, args.clusters, args.seeds, dense)
        print(f"{name:16s} units acc {r['units']['mean']:.3f}  dense acc {r['dense']['mean']:.3f}  "
              f"units/clip {r['units_per_clip']['mean']:.1f}  ({time.time() - t1:.0f} s)", flush=True)
        if args.json:
            run = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
            args.json.write_text(json.dumps(run, indent=1))
    print(f"total {time.time() - t0:.0f} s")

    cols = list(SPEAKERS) + ["mean"]
    for key, title in [("units", "k-means units -> uni+bigram TF-IDF -> LR, accuracy"),
                       ("dense", "mean+std pooled dense -> LR, accuracy"),
                       ("units_per_clip", "collapsed units per test clip"),
                       ("clusters_used", "clusters used on the held-out speaker (of %d)" % args.clusters)]:
        print(f"\n{title}\n| features | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for name, r in results.items():
            fmt = "{:.3f}" if key in ("units", "dense") else "{:.1f}"
            print(f"| {name} | " + " | ".join(fmt.format(r[key][c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
