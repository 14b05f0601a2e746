"""Executing a notebook with papermill, the one way cldst does it (sweeps and the analysis build).

What runs is the notebook's committed cells: outputs that JupyterLab's autosave wrote into a template
are dropped before execution, and a template whose cells differ from what git holds (edited, not
committed) is refused in one line, so a sweep never runs an accidental edit.

A sweep worker executes its runs in one kernel it keeps (`warm=True`): starting a kernel and importing
torch into it cost ~4 s a run, as much as a small run's training. Before each run the kernel's
namespace is reset and its working directory set to the run's, so a run sees what a fresh kernel
would (every random draw of a run is seeded from its config; tests/test_notebook_template.py checks
that a run's record is the same either way). A kernel that died is replaced at the next run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
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
            kernel_name: str | None = None, extra: dict[str, Any] | None = None, warm: bool = False) -> None:
    """Execute `source` with `parameters` injected into `target`, in directory `cwd`.

    extra: values for variables the notebook does not declare in its parameters cell (which holds only
    the user-facing parameters) but reads with globals().get(); papermill assigns them in the same
    injected cell. warm: in this process's kept kernel (module docstring)."""
    import papermill  # slow to import: only when a notebook is run

    extra = extra or {}
    quiet = _KnownExtras(extra)
    logger = logging.getLogger("papermill")
    logger.addFilter(quiet)
    try:
        for attempt in (1, 2):
            try:
                papermill.execute_notebook(
                    template(source), str(target), parameters={**parameters, **extra}, progress_bar=False,
                    cwd=str(cwd), kernel_name=kernel_name, extra_arguments=QUIET_KERNEL,
                    engine_name=_warm_engine() if warm else None,
                )
                return
            except RuntimeError as exc:
                # jupyter_client picks free ports, then the kernel binds them: a process starting at the same
                # moment (a sweep's other worker, another job on the node) can take one in between, and the
                # kernel dies before any cell ran. Once more, with another kernel on other ports.
                if attempt == 2 or "Kernel died before replying to kernel_info" not in str(exc):
                    raise
                logging.getLogger(__name__).warning("the kernel died while starting (%s): starting another", exc)
                shutdown_kept_kernel()
    finally:
        logger.removeFilter(quiet)


_WARM = "cldst-warm"


def _warm_engine() -> str:
    """Register (once) and name the papermill engine that runs notebooks in this process's kept kernel."""
    from papermill.engines import papermill_engines

    if _WARM not in papermill_engines._engines:
        papermill_engines.register(_WARM, _warm_engine_class())
    return _WARM


def shutdown_kept_kernel() -> None:
    """End this process's kept kernel now, if it has one (a worker ending), rather than leave it to the
    kernel's own check of its parent (ipykernel polls its parent's pid, JPY_PARENT_PID, once a second; a
    worker killed outright can do nothing else, and that check ends its kernel, under a subreaper too:
    tests/test_sweep_reliability.py)."""
    engines = sys.modules.get("papermill.engines")  # not imported: this process never ran a notebook
    engine = engines and engines.papermill_engines._engines.get(_WARM)
    km = getattr(engine, "km", None)
    if km is None:
        return
    from jupyter_core.utils import run_sync

    engine.km = None
    try:
        run_sync(km.shutdown_kernel)(now=True)
    except Exception as exc:  # already gone: nothing left to end
        logging.getLogger(__name__).debug("kept kernel shutdown: %s", exc)


def _warm_engine_class():
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine
    from papermill.utils import merge_kwargs, remove_args

    class WarmClient(PapermillNotebookClient):
        """Runs the notebook after resetting the kept kernel to a fresh kernel's state for this run."""

        cwd = ""

        def papermill_execute_cells(self):
            preamble = ("get_ipython().run_line_magic('reset', '-f')\n"  # nothing of the previous run stays
                        f"import os as _os; _os.chdir({self.cwd!r}); del _os")
            reply = self.wait_for_reply(self.kc.execute(preamble, silent=True, store_history=False))
            if reply is None or reply["content"]["status"] != "ok":
                raise RuntimeError(f"could not reset the kept kernel for {self.cwd}: {reply and reply['content']}")
            return super().papermill_execute_cells()

    class WarmEngine(NBClientEngine):
        km: AsyncKernelManager | None = None  # this process's kept kernel

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            start = {"extra_arguments": kwargs.get("extra_arguments") or [], "cwd": kwargs.get("cwd")}
            cwd = kwargs.get("cwd") or str(Path.cwd())
            kwargs = remove_args(["input_path", "cwd", "extra_arguments", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logging.getLogger("papermill"), log_output=log_output,
                                 stdout_file=stdout_file, stderr_file=stderr_file)
            if cls.km is None or not run_sync(cls.km.is_alive)():
                cls.km = AsyncKernelManager(kernel_name=kernel_name or "python3")
                run_sync(cls.km.start_kernel)(**start)
            client = WarmClient(nb_man, km=cls.km, **final)
            client.cwd = cwd
            try:
                return client.execute()
            finally:
                if client.kc is not None:  # the channels of this run; the kernel stays
                    client.kc.stop_channels()

    return WarmEngine
