"""A real browser (headless Chromium through Playwright) uploads a clip, records one through a fake microphone,
and gets predictions back. Saves docs/screenshots/try.png. Needs /usr/bin/chromium (CI installs it)."""
from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright import sync_api

from app.engine import Engine
from app.ui.widgets import examples

from .conftest import KINDS, tone_clip
from .ui_engine import served_ui, ui_engine, write_tone

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
# Screenshots of the tiny test engine go to a temp folder, or where $SPEECHPROMPT_SCREENSHOTS says (the README's
# screenshots of the shipped app come from recipes/build/screenshots.py).
SCREENSHOTS = Path(os.environ.get("SPEECHPROMPT_SCREENSHOTS") or tempfile.mkdtemp(prefix="speechprompt-shots-"))
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)")


@pytest.fixture(scope="module")
def url():
    with served_ui() as u:
        yield u


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


def _outcome(page) -> tuple[str, str]:
    """Wait for the Try view's answer: ``("label", predicted label)`` or ``("error", the on-page alert's text)``."""
    page.locator("#try-headline .headline-label, #try-headline [role=alert], .toast-body.error").first.wait_for(
        timeout=TIMEOUT_MS)
    label = page.locator("#try-headline .headline-label")
    if label.count():
        return "label", label.inner_text().strip()
    alert = page.locator("#try-headline [role=alert]")
    if alert.count():
        return "error", alert.inner_text().strip()
    return "error", page.locator(".toast-body.error .toast-message-text").first.inner_text().strip()


def _headline(page) -> str:
    """Wait for a prediction in the headline and return the predicted label (an error toast fails with its text)."""
    kind, text = _outcome(page)
    assert kind == "label", f"the app answered with an error: {text}"
    return text


def _record(page, audio, seconds: float) -> None:
    """Record ``seconds`` through the (fake) microphone and wait until the recording is uploaded to the server."""
    audio.locator("button.record-button").click()
    page.wait_for_timeout(int(seconds * 1000))
    audio.locator("button.stop-button").first.click()
    # The player shows up before the upload ends; the download link points at the server's copy of the recording.
    audio.locator("a.download-link[href*='gradio_api/file=']").wait_for(timeout=TIMEOUT_MS)


def test_upload_a_clip_and_classify(url, playwright, tmp_path):
    clip = write_tone(tmp_path / "chirp.wav", "chirp", 11)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        outside: list[str] = []
        page.on("request", lambda r: outside.append(r.url)
                if not re.match(r"^(https?://127\.0\.0\.1[:/]|data:|blob:)", r.url) else None)
        page.goto(url)
        audio = page.locator("#try-audio")
        audio.get_by_role("button", name="Upload file").click()
        audio.locator("input[type=file]").set_input_files(str(clip))
        audio.locator(".play-pause-button").wait_for(timeout=TIMEOUT_MS)  # the player shows the uploaded clip
        page.locator("#try-run").click()
        page.locator("#try-probs .js-plotly-plot").wait_for(timeout=TIMEOUT_MS)
        label = _headline(page)
        assert label == ui_engine().classify(str(clip), "tones").label
        page.locator("#try-signal .js-plotly-plot").wait_for(timeout=TIMEOUT_MS)
        page.locator("#try-steering .js-plotly-plot").wait_for(timeout=TIMEOUT_MS)
        tokens = page.locator(".unit-tok")
        assert tokens.count() > 0
        assert re.match(r"unit \d+ · starts 0\.00 s · \d+ ms · ", tokens.first.get_attribute("title"))
        assert "Latency" in page.locator(".facts").first.inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SCREENSHOTS / "try.png"), full_page=True)
        assert outside == [], f"the page fetched from outside the server: {outside[:3]}"
    finally:
        browser.close()


