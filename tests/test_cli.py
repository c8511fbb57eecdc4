"""`python -m app` forms exactly as documented, including one-line errors without tracebacks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, check=True):
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory, backbone_dir, labelled_dir):
    prompts = tmp_path_factory.mktemp("prompts")
    p = run("train", "--task", "tones", "--data", labelled_dir, "--out", prompts / "tones", "--epochs", "60",
            "--lr", "0.02", "--batch-size", "8", "--backbone", backbone_dir, "--json")
    return prompts, json.loads(p.stdout.strip().splitlines()[-1])


def test_info_json(backbone_dir):
    d = json.loads(run("info", "--json", "--backbone", backbone_dir).stdout)
    for key in ("parameter_count", "vocab_size", "layers", "width", "bytes_on_disk", "fingerprint"):
        assert key in d
    assert d["bytes_on_disk"] > 0


def test_train_tasks_predict_eval(trained, backbone_dir, labelled_dir):
    prompts, out = trained
    assert out["trainable_params"] < 150_000 and out["labels"] == ["chirp", "high", "low"]
    assert (prompts / "tones" / "prompt.safetensors").is_file() and (prompts / "tones" / "task.json").is_file()
    tasks = json.loads(run("tasks", "--json", "--backbone", backbone_dir, "--prompts", prompts).stdout)
    assert [t["task"] for t in tasks] == ["tones"]
    assert set(tasks[0]) >= {"task", "title", "labels", "trainable_params", "metrics"}
    assert tasks[0]["trainable_params"] == out["trainable_params"] > 0
    files = sorted((labelled_dir / "high").glob("*.wav"))[:2]
    p = run("predict", "--task", "tones", *files, "--json", "--backbone", backbone_dir, "--prompts", prompts)
    lines = [json.loads(x) for x in p.stdout.strip().splitlines()]
    assert len(lines) == 2
    for obj in lines:
        assert set(obj) == {"file", "task", "label", "probs", "units", "durations", "notices"}
        assert abs(sum(obj["probs"].values()) - 1) < 1e-4 and len(obj["units"]) == len(obj["durations"])
    ev = json.loads(run("eval", "--task", "tones", "--data", labelled_dir, "--json", "--backbone", backbone_dir,
                        "--prompts", prompts).stdout)
    assert set(ev) == {"task", "n", "accuracy", "macro_f1", "confusion"}
    assert ev["n"] == 15 and ev["accuracy"] >= 0.8


def test_text_output_is_readable(trained, backbone_dir):
    prompts, _ = trained
    p = run("tasks", "--backbone", backbone_dir, "--prompts", prompts)
    assert "tones" in p.stdout and "trainable" in p.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["predict", "--task", "nope", "x.wav"], "Unknown task"),
        (["predict", "--task", "../x", "x.wav"], "Invalid task id"),
        (["eval", "--task", "tones", "--data", "/nonexistent"], "neither a folder"),
        (["info", "--backbone", "/nonexistent"], "No backbone"),
    ],
)
def test_errors_are_one_clear_line(trained, backbone_dir, args, fragment):
    prompts, _ = trained
    extra = [] if "--backbone" in args else ["--backbone", backbone_dir]
    p = run(*args, *extra, "--prompts", prompts, check=False)
    assert p.returncode != 0
    assert fragment in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_predict_bad_file_is_reported(trained, backbone_dir, tmp_path):
    prompts, _ = trained
    bad = tmp_path / "not audio ü.wav"
    bad.write_text("hello")
    p = run("predict", "--task", "tones", bad, "--backbone", backbone_dir, "--prompts", prompts, check=False)
    assert p.returncode != 0 and "Could not read" in p.stderr and "Traceback" not in p.stderr
