"""A bounded load test of the web API on loopback: ``python -m app loadtest``.

``concurrency`` simulated visitors call ``/classify`` (upload a 1 s clip, wait for the answer) back to back until
``seconds`` have passed or ``max_requests`` calls were made; the report gives the call count, errors, latency
percentiles and throughput. Calls go through Gradio's REST API on pooled connections (``client="http"``, light, so
the load generator sharing the machine disturbs the server little) or through gradio_client (``"gradio"``).
Without ``--url`` it launches its own ``app.py`` on a free loopback port (and reports that process's peak resident
memory). Everything is bounded (visitors, time, requests, per-call timeout), and only
loopback addresses are accepted: this is for measuring your own server, not for loading somebody else's.
"""
from __future__ import annotations

import ipaddress
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .clips import one_second_clip
from .process import ServerError

MAX_CONCURRENCY = 200
MAX_SECONDS = 600.0
MAX_REQUESTS = 100_000
REQUEST_TIMEOUT_S = 120.0


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
