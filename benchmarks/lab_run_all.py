"""The learner's first minute, measured: `make lab` (as root here), notebooks/train.ipynb, Run All.

    .venv/bin/python benchmarks/lab_run_all.py [--out docs/lab_run_all]

Starts JupyterLab through `make lab`, opens the training notebook in the system Chromium, runs all
cells, takes a screenshot while the progress bar moves and one at the end, prints how long Run All took,
the run's topology updates and ACC from the notebook's own output, then closes it and prints `git status`
of the notebooks (empty is clean). Needs Chromium (apt-get install chromium) and playwright.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "cldst-lab-check"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "lab_run_all"), help="screenshot prefix")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lab = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS=--no-browser --port={port} --IdentityProvider.token={TOKEN}"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        print(f"make lab as uid {os.getuid()}: JupyterLab answering on port {port}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/train.ipynb?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_function("() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                                   ".some(e => /Idle/.test(e.textContent))", timeout=90_000)
            no_news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt, if shown
            if no_news.count() and no_news.first.is_visible():
                no_news.first.click()
            page.click("text=Run >> nth=0")
            start = time.monotonic()
            page.click("text=Run All Cells")
            page.wait_for_selector("text=training steps, all tasks", timeout=120_000)
            time.sleep(15)
            page.screenshot(path=f"{args.out}_running.png")
            # the bars are tqdm widgets: a label, the bar, and an HTML text "221/1260 [00:15<00:51, 20.33step/s]"
            texts = page.evaluate("() => [...document.querySelectorAll('.widget-html-content')].map(e => e.textContent)")
            print("while running:", " | ".join(" ".join(t.split()) for t in texts if t.strip())[:300])
            # done when the last cell (the plot) has an output and the kernel is idle again
            page.wait_for_function("() => document.querySelectorAll('.jp-Cell')[document.querySelectorAll("
                                   "'.jp-Cell').length - 1].querySelector('.jp-OutputArea-output img')",
                                   timeout=600_000)
            seconds = time.monotonic() - start
            page.locator(".jp-Cell").last.scroll_into_view_if_needed()  # the plot, the metrics above it
            time.sleep(1)
            page.screenshot(path=f"{args.out}_done.png")
            text = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
            acc = re.search(r"'acc': ([0-9.]+)", text)
            updates = re.search(r"'topology_updates': ([0-9]+)", text)
            print(f"Run All: {seconds:.0f} s; ACC {acc.group(1) if acc else '?'}; topology updates "
                  f"{updates.group(1) if updates else '?'}; screenshots {args.out}_*.png")
            print("interrupt-free, no traceback:", "Traceback" not in text)
            page.keyboard.press("Control+s")
            # the save returns once the server's post-save hook (cldst.lab) has run: the tab's dirty mark clears
            page.wait_for_function("() => !document.querySelector('.jp-mod-current.jp-mod-dirty')", timeout=60_000)
            browser.close()
        status = subprocess.run(["git", "status", "--porcelain", "notebooks"], cwd=ROOT, capture_output=True,
                                text=True).stdout
        print(f"git status notebooks/ after Run All and save: {status.strip() or 'clean'}")
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