def _record_and_classify(browser, url: str) -> tuple[str, str, object]:
    """One visitor: a fresh page, 2.5 s through the microphone, stop; returns the outcome and the page (stopping
    classifies the recording: no button is pressed)."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"]).new_page()
    page.goto(url)
    audio = page.locator("#try-audio")
    try:
        _record(page, audio, 2.5)
        kind, text = _outcome(page)
    except sync_api.TimeoutError as exc:
        kind, text = "timeout", str(exc).splitlines()[0]
    return kind, text, page


def _with_microphone(playwright, wav: Path, kind: str, seed: int):
    """Chromium whose fake microphone plays 6 s of a test tone (48 kHz, as a browser records) in a loop."""
    sf.write(wav, np.concatenate([tone_clip(kind, seed=seed, seconds=3.0, sr=48000)] * 2), 48000, subtype="PCM_16")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}"])


def test_record_through_the_microphone(url, playwright, tmp_path):
    browser = _with_microphone(playwright, tmp_path / "mic.wav", "high", seed=4)
    try:
        kind, text, page = _record_and_classify(browser, url)
        if kind != "label":
            # Seen once in CI (the headline never came, cause not captured), never here in about 15 runs, some
            # with both cores loaded: a visitor would record again, and so does the test, once, saying why.
            # Two failures in a row fail the test with both reasons.
            warnings.warn(f"first recording not classified ({kind}: {text}); recording again")
            first = f"{kind}: {text}"
            kind, text, page = _record_and_classify(browser, url)
            assert kind == "label", f"the recording was not classified, twice: {first} / {kind}: {text}"
        assert text in KINDS, f"the recording was classified as {text!r}"
        page.locator("#try-signal .js-plotly-plot").wait_for(timeout=TIMEOUT_MS)
        title = page.locator("#try-signal .gtitle").text_content()
        seconds = float(re.search(r"from ([\d.]+) s of audio", title).group(1))
        assert 1.0 <= seconds <= 6.0, f"about 2.5 s were recorded, the server analysed {seconds} s"
        assert "Latency" in page.locator(".facts").first.inner_text()
    finally:
        browser.close()


def test_recordings_go_to_the_chosen_class_and_can_be_undone(url, playwright, tmp_path):
    browser = _with_microphone(playwright, tmp_path / "mic.wav", "low", seed=2)
    try:
        page = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"]).new_page()
        page.goto(url)
        page.get_by_role("tab", name="Train a prompt").click()
        page.locator("#train-classes textarea, #train-classes input").first.fill("low, high")
        page.get_by_role("button", name="Set classes").click()
        status = page.locator("#train-status")
        sync_api.expect(status.locator("td", has_text="needs 3 more")).to_have_count(2, timeout=TIMEOUT_MS)
        recorder = page.locator("#train-recording")
        for take in (1, 2):  # record, stop, record again: no button between takes
            recorder.locator("button.record-button").click()
            page.wait_for_timeout(1500)
            recorder.locator("button.stop-button").first.click()
            sync_api.expect(status.locator("td", has_text=f"needs {3 - take} more")).to_have_count(
                1, timeout=TIMEOUT_MS)
        page.locator("#train-undo").click()
        sync_api.expect(status.locator("td", has_text="needs 2 more")).to_have_count(1, timeout=TIMEOUT_MS)
    finally:
        browser.close()


def test_example_button_runs_in_one_click(url, playwright):
    if not examples():
        pytest.skip("no bundled example clips (python -m recipes.build.examples makes them)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.locator("#try-example-0").click()
        assert _headline(page) in KINDS
    finally:
        browser.close()


def test_training_in_the_browser_is_private_to_the_visitor(url, playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        alice = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        alice.goto(url)
        alice.get_by_role("tab", name="Train a prompt").click()
        alice.locator("#train-bundled").click()
        ready = alice.locator("#train-status td", has_text="ready")
        sync_api.expect(ready).to_have_count(3, timeout=TIMEOUT_MS)  # yes, no, stop: 5 clips each
        # the teacher is told the bundled takes are synthetic, and what that means for real voices
        sync_api.expect(alice.locator("#train-alert [role=alert]")).to_contain_text("synthetic voices")
        alice.locator("#train-run").click()
        alice.locator("#train-download").wait_for(timeout=TIMEOUT_MS)
        assert "Trained" in alice.locator("#train-log").inner_text()
        alice.locator("#train-curve .js-plotly-plot").wait_for(timeout=TIMEOUT_MS)
        sync_api.expect(alice.locator("#train-run")).to_be_enabled(timeout=TIMEOUT_MS)
        sync_api.expect(alice.locator("#train-run")).to_have_text("Train the prompt")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        alice.screenshot(path=str(SCREENSHOTS / "train.png"), full_page=True)
        alice.get_by_role("tab", name="Try a task").click()
        assert "My words" in alice.locator("#try-task input").input_value()
        bob = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        bob.goto(url)
        bob.locator("#try-task input").click()
        bob.locator("#try-task [data-testid=dropdown-option]").first.wait_for(timeout=TIMEOUT_MS)
        options = " | ".join(bob.locator("#try-task [data-testid=dropdown-option]").all_inner_texts())
        assert "Tone shape" in options and "My words" not in options
        alice.locator("#try-task input").click()
        mine = " | ".join(alice.locator("#try-task [data-testid=dropdown-option]").all_inner_texts())
        assert "My words" in mine
    finally:
        browser.close()


# ------------------------------------------------------------------ issue #15


def _upload(page, audio, path: Path) -> None:
    audio.get_by_role("button", name="Upload file").click()
    audio.locator("input[type=file]").set_input_files(str(path))
    audio.locator(".play-pause-button").wait_for(timeout=TIMEOUT_MS)


def test_errors_stay_on_the_page_and_stale_answers_go(url, playwright, tmp_path):
    good = write_tone(tmp_path / "good.wav", "chirp", 11)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        audio = page.locator("#try-audio")
        _upload(page, audio, good)
        page.locator("#try-run").click()
        assert _headline(page) in KINDS
        audio.get_by_label("Clear").first.click()
        _upload(page, audio, silent)
        page.locator("#try-run").click()
        alert = page.locator("#try-headline [role=alert]")
        sync_api.expect(alert).to_contain_text("silent", timeout=TIMEOUT_MS)
        page.wait_for_timeout(13_000)  # longer than a toast lives
        sync_api.expect(alert).to_be_visible()
        assert page.locator("#try-headline .headline-label").count() == 0, "the previous answer is gone"
        assert page.locator("#try-probs .js-plotly-plot").count() == 0
        for fig in ("#try-probs", "#try-signal", "#try-steering", "#try-verbalizer"):  # one quiet line each, no box
            box = page.locator(f"{fig} > .empty").bounding_box()
            assert box and box["height"] < 60, (fig, box)
        # A new task's question was not answered yet: the old task's answer goes too.
        audio.get_by_label("Clear").first.click()
        _upload(page, audio, good)
        page.locator("#try-run").click()
        sync_api.expect(page.locator("#try-headline .headline-label")).to_be_visible(timeout=TIMEOUT_MS)
        page.locator("#try-task input").click()
        page.get_by_role("option", name="(tones-freq)").click()
        sync_api.expect(page.locator("#try-headline")).to_contain_text("Task changed", timeout=TIMEOUT_MS)
        assert page.locator("#try-headline .headline-label").count() == 0
    finally:
        browser.close()


def test_train_button_recovers_after_a_refused_run(url, playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.get_by_role("tab", name="Train a prompt").click()
        button, log = page.locator("#train-run"), page.locator("#train-log")
        button.click()  # no classes at all
        sync_api.expect(log.locator("[role=alert]")).to_contain_text("Set the classes first", timeout=TIMEOUT_MS)
        sync_api.expect(button).to_be_enabled(timeout=TIMEOUT_MS)
        sync_api.expect(button).to_have_text("Train the prompt")
        page.locator("#train-classes textarea, #train-classes input").first.fill("yes, no, stop, maybe")
        page.get_by_role("button", name="Set classes").click()
        sync_api.expect(page.locator("#train-status td", has_text="needs 3 more")).to_have_count(
            4, timeout=TIMEOUT_MS)
        button.click()  # every class under 3
        sync_api.expect(log.locator("[role=alert]")).to_contain_text("'maybe' needs 3 more", timeout=TIMEOUT_MS)
        assert "|" not in log.inner_text() and "**" not in log.inner_text(), "no raw markup in the message"
        sync_api.expect(button).to_be_enabled(timeout=TIMEOUT_MS)
        page.locator("#train-bundled").click()  # now every class is ready
        sync_api.expect(page.locator("#train-status td", has_text="ready")).to_have_count(3, timeout=TIMEOUT_MS)
        button.click()
        page.locator("#train-download").wait_for(timeout=TIMEOUT_MS)
        sync_api.expect(log).to_contain_text("Trained", timeout=TIMEOUT_MS)
        sync_api.expect(button).to_be_enabled(timeout=TIMEOUT_MS)
        sync_api.expect(button).to_have_text("Train the prompt")
        # 'Clear examples' asks first; keeping them keeps them.
        page.locator("#train-clear").click()
        sync_api.expect(page.locator("#train-clear-confirm")).to_contain_text("Delete all 15", timeout=TIMEOUT_MS)
        page.locator("#train-clear-no").click()
        sync_api.expect(page.locator("#train-status td", has_text="ready")).to_have_count(3)
        page.locator("#train-clear").click()
        page.locator("#train-clear-yes").click()
        sync_api.expect(page.locator("#train-status td", has_text="needs 3 more")).to_have_count(
            3, timeout=TIMEOUT_MS)
    finally:
        browser.close()


def _open_tab(page, name: str) -> None:
    """A tab by name; on a narrow screen Gradio puts the tabs that do not fit behind 'More tabs'."""
    tab = page.get_by_role("tab", name=name)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
        return
    page.get_by_role("button", name="More tabs").click()
    page.locator(".overflow-dropdown button", has_text=name).click()


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def test_phone_viewport_never_scrolls_sideways(url, playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(**PHONE)
        page.goto(url)
        page.locator("#try-task").wait_for(timeout=TIMEOUT_MS)
        page.locator("#try-example-0").click()
        _headline(page)
        page.locator("#try-verbalizer .js-plotly-plot").wait_for(timeout=TIMEOUT_MS)
        shown = {"Try a task": "#try-task", "All tasks at once": "#all-run", "Train a prompt": "#train-run",
                 "How it works": "#how-diagram"}
        for tab in shown:  # every tab name on screen (not behind Gradio's 'More tabs' menu)
            box = page.get_by_role("tab", name=tab).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, f"the tab {tab!r} is off screen"
        for tab, selector in shown.items():
            _open_tab(page, tab)
            page.locator(selector).wait_for(timeout=TIMEOUT_MS)
            page.wait_for_timeout(300)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{tab}: the page is {width} px wide on a 390 px screen"
            box = page.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, f"{tab}: {selector} is off screen"
            page.screenshot(path=str(SCREENSHOTS / f"phone_{selector[1:]}.png"), full_page=True)
        # On touch, plot toolbars stay out of the titles' way, and a tapped unit token says what it is.
        _open_tab(page, "Try a task")
        assert page.locator(".js-plotly-plot .modebar-container").first.is_hidden()
        token = page.locator(".unit-tok").first
        token.tap()
        tip = page.evaluate("() => getComputedStyle(document.activeElement, '::after').content")
        assert "starts 0.00 s" in tip
    finally:
        browser.close()


@pytest.fixture(scope="module")
def shipped_url():
    with served_ui(Engine.load()) as u:
        yield u


FEATURED = [(i, ex) for i, ex in enumerate(examples()) if ex.label]


@pytest.mark.skipif(not FEATURED, reason="no featured example clips")
def test_featured_examples_give_their_expected_labels(shipped_url, playwright):
    """Every example button, clicked in the browser with the shipped backbone and prompts, answers its label."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(shipped_url)
        got = {}
        for i, ex in FEATURED:
            page.locator(f"#try-example-{i}").click()
            head = page.locator("#try-headline .headline-label")
            try:  # a click that keeps the task and label leaves the headline as it is: wait for the new answer
                sync_api.expect(page.locator("#try-task input")).to_have_value(re.compile(rf"\({ex.task}\)"),
                                                                                timeout=TIMEOUT_MS)
                sync_api.expect(head).to_have_text(ex.label, timeout=TIMEOUT_MS)
                got[ex.caption] = head.inner_text().strip()
            except AssertionError:
                got[ex.caption] = page.locator("#try-headline").inner_text().strip()
        assert got == {ex.caption: ex.label for _, ex in FEATURED}
        assert "Measured:" in page.locator(".task-card").first.inner_text(), "the task's honest figure stays visible"
    finally:
        browser.close()


