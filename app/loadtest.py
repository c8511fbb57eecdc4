"""A bounded load test of the web API on loopback: ``python -m app loadtest``.

``concurrency`` simulated visitors call ``/classify`` (upload a 1 s clip, wait for the answer) back to back until
``seconds`` have passed or ``max_requests`` calls were made; the report gives the call count, errors, latency
percentiles and throughput. Calls go through Gradio's REST API on pooled connections (``client="http"``, light, so
the load generator sharing the machine disturbs the server little) or through gradio_client (``"gradio"``). Without ``--url`` it launches its own ``app.py`` on a free loopback port (and reports
that process's peak resident memory). Everything is bounded (visitors, time, requests, per-call timeout), and only
loopback addresses are accepted: this is for measuring your own server, not for loading somebody else's.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from .backbone import ROOT

MAX_CONCURRENCY = 200
MAX_SECONDS = 600.0
MAX_REQUESTS = 100_000
REQUEST_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 180.0


def check_loopback(url: str) -> str:
    """``url`` normalised with a trailing slash, if it is http(s) on a loopback address; else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Expected an http:// or https:// URL, got {url!r}.")
    host = parts.hostname
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ValueError(f"Refusing to load-test {host}: only loopback addresses (127.0.0.1, ::1, localhost) are "
                         "allowed.")
    return url if url.endswith("/") else url + "/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_kb(pid: int, field: str) -> int | None:
    """A ``/proc/PID/status`` memory figure in KB (``VmHWM`` = peak resident, ``VmRSS`` = current), if available."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (from ``/proc/PID/stat``), if available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_mb(self) -> float | None:
        kb = vm_kb(self.pid, "VmHWM")
        return None if kb is None else round(kb / 1024, 1)

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float | None:
        kb = vm_kb(self.pid, "VmRSS")
        return None if kb is None else round(kb / 1024, 1)

    def last_line(self) -> str:
        """The server's last line of output (its error message, when it failed to start)."""
        try:
            lines = [x.strip() for x in self.log.read_text(errors="replace").splitlines() if x.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""


class ServerError(RuntimeError):
    """The app could not be launched for a load test or benchmark (the message says why, in one line)."""


@contextlib.contextmanager
def launched_server(backbone: str | None = None, prompts: str | None = None, port: int | None = None,
                    env: dict[str, str] | None = None, timeout: float = STARTUP_TIMEOUT_S) -> Iterator[Server]:
    """``python app.py`` on a free loopback port, ready to answer; stopped (and its log removed) on exit."""
    import httpx

    port = port or free_port()
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)]
    if backbone:
        cmd += ["--backbone", str(backbone)]
    if prompts:
        cmd += ["--prompts", str(prompts)]
    fd, log_name = tempfile.mkstemp(prefix="speechprompt-server-", suffix=".log")
    log = Path(log_name)
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    server = Server(f"http://127.0.0.1:{port}/", proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise ServerError(f"app.py exited with status {proc.returncode} before serving: "
                                  f"{server.last_line() or 'no output'}")
            try:
                if httpx.get(server.url + "config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"app.py did not answer within {timeout:.0f} s (last output: "
                                  f"{server.last_line() or 'none'}).")
            time.sleep(0.5)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        log.unlink(missing_ok=True)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


class HttpCaller:
    """``/classify`` through Gradio's plain REST API (upload, call, read the event stream) on one pooled
    connection set: light enough that the load generator, not the server, is rarely what is measured."""

    def __init__(self, url: str, concurrency: int, timeout: float) -> None:
        import httpx

        limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
        self.http = httpx.Client(base_url=url + "gradio_api/", timeout=timeout, limits=limits)

    def __call__(self, clip: bytes, name: str, endpoint: str, *args: Any) -> Any:
        r = self.http.post("upload", files={"files": (name, clip, "application/octet-stream")})
        r.raise_for_status()
        data = [{"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}, *args]
        r = self.http.post(f"call/{endpoint}", json={"data": data})
        r.raise_for_status()
        event_id = r.json()["event_id"]
        event = None
        with self.http.stream("GET", f"call/{endpoint}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = json.loads(line[5:])
                    if event == "error":
                        raise RuntimeError((payload or {}).get("error") or "the server reported an error")
                    return payload[0]
        raise RuntimeError(f"the event stream ended without a result (last event: {event})")

    def close(self) -> None:
        self.http.close()


class GradioCaller:
    """The same call through gradio_client (what most API users run; heavier on the client side)."""

    def __init__(self, url: str, concurrency: int, timeout: float) -> None:
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=False, analytics_enabled=False,
                             max_workers=concurrency)
        self.timeout = timeout
        self.tmp = tempfile.TemporaryDirectory(prefix="speechprompt-loadtest-")

    def __call__(self, clip: bytes, name: str, endpoint: str, *args: Any) -> Any:
        from gradio_client import handle_file

        path = Path(self.tmp.name) / name
        if not path.exists():
            path.write_bytes(clip)
        return self.client.submit(handle_file(str(path)), *args, api_name=f"/{endpoint}").result(timeout=self.timeout)

    def close(self) -> None:
        self.tmp.cleanup()


CALLERS = {"http": HttpCaller, "gradio": GradioCaller}


def run_loadtest(url: str, concurrency: int = 50, seconds: float = 60.0, max_requests: int = 10_000,
                 task: str | None = None, clip: str | Path | None = None, client: str = "http",
                 request_timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
    """``concurrency`` clients calling ``/classify`` until ``seconds`` pass or ``max_requests`` calls were made."""
    url = check_loopback(url)
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}.")
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be more than 0 and at most {MAX_SECONDS:g}.")
    if not 1 <= max_requests <= MAX_REQUESTS:
        raise ValueError(f"max_requests must be between 1 and {MAX_REQUESTS}.")
    if client not in CALLERS:
        raise ValueError(f"client must be one of {sorted(CALLERS)}.")
    if clip is None:
        from .bench import one_second_clip

        data, name = one_second_clip()[0], "clip.wav"
    else:
        data, name = Path(clip).read_bytes(), Path(clip).name
    call = CALLERS[client](url, concurrency, request_timeout)
    try:
        try:  # a warm-up call, which also finds the server's first task and fails clearly on a bad task or clip
            if task is None:
                task = call(data, name, "classify_all")[0]["task"]
            else:
                call(data, name, "classify", task)
        except Exception as exc:
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ServerError(f"The first call to {url} failed: {why}") from None
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        issued = 0
        start = time.perf_counter()
        deadline = start + seconds

        def visitor() -> None:
            nonlocal issued
            while time.perf_counter() < deadline:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                t0 = time.perf_counter()
                try:
                    out = call(data, name, "classify", task)
                    if not isinstance(out, dict) or out.get("task") != task:
                        raise RuntimeError(f"unexpected answer {str(out)[:100]}")
                except Exception as exc:  # every failure is counted, with a sample of the messages
                    with lock:
                        errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                    continue
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1e3)

        threads = [threading.Thread(target=visitor, name=f"visitor-{i}", daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        call.close()
    lat = sorted(latencies)
    return {
        "url": url,
        "client": client,
        "endpoint": "/classify",
        "task": task,
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "n": len(lat) + len(errors),
        "ok": len(lat),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "latency_ms_p50": round(_percentile(lat, 0.50), 1),
        "latency_ms_p95": round(_percentile(lat, 0.95), 1),
        "latency_ms_max": round(lat[-1], 1) if lat else float("nan"),
        "latency_ms_mean": round(statistics.fmean(lat), 1) if lat else float("nan"),
        "throughput_per_s": round(len(lat) / wall, 2) if wall > 0 else 0.0,
    }
