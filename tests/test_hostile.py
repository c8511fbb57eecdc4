"""Issue #16, a hostile visitor on loopback: each finding is a test here (the figures are in docs/RELIABILITY.md).

1. decompression bombs (memory measured on a launched app.py), 2. queue flooding with training requests,
3. malformed task.json / safetensors (a fuzz test), 4. upload budgets and the server's temporary folder,
5. CLI training guards, 6. the smaller ones (long warnings, tracebacks for refused paths, many channels, a
non-numeric prompt length).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import random
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from app.encoder.audio import AudioError, prepare
from app.engine import Engine
from app.perf.process import launched_server, vm_kb

from .ui_engine import add_malformed_prompts, save_engine, ui_engine, write_tone

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- 1. decompression bombs

def write_flac(path: Path, rate: int, channels: int, seconds: int = 31) -> Path:
    """Mostly silence (so it compresses to little), half a second of tone at the start."""
    with sf.SoundFile(path, "w", rate, channels, format="FLAC", subtype="PCM_16") as f:
        for i in range(seconds):
            block = np.zeros((rate, channels), np.float32)
            if i == 0:
                t = np.arange(rate // 2) / rate
                block[: rate // 2] = (0.3 * np.sin(2 * np.pi * 440 * t))[:, None]
            f.write(block)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bombs")
    return {"rate8": write_flac(d / "rate8.flac", 655_350, 8), "rate2": write_flac(d / "rate2.flac", 655_350, 2),
            "ok384": write_flac(d / "ok384.flac", 384_000, 8)}


def test_absurd_rates_and_channel_counts_are_refused_from_the_header(bombs, tmp_path):
    for name in ("rate8", "rate2"):
        with pytest.raises(AudioError, match=r"sample rate is 655,350 Hz; 4 kHz to 384 kHz"):
            prepare(bombs[name])
    many = tmp_path / "many.wav"
    sf.write(many, np.full((200, 1024), 0.1, np.float32), 16_000)
    with pytest.raises(AudioError, match="1,024 channels; at most 64"):
        prepare(many)


def test_an_accepted_high_rate_file_is_read_in_blocks(bombs):
    """384 kHz x 8 channels x 31 s: 381 MB if read at once; in blocks mixed to mono only its 47 MB mono copy."""
    tracemalloc.start()
    try:
        audio = prepare(bombs["ok384"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert audio.source_rate == 384_000 and any("only the first 30 s" in n for n in audio.notices)
    assert peak < 120 * 2**20, f"peak {peak / 2**20:.0f} MB"


def test_an_irregular_sample_rate_cannot_blow_up_the_resampler(tmp_path):
    """100,003 Hz does not reduce against 16 kHz: torchaudio's sinc kernel alone would be 6.4 GB."""
    odd = tmp_path / "odd.wav"
    t = np.arange(100_003 * 2) / 100_003
    sf.write(odd, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 100_003)
    tracemalloc.start()
    try:
        audio = prepare(odd, trim=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert abs(audio.seconds - 2.0) < 0.01 and peak < 60 * 2**20, peak


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 48000, 384000, 7999])
def test_streamed_resampling_equals_resampling_at_once(rate):
    import torch
    import torchaudio.functional as AF

    from app.encoder.audio import StreamResampler, resampling_rate

    x = np.random.default_rng(rate).standard_normal(rate * 3 + 17).astype(np.float32)
    r, i = StreamResampler(rate), 0
    for k in (1, 5000, 70_001, 3 * rate):
        r.push(x[i : i + k])
        i += k
    r.push(x[i:])
    ref = AF.resample(torch.from_numpy(x), resampling_rate(rate), 16_000).numpy()
    y = r.finish()
    assert y.shape == ref.shape and np.abs(y - ref).max() < 1e-4


