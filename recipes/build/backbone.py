"""Build the embedded default backbone: dense encoder -> k-means units -> unit LM, from the pretraining corpus.

    python -m recipes.build.backbone --corpus work/corpus --work work/backbone --out assets/backbone

Stages (each resumable; results go to --work, the final bundle to --out):
  1. kmeans:  dense features of a frame sample of the corpus -> k-means centroids (k-means++ + Lloyd, torch); with
              --voice-streams, the same clips' window statistics of block --voice-layer -> the voice quantizer
  2. units:   every corpus clip -> collapsed units, duration and pitch buckets (+ voice codes) (units.safetensors)
  3. lm:      next-unit (+ duration, pitch bucket and voice code) training of the unit LM, time-budgeted,
              checkpointed; in one process, or data-parallel under torchrun (PyTorch DDP: gloo on CPU, NCCL on GPU),
              same result
  4. eval:    held-out perplexity against unigram and bigram baselines on the same units
  5. bundle:  config.json + encoder.safetensors + lm.safetensors + metrics.json in --out

Several processes (stages 1-2 and 4-5 run on rank 0 only; the others wait, then train the LM with it):

    torchrun --standalone --nproc_per_node=2 -m recipes.build.backbone --corpus work/corpus ...   # CPU: gloo
    torchrun --standalone --nproc_per_node=8 -m recipes.build.backbone --device cuda ...           # GPUs: NCCL
    python -m recipes.build.backbone --work work/backbone --lm-only ...     # LM (+ eval) from work/units.safetensors

Every process draws the same global batch (same seed) and trains on its rows (rank r takes rows r, r+W, ...); the
loss is normalised by the global batch's token count, so W processes compute the gradient of one process with the
same --batch-size (tests/test_backbone_ddp.py checks the losses agree).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


from app.backbone import Backbone
from app.encoder.audio import prepare
from app.encoder.dense import build_dense
from app.encoder.units import N_DURATION_BUCKETS, N_PITCH_BUCKETS, SpeechEncoder, VoiceQuantizer, window_stats
from app.lm import UnitLM, UnitLMConfig
from app.settings import ROOT
from recipes.common.paths import WORK


def log(msg: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 speaks
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dist_setup(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (WORLD_SIZE > 1) joins the process group: NCCL with one GPU per
    process (``--device cuda``), gloo on CPU. One process: rank 0 of 1, nothing to join."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        # long timeout: the other ranks wait while rank 0 runs k-means and encodes the corpus
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=24))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dev
    return 0, 1, dev


def read_manifest(corpus: Path) -> list[dict]:
    with (corpus / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        p = Path(r["path"])
        r["path"] = str(p if p.is_absolute() else corpus / p)
    return rows


def whisper_config(folder: str | Path, layer: int) -> dict:
    """Whisper (an import_whisper folder) cut after ``layer`` blocks: no weights kept for the rest."""
    full = json.loads((Path(folder) / "config.json").read_text())["config"]
    return {"kind": "whisper", **full, "n_layer": layer, "post_ln": layer == full["n_layer"]}


def dense_config(args) -> dict:
    """The backbone's dense section: Whisper cut after --layer blocks, or log-mel."""
    if args.dense == "whisper":
        return whisper_config(args.whisper, args.layer)
    return {"kind": "logmel", "n_mels": 40, "context": 2}


def voice_dense_config(args) -> dict | None:
    """With --voice-whisper: the voice streams' own encoder, that Whisper cut after --voice-layer blocks."""
    return whisper_config(args.voice_whisper, args.voice_layer) if args.voice_whisper else None


def load_whisper(config: dict, folder: str | Path, dtype: torch.dtype) -> torch.nn.Module:
    """A cut Whisper with its imported weights, rounded to ``dtype``, the precision the bundle stores them in."""
    dense = build_dense(config)
    state = load_file(str(Path(folder) / "encoder.safetensors"))
    own = dense.encoder.state_dict()
    dense.encoder.load_state_dict({k: state[k].to(dtype).float() for k in own})
    return dense.eval()


