"""`python -m app bench`: every documented key, on the tiny engine, including the launched app's peak memory."""
from __future__ import annotations

import pytest

from app.perf.bench import run_bench

from .ui_engine import save_engine


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    backbone, prompts = save_engine(tmp_path_factory.mktemp("engine"))
    return run_bench(backbone, prompts, repeats=3, threads=1)


def test_required_keys_and_sane_values(figures):
    f = figures
    for key in ("latency_ms_p50", "batch_all_tasks_over_one_task", "train_5x5_seconds", "peak_rss_mb"):
        assert isinstance(f[key], (int, float)) and f[key] > 0, key
    assert set(f["stage_ms"]) == {"decode", "encode", "lm", "verbalizer"}
    assert f["tasks_loaded"] == 2 and f["threads"] == 1
    # the few-shot run a teacher gets: 5 classes x 5 takes, each with its perturbed copies, the whole step budget
    assert f["train_5x5_seconds"] == pytest.approx(f["train_5x5_encode_seconds"] + f["train_5x5_train_seconds"],
                                                   abs=0.02)
    assert f["train_5x5_copies_per_clip"] >= 1 and f["train_5x5_epochs"] >= 1 and 0 <= f["train_5x5_train_acc"] <= 1
    assert f["train_5x5_cv_seconds"] > 0 and 0 <= f["train_5x5_cv_accuracy"] <= 1
    assert f["train_examples_per_second"] > 0
    for key in ("batch_10_tasks_over_one_task", "lm_batch_all_tasks_over_one_task"):
        assert f[key] > 0, key
    # the ratios are what they say: the measured times divided
    assert f["batch_all_tasks_over_one_task"] == pytest.approx(f["all_tasks_end_to_end_ms"] / f["latency_ms_p50"],
                                                               rel=0.02)
    assert f["lm_batch_all_tasks_over_one_task"] == pytest.approx(f["lm_all_tasks_ms"] / f["lm_one_task_ms"], rel=0.02)


def test_peak_memory_is_the_apps(figures):
    f = figures
    assert f["peak_rss_source"].startswith("app.py")
    assert f["peak_rss_mb"] >= f["app_rss_mb_idle"] > 50
    assert any("only the first 30 s" in n for n in f["ten_minute_upload_notices"])
    assert f["api_latency_ms_p50"] > 0


def test_the_library_and_the_tools_do_not_import_gradio():
    """Arrows point down: the benchmark, the engine and training run without the UI (and without Gradio)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, app.perf.bench, app.perf.loadtest, app.engine, app.training, app.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('gradio', 'app.ui'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_browser_benchmark_says_which_medians_meet_the_500_ms_targets():
    """The speed targets live in the benchmark script (tests.browser_latency), not in timed tests."""
    from .browser_latency import targets

    got = targets({"click_to_answer_median_ms": 113, "stop_to_answer_median_ms": 501, "load_1min_at_end": 9.0})
    assert got == {"click_to_answer_median_ms": {"median_ms": 113, "target_ms": 500, "met": True},
                   "stop_to_answer_median_ms": {"median_ms": 501, "target_ms": 500, "met": False}}
