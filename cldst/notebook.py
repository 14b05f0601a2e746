"""Executing a notebook with papermill, the one way cldst does it (sweeps and the analysis build)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
            str(source), str(target), parameters={**parameters, **extra}, progress_bar=False, cwd=str(cwd),
            kernel_name=kernel_name, extra_arguments=QUIET_KERNEL,
        )
    finally:
        logger.removeFilter(quiet)
