"""`make lab` in a real JupyterLab, driven by a real browser: it starts as root (a container's usual user),
and opening the training notebook, letting its kernel start, saving and closing it leaves `git status`
clean (the nbstripout filter and the committed notebook's metadata agree with what JupyterLab writes)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "cldst-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def clone(tmp_path):
    """A clone of the committed project, with the git filter `make install` registers."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    venv = Path(sys.executable).parent.parent
    subprocess.run(["make", "-s", "git-filter", f"VENV={venv}"], cwd=path, check=True)  # as `make install` does
    # make must find this suite's venv installed, never reinstall the project into it from the clone (its
    # files are newer than the venv's stamp): that would point the suite's own `cldst` at this temp folder
    for name in ("pyproject.toml", "constraints.txt"):
        os.utime(path / name, (0, 0))
    assert subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True).stdout == ""
    return path


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_make_lab_starts_and_a_notebook_opened_saved_and_closed_leaves_git_clean(clone):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    port = free_port()
    venv = Path(sys.executable).parent.parent  # this suite's venv: make finds it installed, installs nothing
    lab = subprocess.Popen(
        ["make", "-s", "lab", f"VENV={venv}",
         f"LAB_ARGS=--no-browser --port={port} --IdentityProvider.token={TOKEN} --ServerApp.open_browser=False"],
        cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert lab.poll() is None, f"make lab exited {lab.returncode}: {lab.stdout.read()[-2000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer within 2 minutes"
                time.sleep(0.5)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/train.ipynb?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            # the kernel started and answered (JupyterLab then writes its language_info into the document)
            page.wait_for_function("() => [...document.querySelectorAll('.jp-Toolbar-kernelStatus, "
                                   ".jp-StatusBar-TextItem')].some(e => /Idle/.test(e.textContent))",
                                   timeout=90_000)
            time.sleep(2)
            page.keyboard.press("Control+s")  # what autosave does after two minutes
            page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
            time.sleep(1)
            browser.close()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
        diff = subprocess.run(["git", "diff", "--no-textconv"], cwd=clone, capture_output=True, text=True).stdout
        assert status == "", f"{status}\n{diff[:3000]}"
        where = subprocess.run([sys.executable, "-c", "import cldst; print(cldst.__file__)"], capture_output=True,
                               text=True).stdout
        assert where.startswith(str(ROOT)), f"make lab reinstalled the project from the clone: {where}"
        saved = (clone / "notebooks" / "train.ipynb").stat().st_mtime
        assert saved > time.time() - 300, "JupyterLab did not save the notebook: the test proved nothing"
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
