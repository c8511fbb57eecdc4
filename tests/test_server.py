"""The app launched on a loopback port, called through gradio_client's named endpoints (and over HTTPS)."""
from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
from gradio_client import Client, handle_file

from app.ui import build_ui

from .ui_engine import served_ui, free_port, ui_engine, write_tone


@pytest.fixture(scope="module")
def server():
    engine = ui_engine()
    with served_ui(engine) as url:
        yield engine, url


@pytest.fixture(scope="module")
def client(server):
    return Client(server[1], verbose=False, download_files=False, analytics_enabled=False)


def test_classify_and_classify_all(server, client, tmp_path):
    engine, _ = server
    clip = write_tone(tmp_path / "high.wav", "high", 5)
    one = client.predict(handle_file(str(clip)), "tones", api_name="/classify")
    assert one == {**engine.classify(str(clip), "tones").to_dict(), "notices": []}
    assert set(one) == {"task", "label", "probs", "notices"} and abs(sum(one["probs"].values()) - 1) < 1e-4
    every = client.predict(handle_file(str(clip)), api_name="/classify_all")
    assert isinstance(every, list) and [r["task"] for r in every] == engine.tasks
    assert every[engine.tasks.index("tones")]["label"] == one["label"]


def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(server, client, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("definitely not audio")
    with pytest.raises(Exception, match="Could not read notes.wav as audio") as err:
        client.predict(handle_file(str(bad)), "tones", api_name="/classify")
    assert "Traceback" not in str(err.value)
    with pytest.raises(Exception, match="Unknown task 'nope'"):
        client.predict(handle_file(str(write_tone(tmp_path / "a.wav"))), "nope", api_name="/classify")
    with pytest.raises(Exception, match="Could not read"):
        client.predict(handle_file(str(bad)), api_name="/classify_all")
    ok = client.predict(handle_file(str(write_tone(tmp_path / "b.wav", "low", 2))), "tones", api_name="/classify")
    assert ok["task"] == "tones"


def test_several_clients_at_once(server, client, tmp_path):
    jobs = [client.submit(handle_file(str(write_tone(tmp_path / f"c{i}.wav", "chirp", i))), "tones-freq",
                          api_name="/classify") for i in range(4)]
    results = [j.result(timeout=60) for j in jobs]
    assert all(r["task"] == "tones-freq" for r in results)


def test_ui_endpoints_are_not_in_the_api(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert names == {"/classify", "/classify_all"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_https_launch_with_a_self_signed_certificate(tmp_path):
    from app.ui.server import launch_kwargs, parse_args

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    port = free_port()
    args = parse_args(["--host", "127.0.0.1", "--port", str(port), "--ssl-certfile", str(cert),
                       "--ssl-keyfile", str(key)], env={})
    demo = build_ui(ui_engine())
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(args))
    try:
        for _ in range(20):
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/config", verify=False, timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert r.status_code == 200 and "classify" in r.text
        secure = Client(f"https://127.0.0.1:{port}/", verbose=False, ssl_verify=False, analytics_enabled=False)
        clip = write_tone(tmp_path / "low.wav", "low", 3)
        assert secure.predict(handle_file(str(clip)), "tones", api_name="/classify")["task"] == "tones"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/config", timeout=5)
    finally:
        demo.close()


def test_uploads_over_the_size_limit_are_refused(server, client, tmp_path):
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (21 * 2**20))
    with pytest.raises(Exception, match="(?i)file.*(large|size|exceed)") as err:
        client.predict(handle_file(str(big)), "tones", api_name="/classify")
    assert "20" in str(err.value)
    ok = client.predict(handle_file(str(write_tone(tmp_path / "ok.wav"))), "tones", api_name="/classify")
    assert ok["task"] == "tones"
