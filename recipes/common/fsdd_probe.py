"""The FSDD leave-one-speaker-out probe that compares encoders: each speaker held out in turn, a logistic
regression on pooled dense features and on k-means unit n-grams (docs/ENCODER_COMPARISON.md)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

SPEAKERS = ("jackson", "nicolas", "theo", "yweweler")
SR = 16000


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
            km = MiniBatchKMeans(n_clusters=clusters, batch_size=4096, n_init=3, random_state=seed)
            km.fit(scaler.transform(X_tr))
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
