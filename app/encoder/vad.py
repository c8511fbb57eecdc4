"""Voice activity: an energy detector with a hangover that cuts a live stream into words.

Fed chunks of any size at any sample rate, :class:`EnergyVAD` reports where a stretch of speech starts and ends,
as sample indices counted from the start of the stream. A frame (20 ms) is loud when its level is above
``max(floor_db, noise + margin_db)``, where ``noise`` is a low percentile of the last 3 s of frame levels (the
background between words; a steady hum or hiss raises it, speech does not). A word starts after
``start_frames`` loud frames in a row and ends after
``hangover_s`` of quiet (short closures inside a word, e.g. before a 'k', do not end it); a word longer than
``max_word_s`` is cut there, and one shorter than ``min_word_s`` (a click, a bump) is dropped. No Gradio here.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

FRAME_S = 0.02


@dataclass(frozen=True)
class VADConfig:
    floor_db: float = -45.0  # dBFS: quieter than this is never speech
    margin_db: float = 12.0  # speech is this much louder than the tracked background
    start_frames: int = 2  # loud frames in a row that start a word (40 ms)
    hangover_s: float = 0.2  # quiet that ends a word
    min_word_s: float = 0.12
    max_word_s: float = 2.0
    pre_roll_s: float = 0.1  # audio kept before the detected start (soft onsets)
    post_roll_s: float = 0.05  # and after the last loud frame
    noise_window_s: float = 3.0  # the background level is the noise_percentile of this much history
    noise_percentile: float = 10.0


@dataclass(frozen=True)
class Segment:
    """One word: ``start``/``end`` sample indices in the stream (``end`` = last loud frame's end + post-roll) and
    ``speech_end``, the end of the last loud frame (what the latency of an answer is counted from)."""

    start: int
    end: int
    speech_end: int
    sample_rate: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / self.sample_rate


class EnergyVAD:
    """Streaming energy VAD; :meth:`push` takes the next samples and returns the words that ended in them."""

    def __init__(self, sample_rate: int, config: VADConfig = VADConfig()) -> None:
        if not 1000 <= sample_rate <= 384_000:
            raise ValueError(f"sample rate {sample_rate} Hz is out of range")
        self.sr = int(sample_rate)
        self.cfg = config
        self.frame = max(1, round(self.sr * FRAME_S))
        self._rest = np.zeros(0, np.float32)
        self.samples = 0  # samples framed so far (a multiple of self.frame)
        self._history: deque[float] = deque(maxlen=max(10, int(config.noise_window_s / FRAME_S)))
        self.noise_db = config.floor_db - config.margin_db
        self._loud_run = 0
        self._quiet_run = 0
        self.start: int | None = None  # start of the word in progress (with the pre-roll), else None
        self._onset = 0
        self._last_loud_end = 0
        self.level_db = -120.0  # the last frame's level

    @property
    def in_word(self) -> bool:
        return self.start is not None

    def threshold_db(self) -> float:
        return max(self.cfg.floor_db, self.noise_db + self.cfg.margin_db)

    def push(self, samples: np.ndarray) -> list[Segment]:
        """Feed mono float samples in [-1, 1]; returns the words that ended within them (usually none or one)."""
        x = np.concatenate([self._rest, np.asarray(samples, np.float32).reshape(-1)])
        n = x.size // self.frame
        self._rest = x[n * self.frame:]
        if n == 0:
            return []
        frames = x[: n * self.frame].reshape(n, self.frame).astype(np.float64)
        levels = 10 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)
        out: list[Segment] = []
        for db in levels:
            seg = self._step(float(db))
            if seg is not None:
                out.append(seg)
        return out

    def flush(self) -> list[Segment]:
        """End of stream: close the word in progress (if long enough)."""
        if self.start is None:
            return []
        seg = self._close(self._last_loud_end)
        return [seg] if seg is not None else []

    def _step(self, db: float) -> Segment | None:
        c = self.cfg
        begin, end = self.samples, self.samples + self.frame
        self.samples = end
        self.level_db = db
        self._history.append(db)  # a stream that opens on speech takes a moment to find its background
        self.noise_db = float(np.percentile(self._history, c.noise_percentile))
        loud = db > self.threshold_db()
        if self.start is None:
            self._loud_run = self._loud_run + 1 if loud else 0
            if self._loud_run >= c.start_frames:
                self._onset = begin - (c.start_frames - 1) * self.frame
                self.start = max(0, self._onset - int(c.pre_roll_s * self.sr))
                self._last_loud_end = end
                self._quiet_run = 0
            return None
        if loud:
            self._last_loud_end = end
            self._quiet_run = 0
        else:
            self._quiet_run += 1
        if self._quiet_run * self.frame >= c.hangover_s * self.sr:
            return self._close(self._last_loud_end)
        if end - self.start >= c.max_word_s * self.sr:
            return self._close(end)
        return None

    def _close(self, speech_end: int) -> Segment | None:
        start = self.start
        self.start, self._loud_run, self._quiet_run = None, 0, 0
        if start is None or (speech_end - self._onset) < self.cfg.min_word_s * self.sr:
            return None
        end = min(self.samples, speech_end + int(self.cfg.post_roll_s * self.sr))
        return Segment(start=start, end=end, speech_end=speech_end, sample_rate=self.sr)