def test_many_channels_are_mixed_along_the_channel_axis(tmp_path):
    """40 channels x 200 frames at 16 kHz is 12.5 ms (the old shape guess took the 40 channels as time)."""
    wav = tmp_path / "forty.wav"
    sf.write(wav, np.tile(np.sin(np.arange(200) / 3)[:, None], (1, 40)).astype(np.float32) * 0.5, 16_000)
    audio = prepare(wav, trim=False)
    assert any("Very short clip (12 ms)" in n for n in audio.notices), audio.notices


def test_a_refused_clip_keeps_nothing_alive(bombs):
    with pytest.raises(AudioError) as err:
        prepare(bombs["rate8"])
    assert err.value.__context__ is None and err.value.__cause__ is None
    frames, tb = [], err.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "prepare" and "_prepare" not in frames  # no decoding frame hangs on the error


def _classify(url: str, path: Path, task: str = "tones", timeout: float = 120) -> str:
    """Upload a file and call /classify over Gradio's REST API; returns the final SSE event name."""
    with httpx.Client(timeout=timeout) as c:
        with open(path, "rb") as fh:
            up = c.post(url + "gradio_api/upload", files={"files": (path.name, fh, "audio/flac")})
        if up.status_code != 200:
            return f"upload {up.status_code}"
        file = {"path": up.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": path.name}
        eid = c.post(url + "gradio_api/call/classify", json={"data": [file, task]}).json()["event_id"]
        text = c.get(url + f"gradio_api/call/classify/{eid}").text
    return "complete" if "event: complete" in text else "error"


def test_forty_concurrent_bombs_leave_the_server_memory_flat(tmp_path, bombs):
    """A launched app.py: its peak after normal calls, then 40 bomb uploads at once (refused) and a few accepted
    384 kHz ones; the peak may grow by at most 200 MB and the memory is given back."""
    backbone, prompts = save_engine(tmp_path)
    clip = write_tone(tmp_path / "ok.wav", "low", 1)
    with launched_server(backbone, prompts, env={"OMP_NUM_THREADS": "1"}) as srv:
        for _ in range(3):
            assert _classify(srv.url, clip) == "complete"
        normal = vm_kb(srv.pid, "VmHWM") / 1024
        files = [bombs["rate8"], bombs["rate2"]] * 19 + [bombs["ok384"]] * 2
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            results = list(pool.map(lambda p: _classify(srv.url, p), files))
        seconds = time.monotonic() - start
        peak = vm_kb(srv.pid, "VmHWM") / 1024
        time.sleep(2)
        after = vm_kb(srv.pid, "VmRSS") / 1024
        assert _classify(srv.url, clip) == "complete"
    print(f"\nbombs: normal peak {normal:.0f} MB, peak after 40 bombs {peak:.0f} MB, RSS 2 s later {after:.0f} MB, "
          f"{seconds:.1f} s")
    assert results.count("error") == 38 and results.count("complete") == 2, results
    assert peak <= normal + 200, (normal, peak)
    assert after <= normal + 200, (normal, after)


# ----------------------------------------------------------------------------- 2. queue flooding

@contextlib.contextmanager
def _app_with_a_slow_training(monkeypatch, hold_s: float):
    """The UI on the test engine, launched on loopback, whose training run only holds its slot (until the block ends
    or ``hold_s``); yields the URL and ``join(session)``, which queues a training request from that session."""
    from app.ui import build_ui, launch_options, train_view

    release = threading.Event()

    def slow_train(*args, **kwargs):
        release.wait(hold_s)
        yield from ()

    monkeypatch.setattr(train_view, "train", slow_train)
    demo = build_ui(ui_engine())
    train_fn = next(fn for fn in demo.fns.values() if fn.concurrency_id == "train")
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    url = f"http://127.0.0.1:{port}/"

    def join(session: str) -> httpx.Response:
        return httpx.post(url + "gradio_api/queue/join", timeout=10, json={
            "data": [None, "x", 5, "learnable", True], "fn_index": train_fn._id, "session_hash": session,
            "event_data": None, "trigger_id": None})

    try:
        yield url, join
    finally:
        release.set()
        demo.close()


def test_training_floods_cannot_take_classifications_places(monkeypatch, tmp_path):
    """One long training run, then 64 joins of the train event from invented sessions: at most 3 wait, the rest
    are refused at once with a message, and /classify keeps answering."""
    from gradio_client import Client, handle_file

    from app.ui.guards import TRAIN_WAITING

    with _app_with_a_slow_training(monkeypatch, 30) as (url, join):
        assert join("runner").status_code == 200
        time.sleep(1.0)  # it starts and holds the training slot
        answers = [join(f"fake-{i}") for i in range(64)]
        accepted = [r for r in answers if r.status_code == 200]
        refused = [r for r in answers if r.status_code == 400]
        assert len(accepted) == TRAIN_WAITING and len(refused) == 64 - TRAIN_WAITING
        assert "Training is busy" in refused[0].json()["detail"]
        client = Client(url, verbose=False, analytics_enabled=False)
        clip = write_tone(tmp_path / "c.wav", "high", 3)
        t0 = time.monotonic()
        for _ in range(3):
            assert client.predict(handle_file(str(clip)), "tones", api_name="/classify")["task"] == "tones"
        assert time.monotonic() - t0 < 30


def test_every_pool_has_its_own_places():
    from app.ui import build_ui
    from app.ui import QUEUE_SIZE

    demo = build_ui(ui_engine())
    assert demo._queue.max_size is None and demo._queue.pool_limits["train"] == 3
    pools = {fn.concurrency_id for fn in demo.fns.values()}
    assert {"inference", "train"} <= pools and QUEUE_SIZE == 64


def _free_port() -> int:
    from .ui_engine import free_port

    return free_port()


# ----------------------------------------------------------------------------- 3. malformed prompt files

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    backbone, prompts = save_engine(tmp_path_factory.mktemp("fuzz"))
    meta = json.loads((prompts / "tones" / "task.json").read_text(encoding="utf-8"))
    return prompts, meta


FIELDS = ["format_version", "id", "title", "description", "labels", "verbalizer", "prompt_length", "deep",
          "backbone", "trainable_params", "size_bytes", "training_data", "metrics", "date", "extra",
          "verbalizer.kind", "verbalizer.reads", "verbalizer.tokens", "labels.0", "backbone.fingerprint"]


def json_value(rng: random.Random, depth: int = 0):
    """A random JSON value: the odd types and sizes a hand-edited or hostile task.json may hold."""
    kinds = ["null", "bool", "int", "big", "float", "text", "long"] + (["list", "dict"] if depth < 2 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-3, 70)
    if kind == "big":
        return rng.choice([2**63, -(2**70), 10**30])
    if kind == "float":
        return rng.choice([0.5, -1.0, 1e308, 5.0, 1e-300])
    if kind == "text":
        return rng.choice(["", "2", "abc", "learnable", "units", "../x", "ü" * 3, "tones"])
    if kind == "long":
        return "x" * rng.choice([65, 5001, 200_000])
    if kind == "list":
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["a", "kind", "reads", "id", "fingerprint"]): json_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def _load_one(prompts: Path) -> Engine:
    engine = Engine(ui_engine().backbone)
    engine.load_prompts(prompts)
    return engine


