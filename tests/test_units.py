"""SpeechEncoder: one call gives collapsed units, durations and pitch, deterministically."""
import torch

from app.encoder.pitch import frame_pitch
from app.encoder.units import collapse

from .conftest import tone_clip


def test_collapse():
    ids, dur = collapse(torch.tensor([5, 5, 7, 7, 7, 5]))
    assert ids.tolist() == [5, 7, 5] and dur.tolist() == [2, 3, 1]


def test_encoder_outputs_consistent(backbone):
    wav = torch.from_numpy(tone_clip("chirp"))
    u = backbone.encoder(wav)
    assert len(u) > 1
    assert int(u.durations.sum()) == wav.numel() // 320
    assert (u.ids[1:] != u.ids[:-1]).all(), "repeats must be collapsed"
    assert u.ids.max() < backbone.n_units
    assert u.pitch.shape == u.ids.shape
    again = backbone.encoder(wav)
    assert torch.equal(u.ids, again.ids) and torch.equal(u.durations, again.durations)


def test_pitch_of_tones():
    t = torch.arange(16000) / 16000
    for f0 in (100.0, 220.0, 400.0):
        p = frame_pitch(torch.sin(2 * torch.pi * f0 * t), 16000, 50, 320)
        assert abs(float(p[5:-5].median()) - f0) < 0.03 * f0
    assert (frame_pitch(0.1 * torch.randn(16000), 16000, 50, 320) == 0).float().mean() > 0.9


def test_prosody_buckets(backbone):
    u = backbone.encoder(torch.from_numpy(tone_clip("low")))
    assert u.duration_buckets().max() < backbone.lm.config.n_duration
    assert u.pitch_buckets().max() < backbone.lm.config.n_pitch
    assert (u.pitch_buckets()[u.pitch == 0] == 0).all()
