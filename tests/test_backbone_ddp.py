"""The backbone recipe's LM training under torchrun (PyTorch DDP, gloo on CPU) matches one process.

A tiny corpus of 300 short random unit sequences; 2 CPU processes with a global batch of 8 against 1 process with
a batch of 8: the same losses step by step and the same weights at the end. ~20 s on one busy core.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
N_UNITS = 20
STEPS = 5


def tiny_units(path: Path, n: int = 300, seed: int = 0) -> None:
    """units.safetensors as stage 2 writes it: ids / duration / pitch buckets, offsets, held-out flags."""
    g = np.random.default_rng(seed)
    lens = g.integers(3, 40, n)
    total = int(lens.sum())
    save_file({"ids": torch.from_numpy(g.integers(0, N_UNITS, total)).to(torch.int16),
               "dur": torch.from_numpy(g.integers(0, 8, total)).to(torch.int8),
               "pitch": torch.from_numpy(g.integers(0, 15, total)).to(torch.int8),
               "offsets": torch.from_numpy(np.r_[0, np.cumsum(lens)]).to(torch.int64),
               "heldout": torch.from_numpy(g.random(n) < 0.05),
               "audio_seconds": torch.tensor([float(total) / 30], dtype=torch.float64)}, str(path))


def train(work: Path, processes: int) -> dict:
    work.mkdir()
    tiny_units(work / "units.safetensors")
    args = ["-m", "recipes.build.backbone", "--lm-only", "--work", str(work), "--units", str(N_UNITS),
            "--n-layer", "2", "--n-embd", "32", "--n-head", "2", "--block-size", "64", "--max-len", "48",
            "--batch-size", "8", "--steps", str(STEPS), "--warmup", "1", "--lr", "3e-3", "--log-every", "1",
            "--threads", "1"]
    if processes > 1:  # torchrun, with a free port of its own (--standalone)
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return json.loads((work / "lm_state.json").read_text())


def test_two_processes_match_one(tmp_path: Path) -> None:
    one = train(tmp_path / "one", 1)
    two = train(tmp_path / "two", 2)
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert one["step"] == two["step"] == STEPS
    losses1 = [r["loss"] for r in one["log"]]
    losses2 = [r["loss"] for r in two["log"]]
    assert len(losses1) == len(losses2) == STEPS
    assert losses1[-1] < losses1[0]  # it trains: the comparison is not between two frozen models
    np.testing.assert_allclose(losses2, losses1, atol=1e-4, rtol=0)
    np.testing.assert_allclose([r["unit_ce"] for r in two["log"]], [r["unit_ce"] for r in one["log"]], atol=1e-4)
    w1, w2 = load_file(str(tmp_path / "one" / "lm.safetensors")), load_file(str(tmp_path / "two" / "lm.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-4, rtol=0)
    # rank 0 alone evaluated and wrote the held-out perplexity
    assert json.loads((tmp_path / "two" / "lm_eval.json").read_text())["heldout_tokens"] > 0
