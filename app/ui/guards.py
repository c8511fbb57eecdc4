"""Limits a client cannot dodge by inventing sessions: per-pool queue places (training can never take
classification's), and upload budgets per client address and in total.

- :func:`limit_queue`: Gradio's ``max_size`` counts every waiting event of every pool together, so one client that
  queues many training requests (each from a fresh session) filled the places of ``/classify``. Here each
  concurrency pool gets its own places: at most :data:`TRAIN_WAITING` training requests wait behind the running
  one (more are refused at once, with a message), and the model pool keeps its own ``QUEUE_SIZE``.
- :func:`foreign_file`: a request whose file input names a URL or a path on the server (not an upload) is
  refused at the door with one line (Gradio refuses it too, but only after printing a 25-line traceback).
- :class:`UploadBudget`: ASGI middleware in front of ``/gradio_api/upload``: bytes per minute per client address
  and for everyone together, and a cap on what the upload folder may hold, refused with HTTP 429 / 507 and a
  sentence before a byte is stored.
"""
from __future__ import annotations

import collections
import logging
import os
import time
from typing import Any, Callable

import gradio as gr

TRAIN_POOL = "train"
TRAIN_WAITING = 3  # training requests that may wait behind the one that runs; more are refused at once
MB = 2**20
log = logging.getLogger(__name__)


def queue_message(pool: str, waiting: int) -> str:
    if pool == TRAIN_POOL:
        return (f"Training is busy: one run is going and {waiting} are waiting, the most the server queues. "
                "Please try again in a minute.")
    return f"The server is busy ({waiting} requests are waiting). Please try again in a moment."


def limit_queue(demo: Any, default: int, limits: dict[str, int] | None = None) -> None:
    """Give every concurrency pool of ``demo``'s queue its own waiting places (``limits[pool]``, else
    ``default``) instead of Gradio's one global ``max_size``; requests beyond them are refused at once."""
    from gradio import route_utils

    queue = demo._queue
    limits = {TRAIN_POOL: TRAIN_WAITING, **(limits or {})}
    push = queue.push
    queue.max_size = None  # replaced by the per-pool places below (their sum bounds the whole queue)

    async def guarded_push(body: Any, request: Any, username: str | None) -> tuple:
        try:
            fn = route_utils.get_fn(demo, None, body)
        except Exception:  # noqa: BLE001 -- an unknown function: Gradio's own push answers that
            return await push(body=body, request=request, username=username)
        refused = foreign_file(getattr(body, "data", None))
        if refused:  # Gradio would refuse it too, after printing a 25-line traceback; one line here
            log.info("refused a request naming %s", refused)
            return False, refused, "error"
        pool = fn.concurrency_id
        waiting = queue.event_queue_per_concurrency_id.get(pool)
        n = len(waiting.queue) if waiting is not None else 0
        if n >= limits.get(pool, default):
            # Gradio's page shows its own "busy" line for a full queue (503) but the server's sentence for an
            # error (400): training visitors get the sentence that says what is going on.
            return False, queue_message(pool, n), "error" if pool == TRAIN_POOL else "queue_full"
        return await push(body=body, request=request, username=username)

    queue.push = guarded_push
    queue.pool_limits = limits


def training_busy(request: Any) -> str | None:
    """The refusal message when the training pool of the request's app has no waiting place left, else None."""
    app = getattr(getattr(request, "request", None), "app", None)
    queue = getattr(app.get_blocks(), "_queue", None) if hasattr(app, "get_blocks") else None
    limits = getattr(queue, "pool_limits", None)
    if not limits:
        return None
    waiting = queue.event_queue_per_concurrency_id.get(TRAIN_POOL)
    n = len(waiting.queue) if waiting is not None else 0
    return queue_message(TRAIN_POOL, n) if n >= limits[TRAIN_POOL] else None


def lock_training(request: gr.Request) -> dict:
    """First step of the Train button: refuse at once when training is full, else disable the button."""
    from .feedback import fail

    busy = training_busy(request)
    if busy:
        raise fail(busy)
    return gr.update(interactive=False, value="Training…")


def foreign_file(data: Any) -> str | None:
    """A message when a request's file input names a URL or a server path instead of an upload, else None."""
    from gradio import utils
    from gradio_client import utils as client_utils

    problems: list[str] = []

    def check(d: dict) -> dict:
        path = d.get("path")
        if not isinstance(path, str) or utils.is_static_file(path):
            return d
        if client_utils.is_http_url_like(path) or "://" in path:
            problems.append("Send audio as an upload (e.g. handle_file('clip.wav') with gradio_client), not a URL.")
        elif not utils.is_in_or_equal(utils.abspath(path), utils.get_upload_folder()):
            problems.append("Send audio as an upload (e.g. handle_file('clip.wav') with gradio_client), not a path "
                            "on the server.")
        return d

    try:
        client_utils.traverse(data, check, client_utils.is_file_obj_with_meta)
    except Exception:  # noqa: BLE001 -- malformed data: Gradio's own checks answer it
        return None
    return problems[0] if problems else None


def folder_bytes(folder: str) -> int:
    """Bytes of the files under ``folder`` (0 if it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class UploadBudget:
    """ASGI middleware: refuse uploads (``POST .../upload``) beyond ``per_client`` bytes per ``window`` seconds from
    one client address, beyond ``total`` bytes per window from everyone, or when the upload folder already holds
    ``disk`` bytes. Decided from Content-Length before the body is read (an upload without it is refused)."""

    def __init__(self, app: Callable, per_client: int, total: int, disk: int, folder: Callable[[], str],
                 window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.per_client, self.total, self.disk = app, per_client, total, disk
        self.folder, self.window, self.clock = folder, window, clock
        self.log: collections.deque[tuple[float, str, int]] = collections.deque()  # (time, client, bytes)
        self._held: tuple[float, int] = (-1e9, 0)  # (when measured, bytes in the upload folder)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith("/upload"):
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, text = refusal
        body = text.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def held(self) -> int:
        """Bytes in the upload folder, measured at most every 5 s (walking it for every upload would cost more)."""
        now = self.clock()
        if now - self._held[0] > 5.0:
            self._held = (now, folder_bytes(self.folder()))
        return self._held[1]

    def check(self, scope: dict) -> tuple[int, str] | None:
        """``None`` when the upload may go ahead (and is counted), else ``(HTTP status, message)``."""
        headers = dict(scope.get("headers") or [])
        try:
            size = int(headers[b"content-length"])
        except (KeyError, ValueError):
            return 411, "Uploads must state their size (Content-Length)."
        client = (scope.get("client") or ("unknown", 0))[0]
        now = self.clock()
        while self.log and self.log[0][0] < now - self.window:
            self.log.popleft()
        mine = sum(n for _, c, n in self.log if c == client)
        everyone = sum(n for _, _, n in self.log)
        wait = int(self.window - (now - self.log[0][0])) + 1 if self.log else 1
        if mine + size > self.per_client:
            return 429, (f"Too many uploads from your address: at most {self.per_client / MB:.0f} MB per "
                         f"{self.window:.0f} s. Try again in {wait} s.")
        if everyone + size > self.total:
            return 429, (f"The server is receiving too many uploads right now (at most {self.total / MB:.0f} MB "
                         f"per {self.window:.0f} s from everyone). Try again in {wait} s.")
        if self.held() + size > self.disk:
            return 507, "The server's upload space is full. Try again later."
        self.log.append((now, client, size))
        self._held = (self._held[0], self._held[1] + size)
        return None
