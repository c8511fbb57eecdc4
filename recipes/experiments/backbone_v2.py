"""Backbone v2 (issue #13): which encoder, layer, content codebook and extra streams, by measurement.

    python -m recipes.experiments.backbone_v2 pool                      # 320 espeak-ng clips for the codebooks
    python -m recipes.experiments.backbone_v2 encode fsdd voxforge ravdess pool speech_commands
    python -m recipes.experiments.backbone_v2 content --keys tiny_L3 base_L3 base_L4 --ks 100 250 500 [--depos]
    python -m recipes.experiments.backbone_v2 voice --key tiny_L1 --variants km64 sq8x8 sq16x8
    python -m recipes.experiments.backbone_v2 pooled --keys tiny_L1 tiny_L3 base_L1 base_L3 base_L4
    python -m recipes.experiments.backbone_v2 costs

Whisper tiny.en and base come from recipes.build.import_whisper (--tiny, --base). Speaker-disjoint folds, bag of
codes + logistic regression; codebooks are fit on a pool no probe speaker is in. Details, tables and the decision:
docs/BACKBONE_V2.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from recipes.common.paths import WORK

TASKS = {"digits": "fsdd", "commands": "speech_commands", "gender": "ravdess", "emotion": "ravdess",
         "language": "voxforge"}
DURATION_EDGES = (2, 3, 4, 5, 7, 10, 14)  # as app/encoder/units.py
PITCH_EDGES_HZ = tuple(float(60 * (500 / 60) ** (i / 14)) for i in range(1, 14))
POOL_LANGS = ("en", "de", "fr", "es", "it", "ru", "pt", "nl", "pl", "tr", "ar", "hi", "sv", "uk", "cs", "ro")


class Paths:
    def __init__(self, work: Path, tiny: Path, base: Path) -> None:
        self.work, self.tiny, self.base = work, tiny, base
        self.feats, self.codes, self.pool = work / "feats", work / "codes", work / "pool" / "synth"

    @property
    def encoders(self) -> dict[str, tuple[Path, tuple[int, ...]]]:
        """Blocks kept per encoder (block k's raw residual stream; no ln_post)."""
        return {"tiny": (self.tiny, (1, 2, 3)), "base": (self.base, (1, 2, 3, 4))}


# ------------------------------------------------------------------------------------------------ data
def make_pool(paths: Paths, per_lang: int = 20, seed: int = 0) -> None:
    """Unlabelled multilingual espeak-ng clips (faker names and addresses, random voice variant, pitch, rate)."""
    import soundfile as sf
    from faker import Faker

    from recipes.common import synth

    paths.pool.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    variants = synth.espeak_variants()
    for lang in POOL_LANGS:
        fk = Faker(synth.LANGUAGES[lang].faker)
        fk.seed_instance(seed)
        for i in range(per_lang):
            text = f"{fk.name()}, {fk.street_address()}, {fk.city()}."
            variant = variants[int(rng.integers(len(variants)))]
            voices = synth.LANGUAGES[lang].voices
            voice = voices[int(rng.integers(len(voices)))]
            pitch, rate = int(rng.integers(25, 80)), int(rng.integers(130, 220))
            wav = synth.synthesize(text, voice, variant, pitch=pitch, rate=rate)
            sf.write(paths.pool / f"{lang}_{i:02d}.wav", wav, 16000)


def items_of(ds: str, paths: Paths) -> list[tuple[str, str, str]]:
    """(path, label, speaker) of every shared clip of ``ds``; ``pool``: ar_commands + lt_commands + the espeak
    clips, unlabelled (only ever used to fit codebooks)."""
    from recipes.common import splits

    if ds == "pool":
        out = [(str(p), "", f"{d}:{s}") for d in ("ar_commands", "lt_commands")
               for part in splits.split(d).values() for p, _, s in part]
        return sorted(out + [(str(p), "", "synth") for p in sorted(paths.pool.glob("*.wav"))])
    return sorted((str(p), lab, spk) for part in splits.split(ds).values() for p, lab, spk in part)


def load_encoder(path: Path, n_layer: int):
    """Whisper encoder cut after ``n_layer`` blocks, weights rounded to float16 as a backbone stores them."""
    from safetensors.torch import load_file

    from app.encoder.whisper import WhisperEncoder, WhisperEncoderConfig

    meta = json.loads((path / "config.json").read_text())["config"]
    model = WhisperEncoder(WhisperEncoderConfig(**{**meta, "n_layer": n_layer}))
    state = load_file(str(path / "encoder.safetensors"))
    model.load_state_dict({k: state[k].to(torch.float16).float() for k in model.state_dict()})
    return model.eval()


@torch.no_grad()
def block_outputs(model, wav: torch.Tensor, keep: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Raw residual stream after each kept block (as WhisperEncoder.encode_mel, clips < 30 s)."""
    F = torch.nn.functional
    wav = F.pad(wav, (0, max(0, 320 - wav.numel())))
    x = F.gelu(model.conv1(model.log_mel(wav[None])))
    x = F.gelu(model.conv2(x)).transpose(1, 2)
    x = x + model.positional_embedding[: x.shape[1]]
    out = {}
    for i, block in enumerate(model.blocks, 1):
        x = block(x)
        if i in keep:
            out[i] = x[0]
    return out


def encode(paths: Paths, datasets: list[str]) -> None:
    """Frames of every kept block of both encoders (float16) + frame pitch, per dataset -> feats/DATASET.npz."""
    from app.encoder.audio import AudioError, prepare
    from app.encoder.pitch import frame_pitch

    paths.feats.mkdir(parents=True, exist_ok=True)
    models = {name: load_encoder(p, max(keep)) for name, (p, keep) in paths.encoders.items()}
    for ds in datasets:
        items = items_of(ds, paths)
        feats = {f"{n}_L{k}": [] for n, (_, keep) in paths.encoders.items() for k in keep}
        f0s, offsets, kept, t0, secs = [], [0], [], time.time(), 0.0
        for path, label, spk in items:
            try:
                wav = torch.as_tensor(prepare(path, max_seconds=20.0).wav)
            except AudioError:  # Speech Commands' _silence_ clips: untrimmed
                wav = torch.as_tensor(prepare(path, max_seconds=20.0, trim=False, normalize=False).wav)
            secs += wav.numel() / 16000
            for name, (_, keep) in paths.encoders.items():
                for k, v in block_outputs(models[name], wav, keep).items():
                    feats[f"{name}_L{k}"].append(v.to(torch.float16).numpy())
                    n = v.shape[0]
            f0s.append(frame_pitch(wav, 16000, n, 320).numpy().astype(np.float32))
            offsets.append(offsets[-1] + n)
            kept.append((path, label, spk))
        np.savez(paths.feats / f"{ds}.npz", items=np.array(kept), offsets=np.array(offsets),
                 f0=np.concatenate(f0s), **{k: np.concatenate(v) for k, v in feats.items()})
        print(f"{ds}: {len(kept)} clips, {secs / 60:.1f} min, {offsets[-1]} frames, {time.time() - t0:.0f} s",
              flush=True)


class Feats:
    """feats/*.npz, loaded on demand. Key ``base_L3`` = block 3 of base; ``base_L3-pos`` = the same minus
    Whisper's sinusoidal position table (added once at the input, it stays in the raw residual stream)."""

    def __init__(self, paths: Paths) -> None:
        self.paths, self._d = paths, {}

    def __call__(self, ds: str) -> dict:
        if ds not in self._d:
            z = np.load(self.paths.feats / f"{ds}.npz")
            self._d[ds] = {k: z[k] for k in z.files}
        return self._d[ds]

    def frames(self, ds: str, key: str) -> np.ndarray:
        d = self(ds)
        if key.endswith("-pos"):
            from app.encoder.whisper import sinusoids

            x = d[key[:-4]].astype(np.float32)
            off = d["offsets"]
            pos = np.concatenate([np.arange(b - a) for a, b in zip(off[:-1], off[1:])])
            return x - sinusoids(1500, x.shape[1]).numpy()[pos]
        return d[key].astype(np.float32)

    def clips(self, ds: str, key: str) -> list[np.ndarray]:
        x, off = self.frames(ds, key), self(ds)["offsets"]
        return [x[a:b] for a, b in zip(off[:-1], off[1:])]


# ------------------------------------------------------------------------------------------------ probe
def folds_of(task: str, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """(labels, speakers, [(train, test)]): every clip tested once by a model that never heard its speaker."""
    from sklearn.model_selection import GroupKFold

    lab, spk = items[:, 1], items[:, 2]
    if task == "gender":
        lab = np.array(["male" if int(s) % 2 else "female" for s in spk])  # RAVDESS: odd actors are male
    if task == "digits":  # FSDD: leave one speaker out
        tests = [{s} for s in sorted(set(spk))]
    elif task in ("gender", "emotion"):  # RAVDESS: 5 folds of 4 consecutive actors (2 male, 2 female)
        tests = [{f"{a:02d}" for a in range(4 * f + 1, 4 * f + 5)} for f in range(5)]
    elif task == "language":  # VoxForge: fold i tests the i-th session of every language
        sess = {lang: sorted(set(spk[lab == lang])) for lang in sorted(set(lab))}
        tests = [{s[f] for s in sess.values()} for f in range(3)]
    else:  # Speech Commands: 5 folds grouped by speaker
        return lab, spk, list(GroupKFold(n_splits=5).split(np.zeros(len(lab)), lab, spk))
    folds = []
    for t in tests:
        m = np.isin(spk, list(t))
        folds.append((np.where(~m)[0], np.where(m)[0]))
    return lab, spk, folds


def fit_lr(x, y, groups, cs=(0.1, 1.0, 10.0)):
    """Standardise + LogisticRegression; C by grouped 3-fold CV on the training speakers only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    best_c, best = cs[0], -1.0
    for c in cs:
        acc = []
        for tr, va in GroupKFold(n_splits=min(3, len(set(groups)))).split(x, y, groups):
            sc = StandardScaler().fit(x[tr])
            m = LogisticRegression(C=c, max_iter=3000).fit(sc.transform(x[tr]), y[tr])
            acc.append((m.predict(sc.transform(x[va])) == y[va]).mean())
        if np.mean(acc) > best:
            best, best_c = float(np.mean(acc)), c
    sc = StandardScaler().fit(x)
    return sc, LogisticRegression(C=best_c, max_iter=3000).fit(sc.transform(x), y)


def evaluate(task: str, x: np.ndarray, items: np.ndarray) -> dict:
    lab, spk, folds = folds_of(task, items)
    correct, per_fold = 0, []
    for tr, te in folds:
        sc, m = fit_lr(x[tr], lab[tr], spk[tr])
        ok = int((m.predict(sc.transform(x[te])) == lab[te]).sum())
        correct += ok
        per_fold.append(round(ok / len(te), 3))
    return {"acc": round(correct / len(lab), 4), "folds": per_fold}


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> torch.Tensor:
    """k-means++ then Lloyd (as recipes/build/backbone.py)."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    c = [x[torch.randint(n, (1,), generator=g)].squeeze(0)]
    d2 = (x - c[0]).pow(2).sum(1)
    for _ in range(1, k):
        c.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0))
        d2 = torch.minimum(d2, (x - c[-1]).pow(2).sum(1))
    c = torch.stack(c)
    x_sq = x.pow(2).sum(1, keepdim=True)
    for _ in range(iters):
        a = (x_sq - 2 * x @ c.T + c.pow(2).sum(1)[None]).argmin(1)
        counts = torch.bincount(a, minlength=k).float()
        new = torch.zeros_like(c).index_add_(0, a, x) / counts.clamp_min(1)[:, None]
        new[counts == 0] = c[counts == 0]
        done = float((new - c).norm(dim=1).max()) < 1e-4
        c = new
        if done:
            break
    return c


def assign(x: torch.Tensor, c: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    c_sq = c.pow(2).sum(1)
    return torch.cat([(c_sq[None] - 2 * x[i:i + chunk] @ c.T).argmin(1) for i in range(0, len(x), chunk)])


def collapse(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encoding: (ids, durations in frames, start frames)."""
    if len(ids) == 0:
        return ids, ids, ids
    starts = np.where(np.r_[True, ids[1:] != ids[:-1]])[0]
    return ids[starts], np.diff(np.r_[starts, len(ids)]), starts


def bag(seqs: list[np.ndarray], k: int) -> np.ndarray:
    """Relative frequency of each code over a clip's units (order-free)."""
    return np.stack([np.bincount(s, minlength=k)[:k] / max(len(s), 1) for s in seqs]).astype(np.float32)


class Codes:
    """Codebooks fit on the pool (cached in codes/), and the streams they give every clip."""

    def __init__(self, feats: Feats, kmeans_frames: int = 120_000, iters: int = 25) -> None:
        self.f, self.n, self.iters = feats, kmeans_frames, iters
        feats.paths.codes.mkdir(parents=True, exist_ok=True)

    def content_codebook(self, key: str, k: int) -> torch.Tensor:
        path = self.f.paths.codes / f"km_{key}_{k}_{self.n}_{self.iters}.pt"
        if not path.exists():
            x = self.f.frames("pool", key)
            idx = np.sort(np.random.default_rng(0).permutation(len(x))[: self.n])
            torch.save(kmeans(torch.from_numpy(x[idx]), k, self.iters), path)
        return torch.load(path, weights_only=True)

    def units(self, ds: str, key: str, k: int) -> list[dict]:
        """Per clip, as app/encoder/units.py: collapsed ids, durations, starts, duration and pitch buckets."""
        frame_ids = assign(torch.from_numpy(self.f.frames(ds, key)), self.content_codebook(key, k)).numpy()
        d = self.f(ds)
        out = []
        for a, b in zip(d["offsets"][:-1], d["offsets"][1:]):
            ids, dur, st = collapse(frame_ids[a:b])
            segs = [d["f0"][a + s:a + s + n] for s, n in zip(st, dur)]
            f0 = np.array([v[v > 0].mean() if (v > 0).any() else 0.0 for v in segs])  # voiced mean, 0 if none
            out.append({"ids": ids, "dur": dur, "starts": st,
                        "db": np.searchsorted(DURATION_EDGES, dur, side="right"),
                        "pb": np.where(f0 > 0, np.searchsorted(PITCH_EDGES_HZ, f0) + 1, 0)})
        return out


def window_stats(frames: np.ndarray, win: int) -> tuple[np.ndarray, np.ndarray]:
    """A clip's frames in near-equal windows of ~win frames (0: one window) -> ([mean | std] per window, the window
    of every frame)."""
    n = len(frames)
    m = 1 if win == 0 else max(1, int(round(n / win)))
    edges = np.linspace(0, n, m + 1).round().astype(int)
    stats = np.stack([np.r_[frames[a:b].mean(0), frames[a:b].std(0)] for a, b in zip(edges[:-1], edges[1:])])
    return stats.astype(np.float32), np.repeat(np.arange(m), np.diff(edges))


class VoiceQuantizer:
    """Voice streams from window statistics of low-layer frames, fit on the pool: standardise, PCA-whiten (32
    components), then either k-means (``km64``, ``pca-km64``) or scalar quantization (``sqNxB``: each of the top N
    whitened components cut into B equal-mass bins, one stream per component; like the pitch stream, for timbre)."""

    def __init__(self, pool_stats: np.ndarray, n_pca: int = 32, bins: int = 8) -> None:
        self.mu, self.sd = pool_stats.mean(0), pool_stats.std(0) + 1e-5
        z = (pool_stats - self.mu) / self.sd
        ev, evec = np.linalg.eigh(np.cov(z.T))
        order = np.argsort(ev)[::-1][:n_pca]
        self.W = evec[:, order] / np.sqrt(ev[order] + 1e-6)
        zp = z @ self.W
        self.edges = np.quantile(zp, np.linspace(0, 1, bins + 1)[1:-1], axis=0)  # (bins - 1, n_pca)
        self.bins = bins
        self.km = kmeans(torch.from_numpy(z.astype(np.float32)), 64)
        self.pkm = kmeans(torch.from_numpy(zp.astype(np.float32)), 64)

    def streams(self, stats: np.ndarray, variant: str) -> list[tuple[np.ndarray, int]]:
        """[(codes per window, vocabulary)] for one clip."""
        z = ((stats - self.mu) / self.sd).astype(np.float32)
        if variant == "km64":
            return [(assign(torch.from_numpy(z), self.km).numpy(), 64)]
        zp = (z @ self.W).astype(np.float32)
        if variant == "pca-km64":
            return [(assign(torch.from_numpy(zp), self.pkm).numpy(), 64)]
        n = int(variant[2:].split("x")[0])  # sqNxB
        return [(np.searchsorted(self.edges[:, j], zp[:, j]), self.bins) for j in range(n)]


# ------------------------------------------------------------------------------------------------ commands
def run_content(feats: Feats, codes: Codes, keys, ks, tasks, results: dict, save) -> None:
    for key in keys:
        for k in ks:
            for task in tasks:
                us = codes.units(TASKS[task], key, k)
                r = evaluate(task, bag([u["ids"] for u in us], k), feats(TASKS[task])["items"])
                r["units_per_s"] = round(float(np.mean([len(u["ids"]) / max(u["dur"].sum(), 1) * 50 for u in us])), 2)
                results[f"content|{key}|k{k}|{task}"] = r
                print(f"content {key} k={k} {task}: {r['acc']:.3f} ({r['units_per_s']} units/s)", flush=True)
                save()


def run_voice(feats: Feats, codes: Codes, key: str, win: int, variants, tasks, results: dict, save,
              content=("tiny_L3", 100)) -> None:
    pool = np.concatenate([window_stats(f, win)[0] for f in feats.clips("pool", key)])
    vq = VoiceQuantizer(pool)
    for task in tasks:
        ds = TASKS[task]
        items = feats(ds)["items"]
        us = codes.units(ds, *content)
        base = np.concatenate([bag([u["ids"] for u in us], content[1]), bag([u["db"] for u in us], 8),
                               bag([u["pb"] for u in us], 15)], 1)
        results[f"voice|{content[0]}|k{content[1]}|{task}|units+dur+pitch"] = evaluate(task, base, items)
        ws = [window_stats(f, win) for f in feats.clips(ds, key)]
        for variant in variants:
            per_clip = [vq.streams(st, variant) for st, _ in ws]
            cols = []
            for s in range(len(per_clip[0])):  # one bag per stream; each unit carries its window's code
                cols.append(bag([c[s][0][w[u["starts"]]] for c, (_, w), u in zip(per_clip, ws, us)], per_clip[0][s][1]))
            v = np.concatenate(cols, 1)
            for name, x in ((variant, v), (f"units+dur+pitch+{variant}", np.concatenate([base, v], 1))):
                r = results[f"voice|{key}|w{win}|{content[0]}|k{content[1]}|{task}|{name}"] = evaluate(task, x, items)
                print(f"voice {key} w{win} (units {content[0]} k={content[1]}) {task} {name}: {r['acc']:.3f}",
                      flush=True)
                save()


def run_pooled(feats: Feats, keys, tasks, results: dict, save) -> None:
    for key in keys:
        for task in tasks:
            x = np.stack([np.r_[c.mean(0), c.std(0)] for c in feats.clips(TASKS[task], key)])
            results[f"pooled|{key}|{task}"] = evaluate(task, x, feats(TASKS[task])["items"])
            print(f"pooled {key} {task}: {results[f'pooled|{key}|{task}']['acc']:.3f}", flush=True)
            save()


def med_ms(fn, runs: int = 30, warm: int = 3) -> float:
    """Median CPU time of this process (time.process_time): on a shared machine wall time measures the others."""
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        ts.append(time.process_time() - t)
    return statistics.median(ts) * 1000


def run_costs(paths: Paths, results: dict, lms=("4x128", "6x256", "8x256", "8x384")) -> None:
    """Encoder latency on a 1 s clip (+ nearest-centroid search for k), float16 bytes of the dense part, and the
    unit LM's training step (AdamW, batch 32 x 256 units) per size and vocabulary; 1 torch thread."""
    from app.lm import UnitLM, UnitLMConfig

    torch.set_num_threads(1)
    wav = torch.randn(16000) * 0.1
    for name, path, layers in (("tiny", paths.tiny, 3), ("base", paths.base, 3), ("base", paths.base, 4)):
        m = load_encoder(path, layers)
        with torch.inference_mode():
            t = med_ms(lambda: m(wav, n_layers=layers))
            feats = m(wav, n_layers=layers)[0]
            results[f"costs|encoder_ms_1s|{name}_L{layers}"] = round(t, 2)
            for k in (100, 250, 500):
                c = torch.randn(k, feats.shape[1])
                results[f"costs|quantize_ms_1s|{name}_L{layers}|k{k}"] = round(
                    med_ms(lambda: (c.pow(2).sum(1)[None] - 2 * feats @ c.T).argmin(1)), 3)
        results[f"costs|dense_bytes_fp16|{name}_L{layers}"] = 2 * sum(p.numel() for p in m.parameters())
        print({k: v for k, v in results.items() if k.startswith("costs|")}, flush=True)
    for spec in lms:
        n_layer, width = map(int, spec.split("x"))
        for vocab in (101, 251, 501):
            lm = UnitLM(UnitLMConfig(vocab_size=vocab, n_layer=n_layer, n_head=max(4, width // 64), n_embd=width))
            opt = torch.optim.AdamW(lm.parameters(), lr=1e-3)
            u, d, p = (torch.randint(0, v, (32, 257)) for v in (vocab, 8, 15))

            def step():
                out = lm(u[:, :-1], d[:, :-1], p[:, :-1])
                loss = sum(torch.nn.functional.cross_entropy(out[s].flatten(0, 1), t[:, 1:].flatten())
                           for s, t in (("units", u), ("duration", d), ("pitch", p)))
                opt.zero_grad()
                loss.backward()
                opt.step()
            results[f"costs|lm_step_ms|{spec}|V{vocab}"] = {"ms": round(med_ms(step, 5, 2)), "params": lm.num_params()}
            print(spec, vocab, results[f"costs|lm_step_ms|{spec}|V{vocab}"], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["pool", "encode", "content", "voice", "pooled", "costs"])
    ap.add_argument("datasets", nargs="*", default=["fsdd", "voxforge", "ravdess", "pool", "speech_commands"])
    ap.add_argument("--work", type=Path, default=WORK / "backbone_v2")
    ap.add_argument("--tiny", type=Path, default=WORK / "whisper_tiny_en")
    ap.add_argument("--base", type=Path, default=WORK / "whisper_base")
    ap.add_argument("--keys", nargs="*", default=["tiny_L3", "base_L3", "base_L4"])
    ap.add_argument("--ks", nargs="*", type=int, default=[100, 250, 500])
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--key", default="tiny_L1", help="voice: frames the window statistics are taken from")
    ap.add_argument("--win", type=int, default=50, help="voice: window length in frames (0: the whole clip)")
    ap.add_argument("--variants", nargs="*", default=["km64", "pca-km64", "sq8x8", "sq16x8"])
    ap.add_argument("--content-key", default="tiny_L3", help="voice: the units each voice code is attached to")
    ap.add_argument("--content-k", type=int, default=100)
    ap.add_argument("--kmeans-frames", type=int, default=120_000)
    ap.add_argument("--iters", type=int, default=25)
    ap.add_argument("--json", type=Path, default=None, help="results (default: WORK/backbone_v2/results.json)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    paths = Paths(a.work, a.tiny, a.base)
    out = a.json or a.work / "results.json"
    results = json.loads(out.read_text()) if out.exists() else {}

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))

    if a.what == "pool":
        return make_pool(paths)
    if a.what == "encode":
        return encode(paths, a.datasets)
    if a.what == "costs":
        run_costs(paths, results)
        return save()
    feats = Feats(paths)
    codes = Codes(feats, a.kmeans_frames, a.iters)
    if a.what == "content":
        run_content(feats, codes, a.keys, a.ks, a.tasks, results, save)
    elif a.what == "voice":
        run_voice(feats, codes, a.key, a.win, a.variants, a.tasks, results, save, (a.content_key, a.content_k))
    else:
        run_pooled(feats, a.keys, a.tasks, results, save)


if __name__ == "__main__":
    main()
