"""Sweeps on a real Slurm cluster: the single-node test cluster `.ci/slurm_up.sh` brings up (CI does so
before `make test`; a developer runs `make slurm-test`). Skipped, saying why, where it is not up.

The cluster has MaxArraySize=2 and a partition `short` with MaxTime=5 minutes. About 4 minutes here."""

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cldst import records
from cldst.config import Config
from cldst.errors import ConfigError
from cldst.sweep import run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

CI = Path(__file__).resolve().parent.parent / ".ci"
TINY = dict(dataset="synth100", num_tasks=2, image_size=16, width=4, batch_size=64, train_per_class=6,
            test_per_class=4, epochs=1, update_frequency=2, progress=False, experiment="slurm")
SLOW = {**TINY, "train_per_class": 20, "epochs": 2}  # a few seconds more: caught executing
LONG = {**TINY, "train_per_class": 30, "epochs": 4}  # longer still: executing when interrupted
TIMINGS = ("train_seconds", "task_seconds", "eval_seconds")


def _test_cluster() -> str:
    """Why the test cluster cannot be used, or "" if it can."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (sinfo not found); bring the test cluster up with .ci/slurm_up.sh"
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20)
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"Slurm does not answer ({exc}); bring the test cluster up with .ci/slurm_up.sh"
    if config.returncode or not re.search(r"^ClusterName\s*=\s*cldst$", config.stdout, re.MULTILINE):
        return "not the test cluster .ci/slurm_up.sh starts (ClusterName=cldst): these tests restart it"
    if not {"idle", "mix", "alloc", "comp"} & set(nodes.stdout.split()):
        return f"the test cluster's node is not up ({nodes.stdout.strip() or nodes.stderr.strip()})"
    return ""


@pytest.fixture
def cluster():
    why = _test_cluster()
    if why:
        pytest.skip(why)


def slurm_sweep(cfgs, root, **resources):
    return run_sweep(cfgs, root=root, executor="slurm", workers=2, progress=False, slurm={"time": "10", **resources})


def record(cfg, root) -> dict:
    """A run's record, timings aside: what must not depend on where it ran."""
    path = records.run_dir(cfg, root)
    metrics = json.loads((path / records.METRICS).read_text())
    return {"metrics": {k: v for k, v in metrics.items() if k not in TIMINGS},
            "masks": (path / "masks.pt").read_bytes(), "updates": (path / "updates.csv").read_text()}


