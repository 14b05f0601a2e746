"""JupyterLab as `make lab` starts it: what a save writes, so that opening a notebook changes nothing in git.

JupyterLab writes the running kernel's `language_info` (the Python version, lexer names) into a notebook's
metadata as soon as a kernel starts, and saves it with the next autosave: a notebook merely opened then
showed as modified, and git's size check says "modified" before any clean filter is consulted. The hook
drops that block on save (the kernel states it again on every start), so a notebook opened, run-free and
saved is byte for byte the committed one. `make lab` passes it as ContentsManager.pre_save_hook."""

from __future__ import annotations


def before_save(model: dict, **_) -> None:
    """jupyter_server's pre_save_hook: called with the model about to be written (changed in place)."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        model["content"].get("metadata", {}).pop("language_info", None)


def after_save(os_path: str, **_) -> None:
    """jupyter_server's post_save_hook. A notebook saved with outputs is bigger than the committed one, and
    git calls a file of another size modified without asking the clean filter (nbstripout), which would
    find it unchanged. When the filtered file is exactly the index's blob, refresh that index entry (the
    blob stays the same: nothing is staged); any real edit is left alone for the user to commit or not."""
    import subprocess
    from pathlib import Path

    path = Path(os_path)
    if path.suffix != ".ipynb":
        return

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True, timeout=30)

    try:
        staged = git("rev-parse", f":./{path.name}")  # the index's blob (fails when not tracked or no git)
        filtered = git("hash-object", f"--path={path.name}", "--", path.name)  # through the clean filter
        if staged.returncode == 0 and filtered.returncode == 0 and staged.stdout == filtered.stdout:
            git("update-index", "--", path.name)
    except (OSError, subprocess.SubprocessError):  # no git here: nothing to keep clean
        pass
