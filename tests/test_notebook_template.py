"""What a sweep executes is the committed template: autosaved outputs are dropped, uncommitted edits refused."""

import json
import shutil
import subprocess

import pytest

from cldst import notebook
from cldst.errors import ConfigError
from cldst.paths import NOTEBOOKS_DIR


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture()
def repo(tmp_path):
    """A git repository holding a copy of the training notebook, committed."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS_DIR / "train.ipynb", tmp_path / "notebooks" / "train.ipynb")
    git(tmp_path, "init", "-q")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "template")
    return tmp_path / "notebooks" / "train.ipynb"


def test_autosaved_outputs_are_dropped_and_the_committed_cells_run(repo):
    nb = json.loads(repo.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "left by JupyterLab\n"}]
    code["execution_count"] = 7
    repo.write_text(json.dumps(nb))
    clean = notebook.template(repo)
    assert all(c.outputs == [] and c.execution_count is None for c in clean.cells if c.cell_type == "code")
    assert [c.source for c in clean.cells] == notebook.committed_sources(repo)


def test_an_uncommitted_edit_is_refused_in_one_line(repo):
    nb = json.loads(repo.read_text())
    nb["cells"][-1]["source"] = "print('my experiment')"
    repo.write_text(json.dumps(nb))
    with pytest.raises(ConfigError) as err:
        notebook.template(repo)
    assert str(err.value).startswith(f"{repo}: its cells differ from the committed notebook")
    assert "\n" not in str(err.value)
    git(repo.parent.parent, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "my change")
    assert notebook.template(repo).cells[-1].source == "print('my experiment')"  # committed: it runs


def test_outside_git_nothing_is_compared(tmp_path):
    copy = tmp_path / "train.ipynb"
    shutil.copy(NOTEBOOKS_DIR / "train.ipynb", copy)
    assert notebook.committed_sources(copy) is None
    assert len(notebook.template(copy).cells) == len(json.loads(copy.read_text())["cells"])


@pytest.mark.slow
def test_a_kept_kernel_gives_the_records_a_fresh_kernel_gives(tmp_path):
    """A sweep worker runs notebook after notebook in one kernel (notebook.execute(warm=True)); after a
    different run in it, a run's record is what a fresh kernel writes, and the kernel is the same."""
    from papermill.engines import papermill_engines

    from cldst import records
    from cldst.config import Config

    base = dict(dataset="synth100", num_tasks=2, image_size=16, width=4, batch_size=32, train_per_class=10,
                test_per_class=4, epochs=1, update_frequency=2, progress=False, experiment="warm")
    first, second = Config(**base, seed=1), Config(**base, seed=2, growth="gradient")

    def run(cfg, folder, warm):
        path = tmp_path / folder / cfg.run_id()
        notebook.execute(NOTEBOOKS_DIR / "train.ipynb", tmp_path / f"{folder}-{cfg.seed}.ipynb", cfg.to_dict(),
                         extra={"record_dir": str(path), "defer_metrics": False}, cwd=tmp_path, warm=warm)
        metrics = json.loads((path / records.METRICS).read_text())
        return {k: v for k, v in metrics.items() if k not in ("train_seconds", "task_seconds", "eval_seconds")}

    run(first, "warm", warm=True)
    kernel = papermill_engines.get_engine(notebook._warm_engine()).km
    warm = run(second, "warm", warm=True)
    assert papermill_engines.get_engine(notebook._warm_engine()).km is kernel  # the same kernel, kept
    assert warm == run(second, "fresh", warm=False)


@pytest.mark.parametrize("warm", [True, False], ids=["kept-kernel", "fresh-kernel"])
def test_a_kernel_whose_port_was_taken_while_it_started_is_replaced_once(tmp_path, monkeypatch, caplog, warm):
    """jupyter_client picks free ports and the kernel binds them a moment later; a process starting then
    (a sweep's other worker, another job on the node) took one in CI, and the run failed: "Kernel died
    before replying to kernel_info". Here the first kernel's control port is taken exactly so."""
    import socket

    import nbformat
    from jupyter_client.connect import ConnectionFileMixin

    taken = []
    original = ConnectionFileMixin.write_connection_file

    def write_and_take_the_control_port(self, **kw):
        out = original(self, **kw)
        if not taken:  # the first kernel only
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
            s.bind((self.ip, self.control_port))
            s.listen()
            taken.append(s)
        return out

    monkeypatch.setattr(ConnectionFileMixin, "write_connection_file", write_and_take_the_control_port)
    notebook.shutdown_kept_kernel()  # a kernel kept by an earlier test in this process would not start anew
    source = tmp_path / "probe.ipynb"
    cell = nbformat.v4.new_code_cell("value = 1", metadata={"tags": ["parameters"]})
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("print(value * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, source)
    try:
        notebook.execute(source, tmp_path / "out.ipynb", {"value": 6}, cwd=tmp_path, warm=warm)
    finally:
        notebook.shutdown_kept_kernel()
        for s in taken:
            s.close()
    assert len(taken) == 1
    assert "the kernel died while starting" in caplog.text and "Kernel died before replying to kernel_info" in caplog.text
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[-1].outputs[0]["text"] == "42\n"
