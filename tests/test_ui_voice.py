"""Voice streams made visible (backbone v2, issue #13): the verbalizer's labels and legend, the voice map under the
units in Try a task, the strip's tooltips, How it works' counts and the CLI's JSON; and nothing of it on a backbone
without voice streams."""
from __future__ import annotations

import re
import pytest
import torch

from app.cli import predict_record
from app.ui import hear, how_view, plots, try_view
from app.ui.session import Session

from .ui_engine import ui_engine, voice_engine, write_tone


@pytest.fixture(scope="module")
def veng():
    return voice_engine()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return str(write_tone(tmp_path_factory.mktemp("voice") / "chirp.wav", "chirp"))


@pytest.fixture(scope="module")
def vout(veng, clip):
    return try_view.run_task(veng, Session(), clip, "tones")


def test_voice_inputs_are_labelled_by_stream_and_bucket():
    label = plots.stream_feature_label
    assert label("voice", 0, 101) == "voice 1: 1/8"
    assert label("voice", 2 * 8 + 5, 101) == "voice 3: 6/8"  # input i: stream i // 8, bucket i % 8 (1-based)
    assert label("voice", 16 * 8 - 1, 101) == "voice 16: 8/8"
    assert label("voice", 5, 101, voice_buckets=4) == "voice 2: 2/4"
    assert label("units", 3, 101) == "unit 3" and label("pitch", 0, 101) == "unvoiced"  # the others as before


def test_the_verbalizer_names_and_explains_the_voice_codes(veng, clip):
    prompt = veng.prompts["tones"]
    assert "voice" in prompt.reads
    pred = veng.classify(clip, "tones")
    fig = plots.verbalizer_figure(prompt, pred.probs, pred.stream_probs)
    assert "“voice k: b/8” = timbre direction k, bucket b of 8 (low..high)" in fig.layout.title.text
    assert "“dur”" in fig.layout.title.text
    # every input has its name; the voice ones are stream:bucket, and their LM probabilities are per stream
    V = len(pred.unit_probs)
    names = [plots.stream_feature_label(k, i, V) for k in prompt.reads for i in range(len(pred.stream_probs[k]))]
    voice_names = [n for n in names if n.startswith("voice ")]
    assert len(voice_names) == 4 * 8 and voice_names[0] == "voice 1: 1/8" and voice_names[-1] == "voice 4: 8/8"
    per = plots.per_stream(pred.stream_probs["voice"], 8).view(4, 8)
    assert torch.allclose(per.sum(-1), torch.ones(4), atol=1e-5)
    for trace in fig.data:
        for y, cd in zip(trace.y, trace.customdata):
            m = re.match(r"voice (\d+): (\d+)/8$", y)
            if m:
                assert cd[2] == pytest.approx(float(per[int(m.group(1)) - 1, int(m.group(2)) - 1]), abs=1e-6)
    # contributions shown are weight x input of the named inputs, as without voice
    assert all(n in names or n.split(" ▶")[0] in names for t in fig.data for n in t.y)


def test_the_try_view_shows_a_voice_map_under_the_units(veng, vout, clip):
    sig = vout.signal
    heat = [t for t in sig.data if t.name == "voice"]
    assert len(heat) == 1
    heat = heat[0]
    assert list(heat.y) == [1, 2, 3, 4] and len(heat.z) == 4
    _, units = veng.encode(clip)
    runs = plots.voice_runs(units)
    assert len(heat.z[0]) == len(runs) and len(heat.x) == len(runs) + 1  # cell edges
    seg = [t for t in sig.data if t.type == "bar"][0]
    end = float(units.durations.sum()) / units.frame_rate
    assert heat.x[0] == 0 and heat.x[-1] == pytest.approx(end)  # the map spans the units' timeline
    # each cell is the bucket (1..8) every unit of its stretch carries
    codes = units.voice.tolist()
    for j, (a, b, c) in enumerate(runs):
        fa, fb = round(a * units.frame_rate), round(b * units.frame_rate)
        inside = [codes[i] for i, s in enumerate(units.starts.tolist()) if fa <= s < fb]
        assert inside and all(x == c for x in inside)
        assert [heat.z[k][j] for k in range(4)] == [v + 1 for v in c]
    assert all(1 <= v <= 8 for row in heat.z for v in row) and (heat.zmin, heat.zmax) == (0.5, 8.5)
    assert "voice stream %{customdata[3]}: bucket %{customdata[0]} of 8" in heat.hovertemplate
    cd = heat.customdata[2][0]  # [bucket, start s, length ms, stream]: a click plays its stretch (hear.py)
    assert len(cd) == 4 and cd[3] == 3 and cd[1] == pytest.approx(runs[0][0], abs=1e-3)
    # one time axis: the map is the fourth row, sharing x with the units and carrying the axis title
    assert heat.xaxis == "x4" and seg.xaxis == "x3"
    assert [sig.layout[f"xaxis{i}"].matches for i in ("", 2, 3)] == ["x4"] * 3
    assert sig.layout.xaxis4.title.text == "time (s)" and not sig.layout.xaxis3.title.text
    assert sig.layout.height > 430
    # the strip: a caption saying what the map is, and each token's voice codes
    assert "Voice map" in vout.strip and "The LM reads them beside the units" in vout.strip
    tips = re.findall(r'title="([^"]*)"', vout.strip)
    assert len(tips) == len(units)
    assert tips[0].startswith("unit ") and f"voice {' '.join(str(c + 1) for c in codes[0])} (of 8)" in tips[0]