def bundle_dtype(args) -> torch.dtype:
    """Whisper's weights ship as float16 (as imported); the bundle keeps them so."""
    return torch.float16 if args.dense == "whisper" else torch.float32


def load_dense(args) -> torch.nn.Module:
    """The dense model with its weights at the precision the bundle stores (so units match the shipped model)."""
    if args.dense == "whisper":
        return load_whisper(dense_config(args), args.whisper, bundle_dtype(args))
    return build_dense(dense_config(args)).eval()


def load_voice_dense(args) -> torch.nn.Module | None:
    if not args.voice_whisper:
        return None
    return load_whisper(voice_dense_config(args), args.voice_whisper, bundle_dtype(args))


def load_wav(path: str) -> torch.Tensor:
    return prepare(path, max_seconds=20.0).wav


def is_real(row: dict) -> bool:
    """A corpus clip recorded by a person (the manifest's ``source``), not synthesized."""
    return row.get("source") == "real"


def kmeans_pick(rows: list[dict], n: int, real_share: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``n`` corpus clips whose frames fit the codebook: uniformly at random (``real_share`` 0), or
    ``real_share`` of them real recordings (as many as there are) and the rest synthetic, each part at random."""
    if real_share <= 0:
        return rng.permutation(len(rows))[:n]
    real = np.flatnonzero([is_real(r) for r in rows])
    synth = np.flatnonzero([not is_real(r) for r in rows])
    n_real = min(len(real), int(round(n * real_share)))
    return np.concatenate([rng.permutation(real)[:n_real], rng.permutation(synth)[: n - n_real]])


def hours_subset(rows: list[dict], hours: float, real_share: float, rng: np.random.Generator) -> list[dict]:
    """A seeded subset of about ``hours`` of audio, in corpus order: at random (``real_share`` 0), or real recordings
    first, up to ``real_share`` of the hours (all of them if there are fewer), then synthetic clips at random."""
    def take(idx: np.ndarray, budget: float) -> list[int]:
        secs = np.cumsum([float(rows[i].get("seconds") or 3.0) for i in idx])
        return list(idx[: int(np.searchsorted(secs, budget)) + 1]) if budget > 0 else []

    if real_share <= 0:
        return [rows[i] for i in sorted(take(rng.permutation(len(rows)), hours * 3600))]
    real = rng.permutation(np.flatnonzero([is_real(r) for r in rows]))
    synth = rng.permutation(np.flatnonzero([not is_real(r) for r in rows]))
    chosen = take(real, real_share * hours * 3600)
    used = sum(float(rows[i].get("seconds") or 3.0) for i in chosen)
    return [rows[i] for i in sorted(chosen + take(synth, hours * 3600 - used))]


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


def stage_kmeans(args, rows, dense, voice_dense=None) -> tuple[torch.Tensor, VoiceQuantizer | None]:
    """k-means centroids (and, with --voice-streams, the voice quantizer) from a random sample of corpus clips."""
    path = args.work / "centroids.safetensors"
    if not path.exists():
        save_file(sample_and_fit(args, rows, dense, voice_dense), str(path))
    saved = load_file(str(path))
    voice = None
    if args.voice_streams:
        if "voice_stats" not in saved:
            raise SystemExit(f"error: {path} was made without --voice-streams: remove it or use another --work")
        stats = saved["voice_stats"]
        if args.voice_fit == "real":
            if "voice_real" not in saved:
                raise SystemExit(f"error: {path} does not mark its real windows: remove it or use another --work")
            stats = stats[saved["voice_real"].bool()]
            if stats.shape[0] < 2 * args.voice_streams:
                raise SystemExit(f"error: the k-means sample holds {stats.shape[0]} windows of real recordings, too "
                                 f"few for {args.voice_streams} voice directions: raise --real-share or --kmeans-clips")
            log(f"voice quantizer fit on the {stats.shape[0]} windows of real recordings in the sample")
        voice = VoiceQuantizer.fit(stats, args.voice_layer, args.voice_window, args.voice_streams, args.voice_buckets)
    return saved["centroids"], voice


def sample_and_fit(args, rows, dense, voice_dense=None) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(args.seed)
    pick = kmeans_pick(rows, args.kmeans_clips, args.real_share, rng)
    feats, stats, real = [], [], []
    with torch.no_grad():
        for i, j in enumerate(pick):
            try:
                wav = load_wav(rows[j]["path"])
                states = dense.hidden_states(wav) if args.voice_streams and voice_dense is None else [dense(wav)]
                low = states if voice_dense is None else voice_dense.hidden_states(wav)
            except Exception as exc:  # a bad corpus clip should not stop the recipe
                log(f"  skip {rows[j]['path']}: {exc}")
                continue
            f = states[-1]
            if args.feature_norm == "l2":
                f = F.normalize(f, dim=-1)
            take = torch.from_numpy(rng.permutation(f.shape[0])[: args.frames_per_clip])
            feats.append(f[take])
            if args.voice_streams:
                stats.append(window_stats(low[args.voice_layer], args.voice_window)[0])
                real.append(torch.full((stats[-1].shape[0],), is_real(rows[j]), dtype=torch.bool))
            if i % 500 == 0:
                log(f"  features {i}/{len(pick)}")
    x = torch.cat(feats)
    log(f"k-means on {x.shape[0]} frames x {x.shape[1]} dims, k={args.units}")
    out = {"centroids": kmeans(x, args.units, seed=args.seed).contiguous()}
    if stats:
        out["voice_stats"] = torch.cat(stats).contiguous()
        out["voice_real"] = torch.cat(real).to(torch.uint8).contiguous()  # which windows are of real recordings
        log(f"voice quantizer: {out['voice_stats'].shape[0]} windows of block {args.voice_layer}")
    return out


def stage_units(args, rows, encoder: SpeechEncoder) -> dict[str, torch.Tensor]:
    path = args.work / "units.safetensors"
    if path.exists():
        return load_file(str(path))
    ids, dur, pitch, voice, offsets, heldout = [], [], [], [], [0], []
    rng = np.random.default_rng(args.seed + 1)
    if args.encode_hours:  # a seeded random subset of the corpus, when CPU time is short
        rows = hours_subset(rows, args.encode_hours, args.real_share, np.random.default_rng(args.seed + 2))
        log(f"  encoding a {args.encode_hours} h subset: {len(rows)} clips, "
            f"{sum(is_real(r) for r in rows)} of them real recordings")
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
        if u.voice is not None:
            voice.append(u.voice.to(torch.int8))
        offsets.append(offsets[-1] + len(u))
        heldout.append(bool(rng.random() < args.heldout))
        if i % 1000 == 0:
            el = time.time() - start
            log(f"  units {i}/{len(rows)}: {audio_s / 3600:.2f} h audio in {el:.0f} s "
                f"({audio_s / max(el, 1e-9):.0f}x real time)")
    out = {"ids": torch.cat(ids), "dur": torch.cat(dur), "pitch": torch.cat(pitch),
           "offsets": torch.tensor(offsets, dtype=torch.int64), "heldout": torch.tensor(heldout),
           "audio_seconds": torch.tensor([audio_s], dtype=torch.float64)}
    if voice:
        out["voice"] = torch.cat(voice)
    save_file(out, str(path))
    return out


Utterance = tuple[torch.Tensor, ...]  # ids, duration buckets, pitch buckets (N,) [, voice codes (N, S)]


def utterances(data: dict[str, torch.Tensor], heldout: bool) -> list[Utterance]:
    off = data["offsets"].tolist()
    streams = [data["ids"], data["dur"], data["pitch"]] + ([data["voice"]] if "voice" in data else [])
    return [
        tuple(t[a:b].long() for t in streams)
        for (a, b), h in zip(zip(off[:-1], off[1:]), data["heldout"].tolist())
        if h == heldout and b > a
    ]


def make_batch(utts: list[Utterance], idx, eos: int, max_len: int, rng: np.random.Generator):
    """Utterances (+ end token) as a padded batch (ids, dur, pitch [, voice]), padding -100; long ones are cropped
    at a random start."""
    cols: list[list[torch.Tensor]] = [[] for _ in utts[0]]
    for i in idx:
        u = utts[i]
        ends = [torch.tensor([eos])] + [torch.zeros((1, *t.shape[1:]), dtype=torch.long) for t in u[1:]]
        u = [torch.cat([t, e]) for t, e in zip(u, ends)]
        if len(u[0]) > max_len + 1:
            s = int(rng.integers(0, len(u[0]) - max_len))
            u = [t[s : s + max_len + 1] for t in u]
        for col, t in zip(cols, u):
            col.append(t)
    return tuple(torch.nn.utils.rnn.pad_sequence(col, batch_first=True, padding_value=-100) for col in cols)


def lm_loss(lm: UnitLM, u, d, p, v=None, prosody_weight: float = 0.5, voice_weight: float = 0.5,
            reduction: str = "mean"):
    """(loss, next-unit CE): next unit + prosody_weight x (duration + pitch bucket) + voice_weight x (mean over the
    voice streams) cross-entropy over the targets that are not padding; ``reduction="sum"`` sums over them (the
    streams share one padding mask)."""
    inp = [u[:, :-1].clamp_min(0), d[:, :-1].clamp_min(0), p[:, :-1].clamp_min(0)]
    out = lm(*inp, v[:, :-1].clamp_min(0) if v is not None else None)

    def ce(logits, target):
        return F.cross_entropy(logits.flatten(0, 1), target[:, 1:].flatten(), ignore_index=-100, reduction=reduction)

    unit = ce(out["units"], u)
    loss = unit
    if "duration" in out:
        loss = loss + prosody_weight * ce(out["duration"], d)
    if "pitch" in out:
        loss = loss + prosody_weight * ce(out["pitch"], p)
    if "voice" in out and v is not None:  # (B, T, S * nb) log-probs -> (B, T * S, nb) against (B, T * S)
        S = v.shape[-1]
        logp = out["voice"].unflatten(-1, (S, -1)).flatten(1, 2)
        tgt = v[:, 1:].flatten(1, 2)
        vce = F.nll_loss(logp.flatten(0, 1), tgt.flatten(), ignore_index=-100, reduction=reduction)
        loss = loss + voice_weight * (vce / S if reduction == "sum" else vce)  # per token: mean over streams
    return loss, unit


def local_rows(batch: tuple[torch.Tensor, ...], rank: int, world: int) -> tuple[torch.Tensor, ...]:
    """This rank's rows of a global batch (rows rank, rank + world, ...), without the columns that are padding on
    all of them (causal attention: trailing padding changes nothing before it)."""
    rows = tuple(t[rank::world] for t in batch)
    keep = int((rows[0] != -100).any(0).nonzero().max()) + 1
    return tuple(t[:, :keep] for t in rows)


def stage_lm(args, data, lm_cfg: UnitLMConfig, rank: int = 0, world: int = 1,
             device: torch.device = torch.device("cpu")) -> UnitLM:
    """Train the unit LM (resumable, time-budgeted). With world > 1 (torchrun) the model is wrapped in DDP: every
    rank draws the same global batch and trains on its rows; rank 0 alone logs and writes checkpoints."""
    ckpt = args.work / "lm.safetensors"
    state_path = args.work / "lm_state.json"
    lm = UnitLM(lm_cfg)
    state = {"step": 0, "seconds": 0.0, "log": []}
    if ckpt.exists():
        lm.load_state_dict(load_file(str(ckpt)))
        state = json.loads(state_path.read_text())
        if state.get("done"):
            return lm
    if args.batch_size < world:
        raise SystemExit(f"error: --batch-size {args.batch_size} is smaller than the {world} processes")
    train, val = utterances(data, False), utterances(data, True)
    log(f"LM: {lm.num_params():,} params; {len(train)} train / {len(val)} held-out utterances; "
        f"{world} process(es), {args.batch_size} utterances per step in all")
    lm.to(device)
    model = lm
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(lm, device_ids=[device] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(lm.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    rng = np.random.default_rng(args.seed + state["step"])  # the same on every rank: the same global batches
    total_steps = args.steps
    t0 = time.time() - state["seconds"]
    last_save = time.time()
    lm.train()
    step = state["step"]
    while step < total_steps and not _out_of_time(t0, args.lm_minutes, world, device):
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0)))
        for g in opt.param_groups:
            g["lr"] = max(lr, args.lr * 0.02)
        batch = make_batch(train, rng.integers(0, len(train), args.batch_size), lm_cfg.eos, args.max_len, rng)
        n_targets = int((batch[0][:, 1:] != -100).sum())  # of the global batch: every rank knows it
        loss_sum, unit_sum = lm_loss(model, *(t.to(device) for t in local_rows(batch, rank, world)), reduction="sum")
        opt.zero_grad(set_to_none=True)
        # DDP averages gradients over the ranks: x world / n_targets makes that the global batch's mean loss
        (loss_sum * (world / n_targets)).backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.log_every == 0:
            sums = torch.stack([loss_sum.detach(), unit_sum.detach()]) / n_targets
            if world > 1:
                dist.all_reduce(sums)
            loss, unit = sums.tolist()
            log(f"  step {step}/{total_steps} loss {loss:.3f} unit CE {unit:.3f} lr {lr:.2e}")
            state["log"].append({"step": step, "loss": loss, "unit_ce": unit, "seconds": time.time() - t0})
        if rank == 0 and time.time() - last_save > 120:
            _save_lm(lm, ckpt, state_path, state, step, t0, world)
            last_save = time.time()
    state["done"] = True
    if rank == 0:
        _save_lm(lm, ckpt, state_path, state, step, t0, world)
    lm.cpu().eval()
    return lm


def _out_of_time(t0: float, minutes: float, world: int, device: torch.device) -> bool:
    """Rank 0's clock decides for all, so every rank stops after the same step."""
    flag = torch.tensor([float(time.time() - t0 >= minutes * 60)], device=device)
    if world > 1:
        dist.broadcast(flag, 0)
    return bool(flag.item())


def _save_lm(lm, ckpt, state_path, state, step, t0, world: int = 1) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in lm.state_dict().items()}, str(ckpt))
    state.update(step=step, seconds=time.time() - t0, world_size=world)
    state_path.write_text(json.dumps(state))


