"""Executing a notebook with papermill, the one way cldst does it (sweeps and the analysis build).

What runs is the notebook's committed cells: outputs that JupyterLab's autosave wrote into a template
are dropped before execution, and a template whose cells differ from what git holds (edited, not
committed) is refused in one line, so a sweep never runs an accidental edit.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from cldst.errors import ConfigError

# The kernel's own log (not the cells' output, which the executed notebook keeps) prints at every
# start that local TCP is unencrypted and, now and then at shutdown, that the interrupt jupyter_client
# sends first was caught. One such line per run buries a sweep's progress bar; cell errors still
# reach the caller as papermill's exception and stay in the executed notebook.
QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]


class _KnownExtras(logging.Filter):
    """Drops papermill's "Passed unknown parameter" warning for the parameters passed on purpose."""

    def __init__(self, names) -> None:
        super().__init__()
        self.messages = {f"Passed unknown parameter: {name}" for name in names}

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.messages


def committed_sources(path: Path) -> list[str] | None:
    """The cells' sources of `path` as git's HEAD holds them; None outside a git checkout or untracked."""
    path = path.resolve()
    try:
        top = subprocess.run(["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10)
        if top.returncode:
            return None
        rel = path.relative_to(Path(top.stdout.strip()).resolve()).as_posix()
        shown = subprocess.run(["git", "-C", top.stdout.strip(), "show", f"HEAD:{rel}"], capture_output=True,
                               text=True, timeout=10)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if shown.returncode:
        return None
    return [_source(cell) for cell in json.loads(shown.stdout)["cells"]]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def template(path: str | Path):
    """The notebook to execute: `path` without outputs or execution counts; ConfigError when its cells
    differ from the committed version."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    committed = committed_sources(path)
    if committed is not None and [_source(c) for c in nb.cells] != committed:
        raise ConfigError(f"{path}: its cells differ from the committed notebook (edited, e.g. saved from "
                          f"JupyterLab); commit the change, or restore it with `git checkout -- {path.name}` "
                          "in its folder")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def execute(source: str | Path, target: str | Path, parameters: dict[str, Any], *, cwd: str | Path,
            kernel_name: str | None = None, extra: dict[str, Any] | None = None) -> None:
    """Execute `source` with `parameters` injected into `target`, in directory `cwd`.

    extra: values for variables the notebook does not declare in its parameters cell (which holds only
    the user-facing parameters) but reads with globals().get(); papermill assigns them in the same
    injected cell."""
    import papermill  # slow to import: only when a notebook is run

    extra = extra or {}
    quiet = _KnownExtras(extra)
    logger = logging.getLogger("papermill")
    logger.addFilter(quiet)
    try:
        papermill.execute_notebook(
            template(source), str(target), parameters={**parameters, **extra}, progress_bar=False, cwd=str(cwd),
            kernel_name=kernel_name, extra_arguments=QUIET_KERNEL,
        )
    finally:
        logger.removeFilter(quiet)