def test_a_recording_before_the_classes_leaves_no_ghost(url, playwright, tmp_path):
    browser = _with_microphone(playwright, tmp_path / "mic.wav", "low", seed=3)
    try:
        page = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"]).new_page()
        page.goto(url)
        page.get_by_role("tab", name="Train a prompt").click()
        recorder, alert = page.locator("#train-recording"), page.locator("#train-alert")
        recorder.locator("button.record-button").click()
        page.wait_for_timeout(1500)
        recorder.locator("button.stop-button").first.click()
        sync_api.expect(alert).to_contain_text("Set the classes first", timeout=TIMEOUT_MS)
        sync_api.expect(recorder.locator("button.record-button")).to_be_visible(timeout=TIMEOUT_MS)  # emptied
        page.locator("#train-classes textarea, #train-classes input").first.fill("low, high")
        page.get_by_role("button", name="Set classes").click()
        sync_api.expect(alert).to_be_empty(timeout=TIMEOUT_MS)
        page.get_by_role("button", name="Add to class").click()
        sync_api.expect(alert).to_contain_text("Record a clip or upload files first", timeout=TIMEOUT_MS)
        assert "not found" not in alert.inner_text()
        recorder.locator("button.record-button").click()
        page.wait_for_timeout(1500)
        recorder.locator("button.stop-button").first.click()
        sync_api.expect(page.locator("#train-status td", has_text="needs 2 more")).to_have_count(
            1, timeout=TIMEOUT_MS)
    finally:
        browser.close()


CONTRAST_JS = """sel => [...document.querySelectorAll(sel)].filter(e => e.offsetParent).map(e => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = c => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92
                                                   : Math.pow((v + 0.055) / 1.055, 2.4); });
                     return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  let bg = e, back = 'rgba(0, 0, 0, 0)';
  while (bg && (back === 'rgba(0, 0, 0, 0)' || back === 'transparent')) {
    back = getComputedStyle(bg).backgroundColor; bg = bg.parentElement; }
  const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(rgb(back))].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05); })"""


def test_secondary_text_is_readable(url, playwright):
    """Captions and control hints reach WCAG AA contrast (4.5:1) on their background; the theme's own grey did not."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.locator("#try-task").wait_for(timeout=TIMEOUT_MS)
        ratios = page.evaluate(CONTRAST_JS, ".caption, .app-header .tagline")
        page.get_by_role("tab", name="Train a prompt").click()
        page.locator("#train-run").wait_for(timeout=TIMEOUT_MS)
        hints = page.evaluate(CONTRAST_JS, ".info-text")
        assert ratios and hints, (ratios, hints)
        assert min(ratios + hints) >= 4.5, (ratios, hints)
    finally:
        browser.close()
