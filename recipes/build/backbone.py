"""Build the embedded default backbone: dense encoder -> k-means units -> unit LM, from the pretraining corpus.

    python -m recipes.build.backbone --corpus work/corpus --work work/backbone --out assets/backbone

Stages (each resumable; results go to --work, the final bundle to --out):
  1. kmeans:  dense features of a frame sample of the corpus -> k-means centroids (k-means++ + Lloyd, torch)
  2. units:   every corpus clip -> collapsed units, duration and pitch buckets (units.safetensors)
  3. lm:      next-unit (+ duration and pitch bucket) training of the unit LM, time-budgeted, checkpointed
  4. eval:    held-out perplexity against unigram and bigram baselines on the same units
  5. bundle:  config.json + encoder.safetensors + lm.safetensors + metrics.json in --out
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


from app.backbone import Backbone
from app.encoder.audio import prepare
from app.encoder.dense import build_dense
from app.encoder.units import N_DURATION_BUCKETS, N_PITCH_BUCKETS, SpeechEncoder
from app.lm import UnitLM, UnitLMConfig
from app.settings import ROOT
from recipes.common.paths import WORK


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_manifest(corpus: Path) -> list[dict]:
    with (corpus / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        p = Path(r["path"])
        r["path"] = str(p if p.is_absolute() else corpus / p)
    return rows


def dense_config(args) -> dict:
    """The backbone's dense section: Whisper cut after --layer blocks (no weights kept for the rest), or log-mel."""
    if args.dense == "whisper":
        full = json.loads((Path(args.whisper) / "config.json").read_text())["config"]
        return {"kind": "whisper", **full, "n_layer": args.layer, "post_ln": args.layer == full["n_layer"]}
    return {"kind": "logmel", "n_mels": 40, "context": 2}


def bundle_dtype(args) -> torch.dtype:
    """Whisper's weights ship as float16 (as imported); the bundle keeps them so."""
    return torch.float16 if args.dense == "whisper" else torch.float32


def load_dense(args) -> torch.nn.Module:
    """The dense model with its weights at the precision the bundle stores (so units match the shipped model)."""
    dense = build_dense(dense_config(args))
    if args.dense == "whisper":
        state = load_file(str(Path(args.whisper) / "encoder.safetensors"))
        own = dense.encoder.state_dict()
        dense.encoder.load_state_dict({k: state[k].to(bundle_dtype(args)).float() for k in own})
    return dense.eval()


def load_wav(path: str) -> torch.Tensor:
    return prepare(path, max_seconds=20.0).wav