def test_v1_backbones_show_no_voice(clip):
    eng = ui_engine()
    out = try_view.run_task(eng, Session(), clip, "tones")
    assert not any(t.name == "voice" for t in out.signal.data)
    assert out.signal.layout.height == 430 and out.signal.layout.xaxis3.title.text == "time (s)"
    assert "Voice map" not in out.strip and not re.search(r"\bvoice\b", out.strip)
    assert "voice k" not in out.verbalizer.layout.title.text
    assert plots.voice_heatmap(eng.encode(clip)[1]) is None
    text, diagram = how_view.how_markdown(eng), how_view.pipeline_html(eng)
    assert "voice" not in text.lower().replace("voices", "") and "voice codes" not in diagram
    assert how_view.voice_streams(eng) is None


def test_how_it_works_counts_the_voice_streams(veng):
    text, diagram = how_view.how_markdown(veng), how_view.pipeline_html(veng)
    vq = veng.backbone.encoder.voice
    assert (vq.n_streams, vq.n_buckets) == (4, 8)
    seconds = vq.window * veng.backbone.encoder.hop / veng.backbone.sample_rate
    assert f"windows of {vq.window} frames (~{round(seconds, 1):g} s)" in text
    assert "1 unit + 1 duration + 1 pitch + 4 voice codes = 7 embeddings" in text
    assert "4×8 = 32 voice-code probabilities" in text and "**Voice codes:**" in text
    p = how_view.example_prompt(veng)
    assert p.reads == ("units", "duration", "pitch", "voice")
    assert f"+ 32 voice = {p.verbalizer.in_features} inputs" in text
    assert f"**{p.num_trainable():,} trainable parameters**" in text
    assert "4 voice codes" in diagram and "those of its 4 voice codes" in diagram


def test_cli_json_carries_each_units_voice_codes(veng, clip):
    path = clip
    a = veng.analyze(path, ["tones"])
    obj = predict_record(path, "tones", a)
    assert set(obj) == {"file", "task", "label", "probs", "units", "durations", "voice", "notices"}
    assert len(obj["voice"]) == len(obj["units"]) and all(len(v) == 4 for v in obj["voice"])
    assert obj["voice"] == a.units.to_dict()["voice"]
    plain = predict_record(path, "tones", ui_engine().analyze(path, ["tones"]))
    assert "voice" not in plain and set(plain) == set(obj) - {"voice"}


def test_strip_without_voice_streams_is_unchanged():
    from app.encoder.audio import Audio
    from app.encoder.units import Units

    u = Units(ids=torch.tensor([3, 7]), durations=torch.tensor([5, 10]), pitch=torch.tensor([120.0, 0.0]))
    out = hear.unit_strip_html(Audio(wav=torch.zeros(8000)), u)
    assert "Voice map" not in out and not re.search(r"\bvoice\b", out)
    v = Units(ids=u.ids, durations=u.durations, pitch=u.pitch, voice=torch.tensor([[0, 7], [0, 7]]))
    assert len(plots.voice_runs(v)) == 1 and plots.voice_runs(v)[0][:2] == (0.0, 0.3)
    assert "voice 1 8 (of 8)" in hear.unit_strip_html(Audio(wav=torch.zeros(8000)), v)


def test_the_header_counts_the_voice_streams(veng):
    from app.ui.style import header_html

    assert '<span class="chip">4 voice streams</span>' in header_html(veng)
    assert "voice streams" not in header_html(ui_engine())
