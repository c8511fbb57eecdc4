"""What a visitor sees when something goes wrong: a clear message for problems they can fix, never a traceback."""
from __future__ import annotations

import functools
import html
import logging
from typing import Any, Callable, TypeVar

import gradio as gr

from ..errors import USER_ERRORS

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> gr.Error:
    """An error for the visitor: shown as a message, not logged as a traceback (the server is fine)."""
    return gr.Error(message, print_exception=False)


def user_errors(fn: F) -> F:
    """Turn problems a visitor can fix into a ``gr.Error`` with a clear message; never show a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as exc:
            message = str(exc)
        except Exception as exc:  # unexpected: log it for us, a short message for them
            log.exception("unexpected error in %s", fn.__name__)
            message = f"Something went wrong ({type(exc).__name__}). Please try another clip."
        # Raised outside the except blocks: the visitor's error carries no __context__, so no traceback keeps the
        # failed call's frames (and the audio they decoded) alive after the request.
        raise fail(message)

    return wrapper  # type: ignore[return-value]


def require_audio(path: str | None) -> str:
    if not path:
        raise fail("Record or upload a clip first, or click one of the example clips.")
    return path


# Shorter than this (after leading and trailing silence are trimmed) is too little speech to classify or to learn
# from: a visitor gets a message instead of a confident-looking answer, and such a clip is never a training example.
MIN_SPEECH_SECONDS = 0.3


def require_speech(seconds: float) -> None:
    if seconds < MIN_SPEECH_SECONDS:
        raise fail(f"Only {seconds:.2f} s of sound was heard: too short to tell anything. Record a whole word "
                   f"(at least {MIN_SPEECH_SECONDS:g} s of speech).")


def message_of(exc: BaseException) -> str:
    """The visitor-facing text of an error raised by :func:`fail` (or any exception)."""
    return str(getattr(exc, "message", None) or exc)


def alert_html(message: str, hint: str = "") -> str:
    """A message that stays on the page (role=alert) until the next action replaces it; ``hint`` says what to
    do next. Plain text in, escaped HTML out (no raw markup reaches the visitor)."""
    tail = f'<div class="alert-hint">{html.escape(hint)}</div>' if hint else ""
    return (f'<div class="alert" role="alert"><div class="alert-title">⚠ {html.escape(message)}</div>'
            f"{tail}</div>")
