"""A small HuBERT-style self-supervised speech encoder trained from scratch on our corpus (masked prediction of
k-means classes of log-mel frames; optionally a second iteration on a middle layer).

    python -m recipes.experiments.ssl_encoder features | targets | train --minutes 30 | probe --ckpt work/ssl/it1

Everything is written under --root (default $SPEECHPROMPT_WORK/ssl), nothing in git, no pickle.
Model and full usage: docs/RECIPES.md#ssl_encoder. Results: docs/ENCODER_COMPARISON.md, section 6.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from app.encoder.whisper import log_mel_spectrogram, mel_filters
from recipes.common.paths import DATA_ROOT, WORK

ROOT = WORK / "ssl"
MANIFEST = WORK / "corpus" / "manifest.csv"
SR = 16000


# ----------------------------------------------------------------------------- front end

def normalise(mel: torch.Tensor) -> torch.Tensor:
    """Per-utterance normalisation of a [n_mels, n] log-mel: subtract each bin's mean over
    time, divide by one std over the whole utterance. (A single std, not one per bin, so
    near-empty bins -- e.g. above 4 kHz in 8 kHz recordings -- are not blown up.)"""
    x = mel - mel.mean(dim=-1, keepdim=True)
    return x / (x.std() + 1e-5)


def front_end(wav: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """16 kHz waveform [T] -> normalised log-mel [n, n_mels] at 100 Hz (n = T // 160)."""
    wav = F.pad(wav, (0, max(0, 320 - wav.numel())))
    return normalise(log_mel_spectrogram(wav[None].float(), filters)[0]).T.contiguous()


def to_50hz(x: np.ndarray) -> np.ndarray:
    """[n, d] frames at 100 Hz -> [ceil(n/2), d] by averaging pairs (last frame repeated if odd),
    aligned with the model's stride-2 output."""
    if len(x) % 2:
        x = np.concatenate([x, x[-1:]])
    return x.reshape(-1, 2, x.shape[1]).mean(1)


# ----------------------------------------------------------------------------- model

@dataclass
class SSLConfig:
    n_mels: int = 80
    d_model: int = 192
    n_head: int = 4
    n_layer: int = 4
    ffn_mult: int = 4
    pos_kernel: int = 33  # depthwise conv positional embedding, odd
    n_targets: int = 100
    mask_prob: float = 0.08  # probability that a frame starts a masked span
    mask_span: int = 10


def span_mask(lengths: torch.Tensor, p: float, span: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """HuBERT span masking: every valid frame starts a masked span of ``span`` frames
    with probability ``p`` (spans may overlap; a span is cut at the utterance end).
    At least one frame is masked per utterance. Returns bool [B, max(lengths)]."""
    B, T = len(lengths), int(lengths.max())
    valid = torch.arange(T)[None] < lengths[:, None]
    starts = (torch.rand(B, T, generator=generator) < p) & valid
    empty = ~starts.any(1)
    if empty.any():  # force one start per empty row
        pos = (torch.rand(B, generator=generator) * lengths.float()).long()
        starts[empty, pos[empty]] = True
    mask = F.max_pool1d(F.pad(starts.float()[:, None], (span - 1, 0)), span, stride=1)[:, 0] > 0
    return mask & valid


class Block(nn.Module):
    """Pre-LN transformer block with a key padding mask."""

    def __init__(self, cfg: SSLConfig):
        super().__init__()
        d = cfg.d_model
        self.n_head = cfg.n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, cfg.ffn_mult * d), nn.Linear(cfg.ffn_mult * d, d)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in self.qkv(self.ln_1(x)).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fc2(F.gelu(self.fc1(self.ln_2(x))))


class SSLEncoder(nn.Module):
    """Normalised log-mel [B, n, n_mels] (100 Hz) -> hidden states at 50 Hz + logits over k-means targets."""

    def __init__(self, cfg: SSLConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SSLConfig()
        d = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.ln_feat = nn.LayerNorm(d)
        self.mask_emb = nn.Parameter(0.1 * torch.randn(d))
        self.pos_conv = nn.Conv1d(d, d, cfg.pos_kernel, padding=cfg.pos_kernel // 2, groups=16)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_post = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_targets)

    @staticmethod
    def out_lengths(mel_lengths: torch.Tensor) -> torch.Tensor:
        return (mel_lengths + 1) // 2

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                n_layers: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns (logits [B, T, n_targets] or None if n_layers < n_layer, hidden states
        [x after block 1, ..., block n]; the last one after ln_post if all blocks run)."""
        B, n, _ = mel.shape
        mel_lengths = mel_lengths if mel_lengths is not None else torch.full((B,), n)
        lengths = self.out_lengths(mel_lengths)
        # padding acts as the zeros of an unpadded run
        mel_valid = (torch.arange(n)[None] < mel_lengths[:, None])[:, None, :]
        x = F.gelu(self.conv1(mel.transpose(1, 2) * mel_valid)) * mel_valid
        x = self.ln_feat(F.gelu(self.conv2(x)).transpose(1, 2))  # [B, T, d]
        T = x.shape[1]
        valid = torch.arange(T)[None] < lengths[:, None]
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        x = x * valid[..., None]
        x = x + F.gelu(self.pos_conv(x.transpose(1, 2))).transpose(1, 2)
        attn_mask = None if bool(valid.all()) else valid[:, None, None, :]
        hidden = []
        k = self.cfg.n_layer if n_layers is None else n_layers
        for block in self.blocks[:k]:
            x = block(x, attn_mask)
            hidden.append(x)
        if k < self.cfg.n_layer:
            return None, hidden
        hidden[-1] = x = self.ln_post(x)
        return self.head(x), hidden

    def loss(self, mel: torch.Tensor, mel_lengths: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """HuBERT loss: cross-entropy on masked, non-padded frames only. targets [B, T] (-1 = padding)."""
        lengths = self.out_lengths(mel_lengths)
        mask = span_mask(lengths, self.cfg.mask_prob, self.cfg.mask_span, generator)
        logits, _ = self(mel, mel_lengths, mask)
        sel = mask & (targets >= 0)
        loss = F.cross_entropy(logits[sel], targets[sel])
        with torch.no_grad():
            acc = (logits[sel].argmax(-1) == targets[sel]).float().mean().item()
            unmasked = ~mask & (targets >= 0)
            acc_u = ((logits[unmasked].argmax(-1) == targets[unmasked]).float().mean().item() if unmasked.any()
                     else float("nan"))
        return loss, {"masked_frac": sel.sum().item() / max(1, int((targets >= 0).sum())), "acc_masked": acc,
                      "acc_unmasked": acc_u}


# ----------------------------------------------------------------------------- checkpoints (safetensors + JSON)

def save_checkpoint(out: Path, model: SSLEncoder, opt: torch.optim.Optimizer | None, state: dict) -> None:
    """Write model.safetensors, optim.safetensors (flattened AdamW state) and state.json; each via a temp file
    + rename."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors.tmp")
    (out / "model.safetensors.tmp").replace(out / "model.safetensors")
    if opt is not None:
        flat = {f"{i}.{k}": v.contiguous() for i, s in opt.state_dict()["state"].items()
                for k, v in s.items() if torch.is_tensor(v)}
        save_file(flat, out / "optim.safetensors.tmp")
        (out / "optim.safetensors.tmp").replace(out / "optim.safetensors")
    (out / "state.json.tmp").write_text(json.dumps({"config": asdict(model.cfg), **state}, indent=1))
    (out / "state.json.tmp").replace(out / "state.json")


def load_checkpoint(path: Path, opt_factory=None) -> tuple[SSLEncoder, torch.optim.Optimizer | None, dict]:
    """Inverse of save_checkpoint. ``opt_factory(model)`` builds the optimizer whose state is restored."""
    from safetensors.torch import load_file

    meta = json.loads((path / "state.json").read_text())
    model = SSLEncoder(SSLConfig(**meta.pop("config")))
    model.load_state_dict(load_file(path / "model.safetensors"))
    opt = None
    if opt_factory is not None:
        opt = opt_factory(model)
        if (path / "optim.safetensors").exists():
            flat = load_file(path / "optim.safetensors")
            sd = opt.state_dict()
            state: dict = {}
            for key, v in flat.items():
                i, name = key.split(".", 1)
                state.setdefault(int(i), {})[name] = v
            sd["state"] = state
            opt.load_state_dict(sd)
    return model, opt, meta


# ----------------------------------------------------------------------------- corpus features and targets

def corpus_rows(manifest: Path) -> list[dict]:
    """Manifest rows used for SSL training: every dataset except FSDD (the probe's data)."""
    import csv

    rows = list(csv.DictReader(manifest.open()))
    keep = [r for r in rows if r["dataset"] != "fsdd" and not r["speaker"].startswith("fsdd")
            and "/fsdd/" not in r["path"]]
    print(f"manifest: {len(rows)} rows, {len(rows) - len(keep)} FSDD rows excluded, {len(keep)} kept")
    return keep


def cmd_features(args) -> None:
    """Normalised log-mel (100 Hz) of every kept clip -> feats.npy [N, 80] float16 + index.json (offsets, lengths)."""
    import soundfile as sf
    import torchaudio.functional as AF

    rows = corpus_rows(args.manifest)
    filters = mel_filters(80)
    chunks, meta, t0 = [], [], time.time()
    with torch.inference_mode():
        for i, r in enumerate(rows):
            path = Path(r["path"]) if r["path"].startswith("/") else args.manifest.parent / r["path"]
            wav, sr = sf.read(path, dtype="float32", always_2d=True)
            wav = torch.from_numpy(wav.mean(1))
            if sr != SR:
                wav = AF.resample(wav, sr, SR)
            m = front_end(wav, filters)
            if len(m) < 20:  # < 0.2 s
                continue
            chunks.append(m.numpy().astype(np.float16))
            meta.append({"dataset": r["dataset"], "speaker": r["speaker"]})
            if i % 2000 == 0:
                print(f"  {i}/{len(rows)} clips, {time.time() - t0:.0f} s", flush=True)
    lengths = np.array([len(c) for c in chunks])
    np.save(args.root / "feats.npy", np.concatenate(chunks))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    (args.root / "index.json").write_text(json.dumps({"offsets": offsets.tolist(), "clips": meta}))
    print(f"{len(chunks)} clips, {lengths.sum() / 100 / 3600:.2f} h, {time.time() - t0:.0f} s")


def load_corpus(root: Path) -> tuple[np.ndarray, np.ndarray]:
    feats = np.load(root / "feats.npy", mmap_mode="r")
    return feats, np.array(json.loads((root / "index.json").read_text())["offsets"])


def cmd_targets(args) -> None:
    """k-means (MiniBatchKMeans, --clusters) on 50 Hz frames -> targets_<name>.npy (int16, one per 50 Hz frame).
    Frames: pair-averaged normalised log-mel (iteration 1) or layer --layer of --from-ckpt (iteration 2)."""
    from sklearn.cluster import MiniBatchKMeans

    feats, offsets = load_corpus(args.root)
    model = None
    if args.from_ckpt:
        model, _, _ = load_checkpoint(args.from_ckpt)
        model.eval()

    def frames(i: int) -> np.ndarray:
        mel = np.asarray(feats[offsets[i]:offsets[i + 1]], dtype=np.float32)
        if model is None:
            return to_50hz(mel)
        with torch.inference_mode():
            out = []
            for s in range(0, len(mel), 3000):  # <= 30 s windows
                _, h = model(torch.from_numpy(mel[s:s + 3000])[None], n_layers=args.layer)
                out.append(h[-1][0].numpy())
            return np.concatenate(out)

    rng = np.random.default_rng(0)
    n = len(offsets) - 1
    t0 = time.time()
    fit_clips = rng.permutation(n)[: args.fit_clips]
    X = np.concatenate([frames(i) for i in fit_clips])
    print(f"k-means fit on {len(X)} frames from {len(fit_clips)} clips ({time.time() - t0:.0f} s)", flush=True)
    mu, sd = X.mean(0), X.std(0) + 1e-5
    km = MiniBatchKMeans(n_clusters=args.clusters, batch_size=4096, n_init=3, random_state=0).fit((X - mu) / sd)
    targets = []
    for i in range(n):
        targets.append(km.predict((frames(i) - mu) / sd).astype(np.int16))
        if i % 3000 == 0:
            print(f"  labelled {i}/{n} clips ({time.time() - t0:.0f} s)", flush=True)
    t = np.concatenate(targets)
    np.save(args.root / f"targets_{args.name}.npy", t)
    np.save(args.root / f"centroids_{args.name}.npy", km.cluster_centers_.astype(np.float32))
    counts = np.bincount(t, minlength=args.clusters)
    print(f"{len(t)} target frames, clusters used {int((counts > 0).sum())}, "
          f"entropy {-(counts / counts.sum() * np.log2(np.maximum(counts, 1) / counts.sum())).sum():.2f} bits, "
          f"{time.time() - t0:.0f} s")


# ----------------------------------------------------------------------------- training

def batches(offsets: np.ndarray, rng: np.random.Generator, max_mel: int, batch_mel: int):
    """Endless batches of (clip index, crop start) with similar lengths; crop starts are even (50 Hz aligned)."""
    lengths = np.diff(offsets)
    while True:
        order = rng.permutation(len(lengths))
        for pool in np.array_split(order, max(1, len(order) // 2000)):
            crops = []
            for i in pool:
                L = lengths[i]
                start = 2 * rng.integers(0, (L - max_mel) // 2 + 1) if L > max_mel else 0
                crops.append((int(i), int(start), int(min(L, max_mel))))
            crops.sort(key=lambda c: c[2])
            groups, cur = [], []
            for c in crops:
                if cur and (len(cur) + 1) * c[2] > batch_mel:
                    groups.append(cur)
                    cur = []
                cur.append(c)
            groups.append(cur)
            for j in rng.permutation(len(groups)):
                yield groups[j]


def collate(feats: np.ndarray, offsets: np.ndarray, targets: np.ndarray, t_offsets: np.ndarray, crops):
    n = max(c[2] for c in crops)
    mel = torch.zeros(len(crops), n, feats.shape[1])
    tgt = torch.full((len(crops), (n + 1) // 2), -1, dtype=torch.long)
    for b, (i, s, L) in enumerate(crops):
        mel[b, :L] = torch.from_numpy(np.asarray(feats[offsets[i] + s: offsets[i] + s + L], dtype=np.float32))
        t = targets[t_offsets[i] + s // 2: t_offsets[i] + s // 2 + (L + 1) // 2]
        tgt[b, :len(t)] = torch.from_numpy(t.astype(np.int64))
    return mel, torch.tensor([c[2] for c in crops]), tgt


def lr_at(step: int, peak: float, warmup: int, total: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def make_opt(model: nn.Module, lr: float = 5e-4) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)


def cmd_train(args) -> None:
    feats, offsets = load_corpus(args.root)
    feats = np.ascontiguousarray(feats)  # ~1 GB float16 in RAM
    targets = np.load(args.root / f"targets_{args.targets}.npy")
    t_offsets = np.concatenate([[0], np.cumsum((np.diff(offsets) + 1) // 2)])
    assert t_offsets[-1] == len(targets), "targets do not match feats.npy"
    n_targets = int(targets.max()) + 1
    out = args.out
    if (out / "state.json").exists():
        model, opt, state = load_checkpoint(out, lambda m: make_opt(m, args.lr))
        print(f"resumed from {out} at step {state['step']}")
    else:
        torch.manual_seed(0)
        model = SSLEncoder(SSLConfig(d_model=args.d_model, n_layer=args.layers, n_head=args.heads, n_targets=n_targets))
        opt = make_opt(model, args.lr)
        state = {"step": 0, "seconds": 0.0, "targets": args.targets, "steps_planned": args.steps,
                 "hours_of_audio": float((offsets[-1]) / 100 / 3600), "clips": int(len(offsets) - 1)}
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f} M parameters, {state['clips']} clips, {state['hours_of_audio']:.2f} h", flush=True)
    step = state["step"]
    rng = np.random.default_rng(1000 + step)  # a resumed run continues with fresh (not repeated) batches
    gen = torch.Generator().manual_seed(2000 + step)
    it = batches(offsets, rng, args.max_mel, args.batch_mel)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("a")
    t_start, t_last, seen, acc = time.time(), time.time(), 0, []
    model.train()
    while step < args.steps and time.time() - t_start < args.minutes * 60:
        mel, lengths, tgt = collate(feats, offsets, targets, t_offsets, next(it))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.lr, args.warmup, args.steps)
        loss, info = model.loss(mel, lengths, tgt, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(nn.utils.clip_grad_norm_(model.parameters(), 5.0))
        opt.step()
        step += 1
        seen += int(lengths.sum())
        acc.append((loss.item(), info["acc_masked"], info["acc_unmasked"], gnorm))
        if step % args.log_every == 0 or step == args.steps:
            now = time.time()
            state["seconds"] += now - t_last
            t_last = now
            m = np.nanmean(np.array(acc), axis=0)
            rec = {"step": step, "loss": round(m[0], 4), "acc_masked": round(m[1], 4), "acc_unmasked": round(m[2], 4),
                   "grad_norm": round(m[3], 3), "lr": round(lr_at(step, args.lr, args.warmup, args.steps), 7),
                   "audio_h_seen": round(seen / 100 / 3600, 3), "train_min": round(state["seconds"] / 60, 2)}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            acc = []
        if step % args.ckpt_every == 0:
            state["step"] = step
            save_checkpoint(out, model, opt, state)
    state["seconds"] += time.time() - t_last
    state["step"] = step
    state["audio_h_seen"] = state.get("audio_h_seen", 0.0) + seen / 100 / 3600
    save_checkpoint(out, model, opt, state)
    print(f"stopped at step {step}/{args.steps}, {state['seconds'] / 60:.1f} min of training in total")


# ----------------------------------------------------------------------------- probe

def cmd_probe(args) -> None:
    """FSDD leave-one-speaker-out probe of each layer (recipes.common.fsdd_probe)."""
    from recipes.common.fsdd_probe import SPEAKERS, evaluate, load_fsdd

    model, _, state = load_checkpoint(args.ckpt)
    model.eval()
    items = load_fsdd(args.data)
    if args.limit:
        items = items[:: args.limit]
    y = np.array([d for _, d, _ in items])
    spk = np.array([s for _, _, s in items])
    filters = mel_filters(80)
    layers = [int(k) for k in args.layers.split(",")]
    feats: dict[str, list[np.ndarray]] = {f"ssl_L{k}": [] for k in layers}
    t0 = time.time()
    with torch.inference_mode():
        for wav, _, _ in items:
            mel = front_end(wav, filters)
            _, hidden = model(mel[None])
            for k in layers:
                feats[f"ssl_L{k}"].append(hidden[k - 1][0].numpy().astype(np.float32))
    print(f"{len(items)} clips encoded in {time.time() - t0:.1f} s ({args.ckpt}, step {state['step']})", flush=True)
    results = {}
    if args.json and args.json.exists():
        results = json.loads(args.json.read_text()).get("results", {})
    for name, frames in feats.items():
        if name in results:
            continue
        t1 = time.time()
        results[name] = r = evaluate(frames, y, spk, args.clusters, args.seeds)
        print(f"{name:10s} units acc {r['units']['mean']:.3f}  dense acc {r['dense']['mean']:.3f}  "
              f"units/clip {r['units_per_clip']['mean']:.1f}  ({time.time() - t1:.0f} s)", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"ckpt": str(args.ckpt), "step": state["step"], "seeds": args.seeds,
                                             "limit": args.limit, "results": results}, indent=1))
    cols = list(SPEAKERS) + ["mean"]
    for key in ("units", "dense", "units_per_clip", "clusters_used"):
        print(f"\n{key}\n| features | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for name, r in results.items():
            fmt = "{:.3f}" if key in ("units", "dense") else "{:.1f}"
            print(f"| {name} | " + " | ".join(fmt.format(r[key][c]) for c in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["features", "targets", "train", "probe"])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    # targets
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--fit-clips", type=int, default=3000, help="targets: clips whose frames fit k-means")
    ap.add_argument("--from-ckpt", type=Path, default=None, help="targets: cluster this model's layer (iteration 2)")
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--name", default="it1", help="targets: saved as targets_<name>.npy")
    # train
    ap.add_argument("--targets", default="it1")
    ap.add_argument("--out", type=Path, default=ROOT / "it1")
    ap.add_argument("--d-model", type=int, default=192)
    ap.add_argument("--layers", default="4", help="train: transformer layers; probe: comma list of layers")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2000, help="planned steps (sets the LR schedule)")
    ap.add_argument("--minutes", type=float, default=30.0, help="stop (and checkpoint) after this wall time")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--max-mel", type=int, default=400, help="crop length in 100 Hz frames")
    ap.add_argument("--batch-mel", type=int, default=6400, help="100 Hz frames per batch (incl. padding)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--ckpt-every", type=int, default=100)
    # probe
    ap.add_argument("--ckpt", type=Path, default=ROOT / "it1")
    ap.add_argument("--data", type=Path, default=DATA_ROOT / "fsdd" / "recordings")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # shared 2-core machine: one thread everywhere (torch, BLAS, OpenMP in sklearn)
    threadpool_limits(1)
    args.root.mkdir(parents=True, exist_ok=True)
    if args.cmd == "train":
        args.layers = int(args.layers)
    elif args.cmd == "probe" and args.layers == "4":
        args.layers = "1,2,3,4"
    {"features": cmd_features, "targets": cmd_targets, "train": cmd_train, "probe": cmd_probe}[args.cmd](args)


if __name__ == "__main__":
    main()
