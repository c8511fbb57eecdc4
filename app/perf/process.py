"""Process helpers for the tools: launch ``app.py`` on a free loopback port, read a process's memory and CPU time."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..settings import ROOT

STARTUP_TIMEOUT_S = 180.0


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