def our_jobs(root) -> list[str]:
    """The job ids in squeue whose output goes under `root` (this test's runs directory)."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%o"], capture_output=True, text=True).stdout
    return [line.split("|")[0] for line in out.splitlines() if str(root) in line]


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {seconds} s"
        time.sleep(0.5)


def test_records_equal_the_local_executors_and_arrays_are_split(cluster, tmp_path):
    cfgs = [Config(**TINY, seed=s, growth=g) for s, g in [(0, "random"), (1, "gradient"), (2, "momentum")]]
    report = slurm_sweep(cfgs, tmp_path / "slurm")
    assert sorted(report.done) == sorted(c.run_id() for c in cfgs) and report.failed == {}
    # three runs under MaxArraySize=2: two arrays
    [folder] = (tmp_path / "slurm" / "_submitit").iterdir()
    arrays = {p.name.split("_")[0] for p in folder.iterdir() if p.is_dir()}  # job folders: <array id>_<index>
    assert len(arrays) == 2, sorted(p.name for p in folder.iterdir())

    local = run_sweep(cfgs[:2], root=tmp_path / "local", workers=2, progress=False)  # 1 thread each, as on Slurm
    assert sorted(local.done) == sorted(c.run_id() for c in cfgs[:2])
    for cfg in cfgs[:2]:
        assert record(cfg, tmp_path / "slurm") == record(cfg, tmp_path / "local"), cfg.run_id()


def test_an_impossible_request_stops_naming_the_option(cluster, tmp_path):
    cfg = Config(**TINY, seed=0)
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        slurm_sweep([cfg], tmp_path, partition="short", time="00:10:00")  # short's MaxTime is 5 minutes
    assert str(err.value) == ("Slurm will never start these jobs (pending reason PartitionTimeLimit): change --time "
                              "(over the partition's MaxTime); cancelled the 1 run(s) still queued")
    assert time.monotonic() - started < 60  # a bound on a hang, not a speed check
    wait_until(lambda: not our_jobs(tmp_path), 30, "the cancelled job leaving the queue")

    with pytest.raises(ConfigError) as err:
        slurm_sweep([cfg], tmp_path, partition="nosuch")
    assert str(err.value) == ("sbatch refused the jobs (sbatch: error: Batch job submission failed: Invalid partition "
                              "name specified); change --partition")
    assert not records.run_dir(cfg, tmp_path).exists()


def test_a_cancelled_job_is_reported_and_redone(cluster, tmp_path):
    cfg = Config(**SLOW, seed=0)
    path = records.run_dir(cfg, tmp_path)
    out = {}
    sweep = threading.Thread(target=lambda: out.setdefault("report", slurm_sweep([cfg], tmp_path)))
    sweep.start()
    wait_until(lambda: (path / "config.json").exists(), 240, "the run starting")
    [job] = our_jobs(tmp_path)
    subprocess.run(["scancel", job], check=True)
    sweep.join(120)
    assert not sweep.is_alive()
    reason = out["report"].failed[cfg.run_id()]
    assert re.fullmatch(rf"{cfg.run_id()}: Slurm ended job {job} without a result \(state CANCELLED[^)]*\); "
                        rf"log {re.escape(str(tmp_path))}/_submitit/[^/]+/{job}/{job}_0_log\.err", reason), reason
    assert not records.is_complete(path)

    again = slurm_sweep([cfg], tmp_path)
    assert again.done == [cfg.run_id()] and records.is_complete(path)


def test_an_interrupted_sweep_cancels_and_counts_executing_runs(cluster, tmp_path):
    cfgs = [Config(**LONG, seed=0), Config(**LONG, seed=1), Config(**LONG, seed=2)]  # 2 CPUs: the third waits
    script = "\n".join([
        "import sys",
        "from cldst.config import Config",
        "from cldst.sweep import run_sweep, Interrupted",
        f"cfgs = [Config.from_dict(d) for d in {[c.to_dict() for c in cfgs]!r}]",
        "try:",
        f"    run_sweep(cfgs, root={str(tmp_path)!r}, executor='slurm', workers=2, progress=False, slurm={{'time': '10'}})",
        "except Interrupted as exc:",
        "    print(exc); sys.exit(3)",
    ])
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    paths = [records.run_dir(c, tmp_path) for c in cfgs]
    try:
        wait_until(lambda: sum((p / "config.json").exists() for p in paths) == 2 or proc.poll() is not None, 240,
                   "two runs starting")
        proc.send_signal(signal.SIGINT)
        out, errors = proc.communicate(timeout=120)
    finally:  # a failed wait leaves no sweep behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            subprocess.run(["scancel", *our_jobs(tmp_path)], capture_output=True)
    assert proc.returncode == 3, errors
    line = re.fullmatch(r"interrupted: (\d) done, (\d) interrupted, (\d) not started; re-run to resume", out.strip())
    assert line, out
    done, interrupted, not_started = map(int, line.groups())
    assert interrupted >= 1 and not_started >= 1 and done + interrupted + not_started == 3, out
    wait_until(lambda: not our_jobs(tmp_path), 60, "the cancelled jobs leaving the queue")
    assert sum(records.is_complete(p) for p in paths) == done


def test_a_restarted_cluster_cannot_hand_a_new_job_an_old_result(cluster, tmp_path):
    """Job ids restart at 1 on a fresh cluster: a new submission must not read an old job's result."""
    cfg = Config(**TINY, seed=0)
    path = records.run_dir(cfg, tmp_path)
    for attempt in range(2):
        subprocess.run([str(CI / "slurm_up.sh"), "--fresh"], check=True, capture_output=True, timeout=300)
        if attempt:
            (path / records.METRICS).unlink()  # the record is partial again: the run must really execute
        report = slurm_sweep([cfg], tmp_path)
        assert report.done == [cfg.run_id()] and records.is_complete(path)
    folders = list((tmp_path / "_submitit").iterdir())
    assert len(folders) == 2  # one per submission
    jobs = [{p.name.split("_")[0] for p in f.iterdir() if p.is_dir()} for f in folders]
    assert jobs == [{"1"}, {"1"}], "both clusters numbered the job 1"
