"""Which frame encoder gives the best discrete units for SpeechPrompt-style unit LMs?

Probe on FSDD spoken digits, leave-one-speaker-out (train on 3 speakers, test on
the 4th), comparing
  (a) log-mel 80 (Whisper front end), per-utterance mean/var norm, 100 -> 50 Hz
      by averaging frame pairs, +-2 frames of context (400 dims); also "logmel_4k",
      the same on the 62 bins below 4 kHz (FSDD is 8 kHz audio: the bins above
      hold only resampling leakage that per-utterance normalisation blows up), and
  (b) Whisper tiny.en encoder layers 1..4 (app/whisper.py, 50 Hz, 384 dims; layers
      1-3 are the raw residual stream, layer 4 includes ln_post), unpadded and,
      with --padded, padded to 30 s as Whisper is trained (first frames kept).
For each: StandardScaler + MiniBatchKMeans(100) fit on the training speakers'
frames, units with repeats collapsed, unit uni+bigram TF-IDF -> LogisticRegression;
and mean+std pooled dense features -> StandardScaler -> LogisticRegression
(for log-mel, pooled over the raw log-mel frames: after CMVN they are 0 / 1).
LogisticRegression's C is chosen by leave-one-training-speaker-out CV on the 3
training speakers only (the held-out speaker is never used for any choice).

Usage:
    python recipes/probe_encoders.py latency --model /work/cache/whisper_tiny_en
    python recipes/probe_encoders.py probe --seeds 3 --cache /work/cache/probe_feats_full.npz \\
        --json /work/cache/probe_results_full.json          # resumable: finished feature sets are kept
    python recipes/probe_encoders.py probe --padded --limit 5 --seeds 1 --json /work/cache/probe_padded.json
(--data defaults to ../shared/data/fsdd/recordings next to the repo.) Results: docs/ENCODER_COMPARISON.md.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.whisper import WhisperEncoder  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()  # what torch picks, before we pin it
SPEAKERS = ("jackson", "nicolas", "theo", "yweweler")
SR = 16000
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

def load_fsdd(data: Path) -> list[tuple[torch.Tensor, int, str]]:
    import soundfile as sf
    import torchaudio.functional as AF

    items = []
    for path in sorted(data.glob("*.wav")):
        m = re.fullmatch(r"(\d)_([a-z]+)_(\d+)\.wav", path.name)
        if not m or m.group(2) not in SPEAKERS:
            continue
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
        wav = torch.from_numpy(wav.mean(axis=1))
        items.append((AF.resample(wav, sr, SR) if sr != SR else wav, int(m.group(1)), m.group(2)))
    return items


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

def fit_lr(X_tr, y_tr, groups):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import LeaveOneGroupOut

    cv = list(LeaveOneGroupOut().split(X_tr, y_tr, groups))
    return LogisticRegressionCV(Cs=[0.1, 1.0, 10.0, 100.0], cv=cv, max_iter=3000, l1_ratios=(0.0,),
                                scoring="accuracy", use_legacy_attributes=False).fit(X_tr, y_tr)


def pooled(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in frames])


def evaluate(frames: list[np.ndarray], y: np.ndarray, spk: np.ndarray, clusters: int, seeds: int,
             dense_frames: list[np.ndarray] | None = None) -> dict:
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import StandardScaler

    res: dict = {"units": {}, "dense": {}, "units_per_clip": {}, "clusters_used": {}}
    dense = pooled(dense_frames if dense_frames is not None else frames)
    for test in SPEAKERS:
        tr, te = np.where(spk != test)[0], np.where(spk == test)[0]
        # dense mean+std pooling
        sc = StandardScaler().fit(dense[tr])
        lr = fit_lr(sc.transform(dense[tr]), y[tr], spk[tr])
        res["dense"][test] = float((lr.predict(sc.transform(dense[te])) == y[te]).mean())
        # k-means units
        X_tr = np.concatenate([frames[i] for i in tr])
        scaler = StandardScaler().fit(X_tr)
        accs, lens, used = [], [], []
        for seed in range(seeds):
            km = MiniBatchKMeans(n_clusters=clusters, batch_size=4096, n_init=3, random_state=seed).fit(scaler.transform(X_tr))
            docs = []
            for f in frames:
                u = km.predict(scaler.transform(f))
                u = u[np.r_[True, u[1:] != u[:-1]]]  # collapse repeats
                docs.append(" ".join(f"u{t}" for t in u))
            vec = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", sublinear_tf=True)
            D_tr = vec.fit_transform([docs[i] for i in tr])
            lr = fit_lr(D_tr, y[tr], spk[tr])
            accs.append(float((lr.predict(vec.transform([docs[i] for i in te])) == y[te]).mean()))
            lens.append(float(np.mean([len(docs[i].split()) for i in te])))
            used.append(len(np.unique(km.predict(scaler.transform(np.concatenate([frames[i] for i in te]))))))
        res["units"][test] = float(np.mean(accs))
        res["units_per_clip"][test] = float(np.mean(lens))
        res["clusters_used"][test] = float(np.mean(used))
    for key in ("units", "dense", "units_per_clip", "clusters_used"):
        res[key]["mean"] = float(np.mean([res[key][s] for s in SPEAKERS]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["latency", "probe"])
    ap.add_argument("--model", type=Path, default=Path("/work/cache/whisper_tiny_en"))
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/fsdd/recordings")
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
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))
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