def kmeans(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """k-means++ initialisation then Lloyd iterations; empty clusters are re-seeded from far points."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    centres = [x[torch.randint(n, (1,), generator=g)].squeeze(0)]
    d2 = (x - centres[0]).pow(2).sum(1)
    for _ in range(1, k):
        idx = torch.multinomial(d2 / d2.sum(), 1, generator=g)
        centres.append(x[idx].squeeze(0))
        d2 = torch.minimum(d2, (x - centres[-1]).pow(2).sum(1))
    c = torch.stack(centres)
    x_sq = x.pow(2).sum(1, keepdim=True)
    for it in range(iters):
        dist = x_sq - 2 * x @ c.T + c.pow(2).sum(1)[None]
        assign = dist.argmin(1)
        inertia = float(dist.gather(1, assign[:, None]).mean())
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        new = sums / counts.clamp_min(1)[:, None]
        empty = counts == 0
        if empty.any():
            far = dist.gather(1, assign[:, None]).squeeze(1).topk(int(empty.sum())).indices
            new[empty] = x[far]
        shift = float((new - c).norm(dim=1).max())
        c = new
        log(f"  k-means iter {it + 1}: inertia {inertia:.4f}, max shift {shift:.4f}")
        if shift < 1e-4:
            break
    return c


def stage_kmeans(args, rows, dense) -> torch.Tensor:
    path = args.work / "centroids.safetensors"
    if path.exists():
        return load_file(str(path))["centroids"]
    rng = np.random.default_rng(args.seed)
    pick = rng.permutation(len(rows))[: args.kmeans_clips]
    feats = []
    with torch.no_grad():
        for i, j in enumerate(pick):
            try:
                f = dense(load_wav(rows[j]["path"]))
            except Exception as exc:  # a bad corpus clip should not stop the recipe
                log(f"  skip {rows[j]['path']}: {exc}")
                continue
            if args.feature_norm == "l2":
                f = F.normalize(f, dim=-1)
            take = torch.from_numpy(rng.permutation(f.shape[0])[: args.frames_per_clip])
            feats.append(f[take])
            if i % 500 == 0:
                log(f"  features {i}/{len(pick)}")
    x = torch.cat(feats)
    log(f"k-means on {x.shape[0]} frames x {x.shape[1]} dims, k={args.units}")
    c = kmeans(x, args.units, seed=args.seed)
    save_file({"centroids": c.contiguous()}, str(path))
    return c


def stage_units(args, rows, encoder: SpeechEncoder) -> dict[str, torch.Tensor]:
    path = args.work / "units.safetensors"
    if path.exists():
        return load_file(str(path))
    ids, dur, pitch, offsets, heldout = [], [], [], [0], []
    rng = np.random.default_rng(args.seed + 1)
    if args.encode_hours:  # a seeded random subset of the corpus, when CPU time is short
        order = np.random.default_rng(args.seed + 2).permutation(len(rows))
        secs = np.cumsum([float(rows[i].get("seconds") or 3.0) for i in order])
        rows = [rows[i] for i in sorted(order[: int(np.searchsorted(secs, args.encode_hours * 3600)) + 1])]
        log(f"  encoding a random {args.encode_hours} h subset: {len(rows)} clips")
    start = time.time()
    audio_s = 0.0
    for i, r in enumerate(rows):
        try:
            wav = load_wav(r["path"])
        except Exception as exc:
            log(f"  skip {r['path']}: {exc}")
            continue
        audio_s += wav.numel() / 16000
        u = encoder(wav)
        ids.append(u.ids.to(torch.int16))
        dur.append(u.duration_buckets().to(torch.int8))
        pitch.append(u.pitch_buckets().to(torch.int8))
        offsets.append(offsets[-1] + len(u))
        heldout.append(bool(rng.random() < args.heldout))
        if i % 1000 == 0:
            el = time.time() - start
            log(f"  units {i}/{len(rows)}: {audio_s / 3600:.2f} h audio in {el:.0f} s "
                f"({audio_s / max(el, 1e-9):.0f}x real time)")
    out = {"ids": torch.cat(ids), "dur": torch.cat(dur), "pitch": torch.cat(pitch),
           "offsets": torch.tensor(offsets, dtype=torch.int64), "heldout": torch.tensor(heldout),
           "audio_seconds": torch.tensor([audio_s], dtype=torch.float64)}
    save_file(out, str(path))
    return out


def utterances(data: dict[str, torch.Tensor], heldout: bool) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    off = data["offsets"].tolist()
    return [
        (data["ids"][a:b].long(), data["dur"][a:b].long(), data["pitch"][a:b].long())
        for (a, b), h in zip(zip(off[:-1], off[1:]), data["heldout"].tolist())
        if h == heldout and b > a
    ]


def make_batch(utts, idx, eos: int, max_len: int, rng: np.random.Generator):
    """Utterances (+ end token) as a padded batch; long ones are cropped at a random start."""
    xs, ds, ps = [], [], []
    for i in idx:
        u, d, p = utts[i]
        u = torch.cat([u, torch.tensor([eos])])
        d = torch.cat([d, torch.zeros(1, dtype=torch.long)])
        p = torch.cat([p, torch.zeros(1, dtype=torch.long)])
        if len(u) > max_len + 1:
            s = int(rng.integers(0, len(u) - max_len))
            u, d, p = u[s : s + max_len + 1], d[s : s + max_len + 1], p[s : s + max_len + 1]
        xs.append(u), ds.append(d), ps.append(p)
    pad = lambda ts, v: torch.nn.utils.rnn.pad_sequence(ts, batch_first=True, padding_value=v)  # noqa: E731
    return pad(xs, -100), pad(ds, -100), pad(ps, -100)


def lm_loss(lm: UnitLM, u, d, p, prosody_weight: float = 0.5):
    inp = (u[:, :-1].clamp_min(0), d[:, :-1].clamp_min(0), p[:, :-1].clamp_min(0))
    out = lm(*inp)
    unit = F.cross_entropy(out["units"].flatten(0, 1), u[:, 1:].flatten(), ignore_index=-100)
    loss = unit
    if "duration" in out:
        loss = loss + prosody_weight * F.cross_entropy(out["duration"].flatten(0, 1), d[:, 1:].flatten(),
                                                       ignore_index=-100)
    if "pitch" in out:
        loss = loss + prosody_weight * F.cross_entropy(out["pitch"].flatten(0, 1), p[:, 1:].flatten(),
                                                       ignore_index=-100)
    return loss, unit


def stage_lm(args, data, lm_cfg: UnitLMConfig) -> UnitLM:
    ckpt = args.work / "lm.safetensors"
    state_path = args.work / "lm_state.json"
    lm = UnitLM(lm_cfg)
    state = {"step": 0, "seconds": 0.0, "log": []}
    if ckpt.exists():
        lm.load_state_dict(load_file(str(ckpt)))
        state = json.loads(state_path.read_text())
        if state.get("done"):
            return lm
    train, val = utterances(data, False), utterances(data, True)
    log(f"LM: {lm.num_params():,} params; {len(train)} train / {len(val)} held-out utterances")
    opt = torch.optim.AdamW(lm.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    rng = np.random.default_rng(args.seed + state["step"])
    total_steps = args.steps
    t0 = time.time() - state["seconds"]
    last_save = time.time()
    lm.train()
    step = state["step"]
    while step < total_steps and time.time() - t0 < args.lm_minutes * 60:
        lr = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0)))
        for g in opt.param_groups:
            g["lr"] = max(lr, args.lr * 0.02)
        u, d, p = make_batch(train, rng.integers(0, len(train), args.batch_size), lm_cfg.eos, args.max_len, rng)
        loss, unit = lm_loss(lm, u, d, p)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            log(f"  step {step}/{total_steps} loss {float(loss):.3f} unit CE {float(unit):.3f} lr {lr:.2e}")
            state["log"].append({"step": step, "loss": float(loss), "unit_ce": float(unit),
                                 "seconds": time.time() - t0})
        if time.time() - last_save > 120:
            _save_lm(lm, ckpt, state_path, state, step, t0)
            last_save = time.time()
    state["done"] = True
    _save_lm(lm, ckpt, state_path, state, step, t0)
    lm.eval()
    return lm


def _save_lm(lm, ckpt, state_path, state, step, t0) -> None:
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(ckpt))
    state.update(step=step, seconds=time.time() - t0)
    state_path.write_text(json.dumps(state))


@torch.no_grad()
def stage_eval(args, data, lm: UnitLM) -> dict:
    """Held-out unit perplexity of the LM against add-one unigram and bigram models fitted on training units."""
    lm.eval()
    V = lm.config.vocab_size
    train, val = utterances(data, False), utterances(data, True)
    uni = torch.ones(V)
    bi = torch.ones(V, V)
    for u, _, _ in train:
        seq = torch.cat([u, torch.tensor([lm.config.eos])])
        uni += torch.bincount(seq, minlength=V)
        bi.view(-1).index_add_(0, seq[:-1] * V + seq[1:], torch.ones(len(seq) - 1))
    log_uni = (uni / uni.sum()).log()
    log_bi = (bi / bi.sum(1, keepdim=True)).log()
    nll = {"lm": 0.0, "unigram": 0.0, "bigram": 0.0}
    n = 0
    rng = np.random.default_rng(0)
    for i in range(0, len(val), 32):
        u, d, p = make_batch(val, range(i, min(i + 32, len(val))), lm.config.eos, lm.config.block_size - 1, rng)
        _, ce = lm_loss(lm, u, d, p)
        tgt = u[:, 1:]
        mask = tgt != -100
        k = int(mask.sum())
        nll["lm"] += float(ce) * k
        nll["unigram"] += float(-log_uni[tgt[mask]].sum())
        prev = u[:, :-1][mask]
        nll["bigram"] += float(-log_bi[prev, tgt[mask]].sum())
        n += k
    ppl = {k: math.exp(v / n) for k, v in nll.items()}
    out = {"heldout_tokens": n, "perplexity": ppl, "lm_over_unigram": ppl["lm"] / ppl["unigram"],
           "lm_over_bigram": ppl["lm"] / ppl["bigram"],
           "note": "perplexity of the next unit, first unit of each utterance excluded, end token included"}
    log(f"perplexity: {json.dumps(out)}")
    return out


def unit_stats(data) -> dict:
    off = data["offsets"]
    lengths = (off[1:] - off[:-1]).float()
    secs = float(data["audio_seconds"][0])
    counts = torch.bincount(data["ids"].long())
    p = counts.float() / counts.sum()
    return {"utterances": int(lengths.numel()), "units": int(off[-1]), "audio_hours": round(secs / 3600, 2),
            "units_per_second": round(float(off[-1]) / secs, 2),
            "unit_entropy_bits": round(float(-(p[p > 0] * p[p > 0].log2()).sum()), 3),
            "units_used": int((counts > 0).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=WORK / "corpus")
    ap.add_argument("--work", type=Path, default=WORK / "backbone")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "backbone")
    ap.add_argument("--dense", choices=["whisper", "logmel"], default="whisper")
    ap.add_argument("--whisper", default=WORK / "whisper_tiny_en", help="output of recipes.build.import_whisper")
    ap.add_argument("--layer", type=int, default=4, help="Whisper blocks to run (features after this block)")
    ap.add_argument("--feature-norm", choices=["none", "l2"], default="none")
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--kmeans-clips", type=int, default=3000)
    ap.add_argument("--frames-per-clip", type=int, default=60)
    ap.add_argument("--exclude-datasets", nargs="*", default=["voxforge"],
                    help="corpus datasets kept out of the backbone (voxforge is language ID's real test set)")
    ap.add_argument("--encode-hours", type=float, default=0, help="encode only a random subset of this many hours")
    ap.add_argument("--heldout", type=float, default=0.03, help="fraction of utterances held out for perplexity")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--block-size", type=int, default=512)
    ap.add_argument("--max-len", type=int, default=256, help="training crop length in units")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--lm-minutes", type=float, default=40.0, help="wall-clock budget for LM training")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N corpus clips (quick runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--id", default=None)
    ap.add_argument("--stop-after", choices=["kmeans"], default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    rows = read_manifest(args.corpus)
    excluded = [r for r in rows if r.get("dataset") in args.exclude_datasets]
    rows = [r for r in rows if r.get("dataset") not in args.exclude_datasets]
    if excluded:
        log(f"excluded {len(excluded)} clips of {args.exclude_datasets} (evaluation-only data)")
    if args.limit:
        rows = rows[: args.limit]
    log(f"corpus: {len(rows)} clips")
    dense = load_dense(args)
    centroids = stage_kmeans(args, rows, dense)
    encoder = SpeechEncoder(dense, centroids, feature_norm=args.feature_norm).eval()
    # The encoder alone, so task units can be cached (train_prompts.py --encode-only) while the LM trains.
    save_file({f"dense.{k}": v.contiguous() for k, v in dense.state_dict().items()},
              str(args.work / "dense.safetensors"))
    quantizer = {"n_units": args.units, "feature_norm": args.feature_norm}
    (args.work / "config-encoder.json").write_text(json.dumps({"dense": dense_config(args), "quantizer": quantizer},
                                                              indent=2))
    if args.stop_after == "kmeans":
        log("stopping after k-means, as asked")
        return
    data = stage_units(args, rows, encoder)
    stats = unit_stats(data)
    log(f"units: {json.dumps(stats)}")
    lm_cfg = UnitLMConfig(vocab_size=args.units + 1, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                          block_size=args.block_size, n_duration=N_DURATION_BUCKETS, n_pitch=N_PITCH_BUCKETS)
    lm = stage_lm(args, data, lm_cfg)
    ppl = stage_eval(args, data, lm)
    layer = f"-L{args.layer}" if args.dense == "whisper" else ""
    name = args.id or f"sp-{args.dense}{layer}-km{args.units}-ulm{args.n_layer}x{args.n_embd}"
    config = {"id": name, "sample_rate": 16000, "dense": dense_config(args),
              "quantizer": {"n_units": args.units, "feature_norm": args.feature_norm}, "lm": lm_cfg.to_dict()}
    bb = Backbone.build(config, centroids)
    bb.encoder.dense.load_state_dict(dense.state_dict())
    bb.lm.load_state_dict(lm.state_dict())
    bb.save(args.out, dense_dtype=bundle_dtype(args))
    lm_state = json.loads((args.work / "lm_state.json").read_text())
    metrics = {"id": name, "fingerprint": bb.fingerprint, "units": stats, "perplexity": ppl,
               "lm_training": {"steps": lm_state["step"], "seconds": round(lm_state["seconds"]),
                               "batch_size": args.batch_size, "max_len": args.max_len, "lr": args.lr,
                               "threads": torch.get_num_threads()},
               "recipe_seconds": round(time.time() - t_start), "args": {k: str(v) for k, v in vars(args).items()}}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log(f"saved {args.out} ({bb.bytes_on_disk() / 1e6:.1f} MB), fingerprint {bb.fingerprint}")


if __name__ == "__main__":
    main()
