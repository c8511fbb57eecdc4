"""Screenshot the shipped app for the README: launch app.py, classify a bundled example in headless Chromium.

    python -m recipes.build.screenshots [--out docs/screenshots]     # needs /usr/bin/chromium and playwright
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright import sync_api

from app.settings import ROOT

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--clip", default=str(ROOT / "assets" / "examples" / "seven_en.wav"))
    ap.add_argument("--task", default="digits")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}/"
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for _ in range(120):
                try:
                    page.goto(url)
                    break
                except sync_api.Error:
                    time.sleep(1)
            page.locator("#try-task input").first.click()
            page.get_by_role("option", name=f"({args.task})").first.click()
            audio = page.locator("#try-audio")
            audio.get_by_role("button", name="Upload file").click()
            audio.locator("input[type=file]").set_input_files(args.clip)
            audio.locator(".play-pause-button").wait_for(timeout=60_000)
            page.locator("#try-run").click()
            page.locator("#try-steering .js-plotly-plot").wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
            args.out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out / "try.png"), full_page=True)
            browser.close()
        print(f"wrote {args.out / 'try.png'}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