def _mutate(meta: dict, field: str, value, drop: bool) -> dict:
    bad = json.loads(json.dumps(meta))
    key, _, sub = field.partition(".")
    if sub:
        target = bad[key]
        if isinstance(target, list):
            target[int(sub)] = value
        elif drop:
            target.pop(sub, None)
        else:
            target[sub] = value
    elif drop:
        bad.pop(key, None)
    else:
        bad[key] = value
    return bad


@pytest.mark.parametrize("seed", range(160))
def test_fuzzed_task_json_is_skipped_with_one_line(good, tmp_path, seed):
    """A generated matrix: every field (and sub-field) replaced by a random JSON value, or dropped."""
    prompts, meta = good
    rng = random.Random(seed)
    field = FIELDS[seed % len(FIELDS)]
    bad = _mutate(meta, field, json_value(rng), drop=rng.random() < 0.15)
    shutil.copytree(prompts / "tones", tmp_path / "tones")
    shutil.copytree(prompts / "tones-freq", tmp_path / "tones-freq")  # a good one next to it
    (tmp_path / "tones" / "task.json").write_text(json.dumps(bad), encoding="utf-8")
    engine = _load_one(tmp_path)
    assert "tones-freq" in engine.tasks, "the good prompt is still served"
    if "tones" not in engine.tasks:
        why = engine.skipped["tones"]
        assert "\n" not in why and len(why) <= 300 and not why.startswith("unexpected"), why


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize("seed", range(120))
def test_fuzzed_safetensors_headers_are_skipped_with_one_line(good, tmp_path, seed):
    """A generated matrix of safetensors headers: dtypes, shapes, offsets, extra entries, lying lengths."""
    prompts, _ = good
    rng = random.Random(1000 + seed)
    shape = [rng.choice([-3, 0, 1, 7, 128, 2**31, 2**40]) for _ in range(rng.randint(0, 4))]
    start = rng.choice([-5, 0, 3, 2**40])
    length = rng.choice([-5, 0, 4, 28, 2**40])
    header = {rng.choice(["separator", "input_prompt", "payload"]): {
        "dtype": rng.choice(["F32", "F16", "I64", "BOOL", "F64", "U8", "XX", ""]), "shape": shape,
        "data_offsets": [start, start + length]}}
    if rng.random() < 0.3:
        header["__metadata__"] = json_value(rng)
    data = rng.randbytes(rng.choice([0, 4, 28, 64]))
    raw = _safetensors(header, data)
    if rng.random() < 0.2:  # a header length that lies
        raw = struct.pack("<Q", rng.choice([0, 2**63, len(raw) * 2])) + raw[8:]
    shutil.copytree(prompts / "tones", tmp_path / "tones")
    shutil.copytree(prompts / "tones-freq", tmp_path / "tones-freq")
    (tmp_path / "tones" / "prompt.safetensors").write_bytes(raw)
    engine = _load_one(tmp_path)
    assert "tones-freq" in engine.tasks and "tones" not in engine.tasks
    why = engine.skipped["tones"]
    assert "\n" not in why and len(why) <= 300 and not why.startswith("unexpected"), why


