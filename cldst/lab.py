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
