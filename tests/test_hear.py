"""Hear a unit: the embedded clip, each token's stretch, and the verbalizer's units named by where they sound."""
from __future__ import annotations

import base64
import io
import re

import plotly.graph_objects as go
import soundfile as sf
import torch

from app.encoder.audio import Audio
from app.encoder.units import Units
from app.ui import hear


def _units() -> Units:
    return Units(ids=torch.tensor([3, 7, 3, 9]), durations=torch.tensor([5, 10, 2, 8]),
                 pitch=torch.tensor([120.0, 0.0, 130.0, 140.0]))


def test_the_strip_embeds_the_clip_and_each_token_its_stretch():
    wav = torch.sin(torch.arange(8000) / 5) * 0.5
    out = hear.unit_strip_html(Audio(wav=wav), _units())
    src = re.search(r'data-src="(data:audio/wav;base64,[^"]+)"', out).group(1)
    data, sr = sf.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), dtype="float32")
    assert sr == 16_000 and data.size == 8000 and abs(data - wav.numpy()).max() < 1e-3
    spans = [(float(a), float(b)) for a, b in re.findall(r'data-start="([\d.]+)" data-end="([\d.]+)"', out)]
    assert spans == [(0.0, 0.1), (0.1, 0.3), (0.3, 0.34), (0.34, 0.5)]
    assert out.count('class="unit-tok"') == 4 and "starts 0.00 s" in out


def test_long_clips_are_embedded_at_8_khz():
    src = hear.wav_data_uri(torch.zeros(16_000 * 12), 16_000)
    assert sf.info(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).samplerate == 8000


def test_units_are_named_after_where_they_sound():
    fig = go.Figure(go.Bar(x=[0.1, 0.2, 0.3], y=["unit 7", "unit 5", "dur 2 fr"], orientation="h"))
    fig = hear.name_units(fig, _units())
    assert list(fig.data[0].y) == ["unit 7 ▶ 0.10 s", "unit 5", "dur 2 fr"]
    assert hear.first_occurrence(_units())[3] == (0.0, 0.1)