def test_cli_tasks_lists_the_good_prompts_and_warns_in_one_line_each(tmp_path):
    backbone, prompts = save_engine(tmp_path)
    cases = add_malformed_prompts(prompts)
    p = subprocess.run([sys.executable, "-m", "app", "tasks", "--json", "--backbone", backbone, "--prompts", prompts],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    assert sorted(t["task"] for t in json.loads(p.stdout)) == sorted(ui_engine().tasks)
    lines = [x for x in p.stderr.splitlines() if x.startswith("warning: skipped prompt")]
    assert len(lines) == len(cases) and all(len(x) < 400 for x in p.stderr.splitlines())
    assert len(p.stderr) < 40_000  # the 60,000-label file used to print 1.18 MB


@pytest.mark.parametrize("changes", [{"title": 123}, {"metrics": []}, {"backbone": "abc"}, {"format_version": "2"}])
def test_pull_runs_the_loaders_checks(tmp_path, backbone_dir, changes):
    from app.backbone import Backbone
    from app.hub import HubError, install
    from app.prompt_files import save_prompt

    bb = Backbone.load(backbone_dir)
    prompt = ui_engine().prompts["tones"]
    snap = save_prompt(prompt, tmp_path / "snap", bb.id, bb.fingerprint)
    meta = json.loads((snap / "task.json").read_text(encoding="utf-8"))
    (snap / "task.json").write_text(json.dumps({**meta, **changes}), encoding="utf-8")
    with pytest.raises(HubError, match="Nothing was installed"):
        install(snap, "alice/tones", bb, tmp_path / "prompts")
    assert not (tmp_path / "prompts" / "tones").exists()


# ----------------------------------------------------------------------------- 4. uploads and temporary files

def test_upload_budget_per_client_and_in_total():
    from app.ui.guards import UploadBudget

    now = [0.0]
    budget = UploadBudget(None, per_client=10, total=25, disk=1000, folder=lambda: "/nonexistent",
                          clock=lambda: now[0])

    def scope(client: str, size: int | None) -> dict:
        headers = [] if size is None else [(b"content-length", str(size).encode())]
        return {"type": "http", "method": "POST", "path": "/gradio_api/upload", "client": (client, 1),
                "headers": headers}

    assert budget.check(scope("a", 6)) is None
    assert budget.check(scope("a", 5))[0] == 429  # 11 > 10 for one client
    assert budget.check(scope("b", 10)) is None and budget.check(scope("c", 9)) is None
    status, text = budget.check(scope("d", 7))  # 6 + 10 + 9 + 7 > 25 for everyone
    assert status == 429 and "from everyone" in text
    assert budget.check(scope("e", None))[0] == 411
    now[0] = 61.0  # a minute later the window is empty again
    assert budget.check(scope("a", 10)) is None
    full = UploadBudget(None, per_client=10**9, total=10**9, disk=5, folder=lambda: "/nonexistent")
    assert full.check(scope("a", 6))[0] == 507


def test_a_sessionless_flood_of_uploads_is_cut_off(monkeypatch, tmp_path):
    """Like the probe (40 x 19 MB from one client in 2.35 s), scaled down: 60 MB per minute per client."""
    import app.ui as ui

    monkeypatch.setattr(ui, "UPLOAD_MB_PER_CLIENT", 60)
    blob = tmp_path / "big.wav"
    blob.write_bytes(os.urandom(19 * 2**20))
    from .ui_engine import served_ui

    with served_ui() as url:
        codes = []
        with httpx.Client(timeout=60) as c:
            for _ in range(6):
                with open(blob, "rb") as fh:
                    codes.append(c.post(url + "gradio_api/upload", files={"files": ("big.wav", fh)}).status_code)
            refused = c.post(url + "gradio_api/upload", files={"files": ("s.wav", b"RIFF" * 2**20)})
    assert codes[:3] == [200, 200, 200] and set(codes[3:]) == {429}, codes
    assert refused.status_code == 429 and "per 60 s" in refused.text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_servers_temporary_folder_goes_when_it_stops(tmp_path, sig):
    backbone, prompts = save_engine(tmp_path)
    base = tmp_path / "tmp"
    base.mkdir()
    stale = base / "speechprompt-app" / "999999"  # a server that was killed: its folder is removed at start
    (stale / "gradio").mkdir(parents=True)
    (stale / "gradio" / "old.wav").write_bytes(b"x")
    clip = write_tone(tmp_path / "c.wav", "low", 2)
    with launched_server(backbone, prompts, env={"GRADIO_TEMP_DIR": str(base), "OMP_NUM_THREADS": "1"}) as srv:
        own = base / "speechprompt-app" / str(srv.pid)
        assert not stale.exists() and own.is_dir()
        assert _classify(srv.url, clip) == "complete"
        stored = list(own.rglob("*.wav"))
        assert stored, "uploads land in the server's own folder"
        srv.process.send_signal(sig)
        srv.process.wait(timeout=30)
    assert not own.exists()


# ----------------------------------------------------------------------------- 5. CLI training guards

def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"})


def test_cli_train_refuses_duplicates_and_classes_without_a_readable_clip(tmp_path, backbone_dir, labelled_dir):
    from app.data import DataError, list_labelled, require_every_class

    one = next((labelled_dir / "low").glob("*.wav"))
    dup = tmp_path / "dup.csv"
    dup.write_text("path,label\n" + f"{one},low\n" * 10_000 + f"{next((labelled_dir / 'high').glob('*.wav'))},high\n")
    with pytest.raises(DataError, match="9999 row.*repeat a file"):
        list_labelled(dup)
    conflict = tmp_path / "conflict.csv"
    conflict.write_text(f"{one},low\n{one},high\n")
    with pytest.raises(DataError, match="different labels"):
        list_labelled(conflict)
    with pytest.raises(DataError, match="class.*'b' have no readable clip"):
        require_every_class(["a", "b"], ["a", "a"], "set.csv")
    bad = tmp_path / "b.wav"
    bad.write_text("not audio")
    csv = tmp_path / "unreadable.csv"
    csv.write_text("".join(f"{p},a\n" for p in sorted((labelled_dir / "low").glob("*.wav"))) + f"{bad},b\n")
    p = _cli("train", "--task", "x", "--data", csv, "--out", tmp_path / "out", "--backbone", backbone_dir)
    assert p.returncode == 2 and "'b' have no readable clip" in p.stderr and not (tmp_path / "out").exists()
    p = _cli("train", "--task", "x", "--data", dup, "--out", tmp_path / "out", "--backbone", backbone_dir)
    assert p.returncode == 2 and "repeat a file" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_cli_train_has_a_time_cap(tmp_path, backbone_dir, labelled_dir):
    t0 = time.monotonic()
    p = _cli("train", "--task", "x", "--data", labelled_dir, "--out", tmp_path / "out", "--backbone", backbone_dir,
             "--epochs", "100000", "--max-seconds", "2", "--json")
    assert p.returncode == 0, p.stderr
    assert "stopped at the 2 s limit" in p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["train_seconds"] < 10
    assert time.monotonic() - t0 < 120
    p = _cli("train", "--task", "x", "--data", labelled_dir, "--out", tmp_path / "o2", "--backbone", backbone_dir,
             "--max-seconds", "-1")
    assert p.returncode == 2 and "time limit" in p.stderr


# ----------------------------------------------------------------------------- 6. smaller ones

def test_refused_paths_and_urls_get_one_line_not_a_traceback(capfd):
    from .ui_engine import served_ui

    with served_ui() as url:
        capfd.readouterr()
        for path in ["/etc/passwd", "http://127.0.0.1:1/x.wav", "file:///etc/passwd"]:
            r = httpx.post(url + "gradio_api/call/classify", timeout=30,
                           json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "tones"]})
            assert r.status_code == 400 and "Send audio as an upload" in r.json()["detail"]
        time.sleep(0.5)
        err = capfd.readouterr().err
    assert "Traceback" not in err


