"""Executing a notebook with papermill, the one way cldst does it (sweeps and the analysis build)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The kernel's own log (not the cells' output, which the executed notebook keeps) prints at every
# start that local TCP is unencrypted and, now and then at shutdown, that the interrupt jupyter_client
# sends first was caught. One such line per run buries a sweep's progress bar; cell errors still
# reach the caller as papermill's exception and stay in the executed notebook.
QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]


def execute(source: str | Path, target: str | Path, parameters: dict[str, Any], *, cwd: str | Path,
            kernel_name: str | None = None) -> None:
    """Execute `source` with `parameters` injected into `target`, in directory `cwd`."""
    import papermill  # slow to import: only when a notebook is run

    papermill.execute_notebook(
        str(source), str(target), parameters=parameters, progress_bar=False, cwd=str(cwd),
        kernel_name=kernel_name, extra_arguments=QUIET_KERNEL,
    )