@torch.no_grad()
def stage_eval(args, data, lm: UnitLM) -> dict:
    """Held-out unit perplexity of the LM against add-one unigram and bigram models fitted on training units."""
    lm.eval()
    V = lm.config.vocab_size
    train, val = utterances(data, False), utterances(data, True)
    uni = torch.ones(V)
    bi = torch.ones(V, V)
    for u, *_ in train:
        seq = torch.cat([u, torch.tensor([lm.config.eos])])
        uni += torch.bincount(seq, minlength=V)
        bi.view(-1).index_add_(0, seq[:-1] * V + seq[1:], torch.ones(len(seq) - 1))
    log_uni = (uni / uni.sum()).log()
    log_bi = (bi / bi.sum(1, keepdim=True)).log()
    nll = {"lm": 0.0, "unigram": 0.0, "bigram": 0.0}
    n = 0
    rng = np.random.default_rng(0)
    for i in range(0, len(val), 32):
        batch = make_batch(val, range(i, min(i + 32, len(val))), lm.config.eos, lm.config.block_size - 1, rng)
        u = batch[0]
        _, ce = lm_loss(lm, *batch)
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
    ap.add_argument("--voice-streams", type=int, default=0, help="voice streams (0: none; v2: 16)")
    ap.add_argument("--voice-buckets", type=int, default=8, help="codes per voice stream")
    ap.add_argument("--voice-layer", type=int, default=1, help="encoder block whose frames the voice is taken from")
    ap.add_argument("--voice-window", type=int, default=50, help="voice window, in frames (50 = 1 s)")
    ap.add_argument("--voice-fit", choices=["sample", "real"], default="sample",
                    help="fit the voice quantizer on the windows of every k-means sample clip, or of its real "
                         "recordings only (docs/BACKBONE_V2.md section 25)")
    ap.add_argument("--voice-whisper", default=None,
                    help="take the voice streams from this Whisper (an import_whisper folder, cut after "
                         "--voice-layer blocks) instead of the content encoder's block --voice-layer")
    ap.add_argument("--kmeans-clips", type=int, default=3000)
    ap.add_argument("--real-share", type=float, default=0.0,
                    help="share of real recordings in the k-means sample and the --encode-hours subset "
                         "(0: at random, as v2; v3: 0.5)")
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
    ap.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps")
    ap.add_argument("--log-every", type=int, default=50, help="log (and keep in lm_state.json) every N steps")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="LM training device; under torchrun, cuda means one GPU per process and NCCL")
    ap.add_argument("--lm-only", action="store_true",
                    help="train (and evaluate) the LM on --work/units.safetensors of an earlier run; no corpus")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--lm-minutes", type=float, default=40.0, help="wall-clock budget for LM training")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N corpus clips (quick runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--id", default=None)
    ap.add_argument("--stop-after", choices=["kmeans", "units"], default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    rank, world, device = dist_setup(args.device)
    try:
        run(args, rank, world, device)
        if dist.is_initialized():
            dist.barrier()  # ranks leave together, everything written
            # Leave without tearing gloo down: its teardown now and then aborted a rank ("terminate called without
            # an active exception") after a run that went well.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    finally:
        if dist.is_initialized():  # an error: tear down so the other ranks hear of it
            dist.destroy_process_group()


def lm_config(args) -> UnitLMConfig:
    return UnitLMConfig(vocab_size=args.units + 1, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                        block_size=args.block_size, n_duration=N_DURATION_BUCKETS, n_pitch=N_PITCH_BUCKETS,
                        n_voice=args.voice_streams, voice_buckets=args.voice_buckets)


def stages_kmeans_units(args):
    """Stages 1-2 (rank 0): corpus -> k-means centroids -> units. Returns (dense model, centroids, units)."""
    rows = read_manifest(args.corpus)
    excluded = [r for r in rows if r.get("dataset") in args.exclude_datasets]
    rows = [r for r in rows if r.get("dataset") not in args.exclude_datasets]
    if excluded:
        log(f"excluded {len(excluded)} clips of {args.exclude_datasets} (evaluation-only data)")
    if args.limit:
        rows = rows[: args.limit]
    log(f"corpus: {len(rows)} clips")
    dense, voice_dense = load_dense(args), load_voice_dense(args)
    if voice_dense is not None and not args.voice_streams:
        raise SystemExit("error: --voice-whisper needs --voice-streams")
    centroids, voice = stage_kmeans(args, rows, dense, voice_dense)
    encoder = SpeechEncoder(dense, centroids, feature_norm=args.feature_norm, voice=voice,
                            voice_dense=voice_dense).eval()
    # The encoder alone, so task units can be cached (train_prompts.py --encode-only) while the LM trains.
    enc_config = {"dense": dense_config(args), "quantizer": {"n_units": args.units, "feature_norm": args.feature_norm}}
    if voice is not None:
        enc_config["voice"] = voice_config(args, voice)
    save_encoder_parts(args.work, enc_config, encoder)
    data = None if args.stop_after == "kmeans" else stage_units(args, rows, encoder)
    return dense, centroids, voice, data, voice_dense


def save_encoder_parts(work: Path, enc_config: dict, encoder: SpeechEncoder) -> None:
    """config-encoder.json + dense.safetensors (+ voice.safetensors: the voice quantizer and, if it has one, its
    own encoder as ``dense.*``) in ``work``, beside stage 1's centroids.safetensors."""
    save_file({f"dense.{k}": v.contiguous() for k, v in encoder.dense.state_dict().items()},
              str(work / "dense.safetensors"))
    if encoder.voice is not None:
        state = encoder.voice.state()
        if encoder.voice_dense is not None:
            state.update({f"dense.{k}": v.contiguous() for k, v in encoder.voice_dense.state_dict().items()})
        save_file(state, str(work / "voice.safetensors"))
    (work / "config-encoder.json").write_text(json.dumps(enc_config, indent=2))


def load_encoder_parts(work: Path) -> tuple[dict, SpeechEncoder]:
    """The encoder that :func:`save_encoder_parts` and stage 1 left in ``work``, with its config."""
    config = json.loads((work / "config-encoder.json").read_text())
    dense = build_dense(config["dense"])
    dense.load_state_dict({k[len("dense."):]: v.float() for k, v in load_file(str(work / "dense.safetensors")).items()})
    centroids = load_file(str(work / "centroids.safetensors"))["centroids"]
    voice, voice_dense = None, None
    if "voice" in config:
        state = load_file(str(work / "voice.safetensors"))
        voice = VoiceQuantizer.from_state(state, config["voice"])
        if "dense" in config["voice"]:
            voice_dense = build_dense(config["voice"]["dense"])
            voice_dense.load_state_dict({k[len("dense."):]: v.float() for k, v in state.items()
                                         if k.startswith("dense.")})
    encoder = SpeechEncoder(dense, centroids, config["quantizer"]["feature_norm"], voice=voice,
                            voice_dense=voice_dense)
    return config, encoder.eval()


def voice_config(args, voice: VoiceQuantizer) -> dict:
    """The bundle's ``voice`` section: the quantizer's config, and its own encoder's (with --voice-whisper)."""
    vd = voice_dense_config(args)
    return {**voice.config(), **({"dense": vd} if vd else {})}


def run(args, rank: int, world: int, device: torch.device) -> None:
    """Stages 1-2 and 4-5 on rank 0; the LM (stage 3) on every rank."""
    t_start = time.time()
    if args.lm_only or rank != 0:
        go = [True]
        if world > 1 and not args.lm_only:  # wait for rank 0's stages 1-2 (or its decision to stop)
            dist.broadcast_object_list(go, 0)
        if not go[0]:
            return
        data = load_file(str(args.work / "units.safetensors"))
        lm = stage_lm(args, data, lm_config(args), rank, world, device)
        if rank == 0:
            (args.work / "lm_eval.json").write_text(json.dumps(stage_eval(args, data, lm), indent=2) + "\n")
        return
    ok = False
    try:
        dense, centroids, voice, data, voice_dense = stages_kmeans_units(args)
        ok = args.stop_after is None
    finally:  # the other ranks wait for this: go on to the LM, or stop (also when a stage failed here)
        if world > 1:
            dist.broadcast_object_list([ok], 0)
    if args.stop_after:
        log(f"stopping after {args.stop_after}, as asked")
        return
    stats = unit_stats(data)
    log(f"units: {json.dumps(stats)}")
    lm_cfg = lm_config(args)
    lm = stage_lm(args, data, lm_cfg, rank, world, device)
    ppl = stage_eval(args, data, lm)
    layer = f"-L{args.layer}" if args.dense == "whisper" else ""
    streams = f"-v{args.voice_streams}x{args.voice_buckets}" if args.voice_streams else ""
    name = args.id or f"sp-{args.dense}{layer}-km{args.units}{streams}-ulm{args.n_layer}x{args.n_embd}"
    config = {"id": name, "sample_rate": 16000, "dense": dense_config(args),
              "quantizer": {"n_units": args.units, "feature_norm": args.feature_norm}, "lm": lm_cfg.to_dict()}
    if voice is not None:
        config["voice"] = voice_config(args, voice)
    bb = Backbone.build(config, centroids, voice=voice)
    bb.encoder.dense.load_state_dict(dense.state_dict())
    if voice_dense is not None:
        bb.encoder.voice_dense.load_state_dict(voice_dense.state_dict())
    bb.lm.load_state_dict(lm.state_dict())
    bb.save(args.out, dense_dtype=bundle_dtype(args))
    lm_state = json.loads((args.work / "lm_state.json").read_text())
    metrics = {"id": name, "fingerprint": bb.fingerprint, "units": stats, "perplexity": ppl,
               "lm_training": {"steps": lm_state["step"], "seconds": round(lm_state["seconds"]),
                               "batch_size": args.batch_size, "max_len": args.max_len, "lr": args.lr,
                               "threads": torch.get_num_threads(), "processes": world},
               "recipe_seconds": round(time.time() - t_start), "args": {k: str(v) for k, v in vars(args).items()}}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log(f"saved {args.out} ({bb.bytes_on_disk() / 1e6:.1f} MB), fingerprint {bb.fingerprint}")


if __name__ == "__main__":
    main()