def test_a_non_numeric_prompt_length_gets_a_message():
    import gradio as gr

    from app.ui.session import Session
    from app.ui.train_run import train

    engine = ui_engine()
    session = Session(classes=["low", "high"],
                      examples={c: [engine.encode(_tone(c, i))[1] for i in range(3)] for c in ("low", "high")})
    for value in ("abc", None, "5.5", float("nan")):
        with pytest.raises(gr.Error, match="prompt length must be a whole number"):
            next(train(engine, session, "t", value, "learnable", True, visitor=f"v{value}"))
    with pytest.raises(gr.Error, match="prompt_length must be between"):
        next(train(engine, session, "t", 999, "learnable", True, visitor="v999"))


def _tone(kind: str, seed: int):
    from .conftest import tone_clip

    return (16_000, tone_clip(kind, seed))


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is absent")
def test_a_visitor_refused_by_a_full_training_queue_sees_why_and_can_press_again(monkeypatch):
    """In a real browser: with one run going and 3 waiting, pressing Train shows the server's sentence and the
    button comes back (it is disabled while a request is on its way)."""
    from playwright import sync_api

    from app.ui.guards import TRAIN_WAITING

    with _app_with_a_slow_training(monkeypatch, 60) as (url, join):
        for i in range(1 + TRAIN_WAITING):
            assert join(f"s{i}").status_code == 200
            time.sleep(0.5)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                page.get_by_role("tab", name="Train a prompt").click()
                button = page.locator("#train-run")
                button.click()
                page.get_by_text("Training is busy").first.wait_for(timeout=30_000)
                page.wait_for_function("() => document.querySelector('#train-run').innerText.includes('Train the')"
                                       " && !document.querySelector('#train-run').disabled", timeout=30_000)
            finally:
                browser.close()
