"""End to end through papermill: a small sweep, a run killed mid-way, the sweep re-run."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cldst import records
from cldst.collect import collect
from cldst.config import Config
from cldst.errors import DataError
from cldst.sweep import run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebooks")]

TINY = dict(dataset="synth100", num_tasks=2, image_size=16, width=4, batch_size=64, train_per_class=6,
            test_per_class=4, epochs=1, update_frequency=2, lr=1e-3, variant="cifar", progress=False, experiment="e2e")


def tiny_configs() -> list[Config]:
    return [
        Config(**TINY, growth="random", seed=0),
        Config(**{**TINY, "train_per_class": 30, "epochs": 4}, growth="gradient", seed=0),  # the slow one
        Config(**TINY, growth="momentum", seed=1),
    ]


def snapshot(path: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(path.iterdir()) if p.is_file()}


def test_sweep_survives_a_killed_run_and_resumes(tmp_path):
    root = tmp_path / "runs"
    cfgs = tiny_configs()
    dirs = [records.run_dir(c, root) for c in cfgs]
    script = "\n".join([
        "from cldst.config import Config",
        "from cldst.sweep import run_sweep",
        f"cfgs = [Config.from_dict(d) for d in {[c.to_dict() for c in cfgs]!r}]",
        f"run_sweep(cfgs, workers=1, root={str(root)!r}, progress=False)",
    ])
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (records.is_complete(dirs[0]) and (dirs[1] / "config.json").exists()):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "sweep did not reach the second run in time"
        time.sleep(0.2)
    time.sleep(1.5)  # the second run is now starting its kernel or training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert records.is_complete(dirs[0])
    assert not records.is_complete(dirs[1]), "a killed run must not look complete"
    assert not (dirs[2] / "config.json").exists()
    first = snapshot(dirs[0])

    report = run_sweep(cfgs, workers=1, root=root, progress=False)
    assert report.skipped == [cfgs[0].run_id()]
    assert sorted(report.done) == sorted([cfgs[1].run_id(), cfgs[2].run_id()])
    assert report.failed == {}
    assert snapshot(dirs[0]) == first, "a complete run was touched"
    for d in dirs:
        assert records.is_complete(d)
        assert {"run.ipynb", "config.json", "environment.json", "masks.pt", "capacity.csv"} <= {p.name for p in d.iterdir()}
        assert not (d / records.PENDING).exists()

    runs, curves = collect(root)
    assert sorted(runs["run_id"]) == sorted(c.run_id() for c in cfgs)
    assert len(curves) == 3 * 2
    m = records.load_metrics(dirs[1])
    assert len(m["acc_matrix"]) == 2 and m["acc_matrix"][0][1] is None
    assert 0.0 <= m["acc"] <= 100.0


def test_failed_run_is_reported_and_not_complete(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("CLDST_OFFLINE", "1")
    cfg = Config(**{**TINY, "dataset": "cifar100", "data_root": str(tmp_path / "nothing")})
    with pytest.raises(DataError, match="nothing"):  # checked once, up front, before any run starts
        run_sweep([cfg], root=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()
    # inside the notebook the same error fails that run only, and leaves no complete-looking record
    report = run_sweep([cfg], root=tmp_path / "runs", progress=False, check_data=False)
    assert list(report.failed) == [cfg.run_id()]
    assert "DataError" in report.failed[cfg.run_id()]
    assert "without encryption" not in capfd.readouterr().err  # the kernel's start-up noise is silenced
    assert not records.is_complete(records.run_dir(cfg, tmp_path / "runs"))


def test_submitit_local_executor_runs_the_notebook(tmp_path):
    """The cluster path (executor="slurm") goes through submitit; its local executor runs the same jobs here."""
    cfg = tiny_configs()[0]
    root = tmp_path / "runs"
    report = run_sweep([cfg], root=root, executor="submitit-local", progress=False)
    assert report.done == [cfg.run_id()] and report.failed == {}
    path = records.run_dir(cfg, root)
    assert records.is_complete(path) and (path / "run.ipynb").is_file()
    assert list((root / "_submitit").iterdir()), "submitit keeps its job folders under the runs root"
    again = run_sweep([cfg], root=root, executor="submitit-local", progress=False)
    assert again.skipped == [cfg.run_id()] and again.done == []
