"""Many visitors: a short bounded load test on loopback, the loopback-only rule, and a launched app.py that starts
with malformed prompt folders and still serves."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.perf.loadtest import check_loopback, run_loadtest
from app.perf.process import launched_server

from .ui_engine import add_malformed_prompts, save_engine, served_ui, write_tone

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server():
    with served_ui() as u:
        yield u


@pytest.mark.parametrize("url", ["http://127.0.0.1:7860", "http://localhost:7860/", "https://[::1]:7860/",
                                 "http://127.3.4.5/"])
def test_loopback_urls_are_accepted(url):
    assert check_loopback(url).endswith("/")


@pytest.mark.parametrize("url", ["http://example.com/", "http://10.0.0.1:7860/", "http://0.0.0.0:7860/",
                                 "http://192.168.1.2/", "ftp://127.0.0.1/", "127.0.0.1:7860", "http://127.0.0.1.nip.io/"])
def test_other_urls_are_refused(url):
    with pytest.raises(ValueError):
        check_loopback(url)


def test_limits_are_enforced(server):
    for kw in [{"concurrency": 0}, {"concurrency": 1000}, {"seconds": 0}, {"seconds": 3600}, {"max_requests": 0},
               {"client": "curl"}]:
        with pytest.raises(ValueError):
            run_loadtest(server, **{"concurrency": 2, "seconds": 1, **kw})


def test_eight_visitors_for_five_seconds(server, tmp_path):
    clip = write_tone(tmp_path / "c.wav", "low", 1)
    out = run_loadtest(server, concurrency=8, seconds=5, task="tones", clip=clip)
    assert out["errors"] == 0, out["error_samples"]
    assert out["n"] == out["ok"] >= 8 and out["concurrency"] == 8
    assert 0 < out["latency_ms_p50"] <= out["latency_ms_p95"] <= out["latency_ms_max"]
    assert out["throughput_per_s"] > 0 and out["seconds"] < 5 + 60


@pytest.mark.parametrize("client", ["http", "gradio"])
def test_request_cap_bounds_the_run(server, client):
    out = run_loadtest(server, concurrency=3, seconds=60, max_requests=5, client=client)
    assert out["n"] == 5 and out["errors"] == 0 and out["task"] == "tones" and out["seconds"] < 30


def test_errors_are_counted_not_raised(server, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(RuntimeError, match="it is a text file"):  # the warm-up call fails loudly
        run_loadtest(server, concurrency=2, seconds=1, task="tones", clip=bad)


def _cli(*args):
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_against_a_running_server_and_refusal(server):
    p = _cli("loadtest", "--url", server, "--concurrency", "4", "--seconds", "2", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["errors"] == 0 and out["n"] > 0 and {"latency_ms_p50", "latency_ms_p95", "latency_ms_max",
                                                    "throughput_per_s"} <= set(out)
    p = _cli("loadtest", "--url", "http://example.com/", "--seconds", "1")
    assert p.returncode == 2 and "only loopback" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_app_started_with_malformed_prompts_still_serves(tmp_path):
    """``python app.py`` with broken prompt folders next to good ones: warnings, then it serves the good ones."""
    backbone, prompts = save_engine(tmp_path)
    cases = add_malformed_prompts(prompts)
    with launched_server(backbone, prompts, env={"OMP_NUM_THREADS": "1"}) as srv:
        out = run_loadtest(srv.url, concurrency=4, seconds=3, task="tones")
        log = srv.log.read_text(errors="replace")
        peak = srv.peak_rss_mb()
    assert out["errors"] == 0 and out["n"] > 0
    for name in cases:
        assert f"warning: skipped prompt {name}:" in log
    assert "Traceback" not in log
    assert peak is None or peak > 50
