"""Sweeps on a real Slurm cluster: the single-node test cluster `.ci/slurm_up.sh` brings up (CI does so
before `make test`; a developer runs `make slurm-test`). Skipped, saying why, where it is not up.

The cluster has MaxArraySize=2 and a partition `short` with MaxTime=5 minutes. About 6 minutes on an idle 2-core machine."""

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

from cldst import cli, experiments, records
from cldst.config import Config
from cldst.errors import ConfigError
from cldst.executors import cluster as slurm_executor
from cldst.executors.slurm import Resources
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


def sweep_script(cfgs, root, **options) -> str:
    """A sweep in a process of its own (a user's shell), printing its report as JSON."""
    return "\n".join([
        "import dataclasses, json, sys",
        "from cldst.config import Config",
        "from cldst.sweep import run_sweep",
        f"cfgs = [Config.from_dict(d) for d in {[c.to_dict() for c in cfgs]!r}]",
        f"report = run_sweep(cfgs, root={str(root)!r}, executor='slurm', workers=2, progress=False, "
        f"slurm={{'time': '10'}}, **{options!r})",
        "print(json.dumps(dataclasses.asdict(report)))",
    ])


def cldst(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "cldst"), *args], capture_output=True, text=True,
                          timeout=300)


def test_a_lost_shell_cancels_nothing_status_follows_and_the_next_sweep_reattaches(cluster, tmp_path, caplog):
    long = [Config(**LONG, seed=s) for s in (0, 1)]
    proc = subprocess.Popen([sys.executable, "-c", sweep_script(long, tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(our_jobs(tmp_path)) == 2 or proc.poll() is not None, 120, "two jobs queued")
        proc.send_signal(signal.SIGHUP)  # the terminal closed
        out, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors
    assert sorted(json.loads(out)["queued"]) == sorted(c.run_id() for c in long)
    assert len(our_jobs(tmp_path)) == 2  # still queued or running: nothing was cancelled

    # a new sweep with one more run, detached: follows the two (never submits them again), submits the third
    tiny = Config(**TINY, seed=5)
    with caplog.at_level("INFO", logger="cldst.sweep"):
        report = run_sweep([*long, tiny], root=tmp_path, executor="slurm", workers=2, progress=False,
                           slurm={"time": "10"}, detach=True)
    assert sorted(report.queued) == sorted(c.run_id() for c in [*long, tiny]) and report.done == []
    assert "2 run(s) already queued or running from an earlier submission: following them" in caplog.text
    ledgers = sorted((tmp_path / "_submitit").glob("*/jobs.json"))
    assert [sorted(json.loads(p.read_text())["runs"]) for p in ledgers] == [
        sorted(c.run_id() for c in long), [tiny.run_id()]]

    status = cldst("status", str(tmp_path))
    assert status.returncode == 0, status.stderr
    assert re.fullmatch(rf"3 run\(s\) submitted to Slurm from {re.escape(str(tmp_path))}: pending \d( \([^)]*\))?, "
                        r"running \d, done \d, failed 0\n", status.stdout), status.stdout
    final = cldst("status", str(tmp_path), "--wait", "--every", "1")
    assert final.returncode == 0, final.stdout + final.stderr
    assert final.stdout.splitlines()[-1].endswith("pending 0, running 0, done 3, failed 0"), final.stdout
    assert all(records.is_complete(records.run_dir(c, tmp_path)) for c in [*long, tiny])


def executions(root) -> dict[str, int]:
    """run id -> how many of its jobs (in every submission's ledger) executed it, read from their results."""
    from cldst.executors import ledger

    count: dict[str, int] = {}
    for path in sorted((Path(root) / "_submitit").glob(f"*/{ledger.LEDGER}")):
        data = json.loads(path.read_text())
        for rid, entry in data["runs"].items():
            job = ledger.Entry(rid, entry["job"], path.parent, entry["record"], data["time"], 0).job()
            count[rid] = count.get(rid, 0) + (job.result() == ("ok", "done"))
    return count


def test_a_double_launch_executes_each_run_once(cluster, tmp_path):
    cfgs = [Config(**SLOW, seed=s) for s in (0, 1)]
    procs = [subprocess.Popen([sys.executable, "-c", sweep_script(cfgs, tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    reports = [json.loads(out) for out, _ in outs]
    assert all(r["failed"] == {} for r in reports), reports
    assert executions(tmp_path) == {c.run_id(): 1 for c in cfgs}
    assert all(records.is_complete(records.run_dir(c, tmp_path)) for c in cfgs)


def test_a_run_past_its_time_limit_is_reported_so(cluster, tmp_path):
    cfg = Config(**{**TINY, "train_per_class": 40, "epochs": 200}, seed=0)  # minutes: past a 1-minute limit
    report = slurm_sweep([cfg], tmp_path, time="1")
    reason = report.failed[cfg.run_id()]
    assert reason.startswith(f"{cfg.run_id()}: ") and "it hit the time limit: raise --time (now 1)" in reason, reason
    assert not records.is_complete(records.run_dir(cfg, tmp_path))


def test_the_preflight_runs_as_one_job_on_the_runs_kind_of_node(cluster, tmp_path):
    good, broken = Config(**TINY, seed=0), Config(**{**TINY, "batch_size": 1}, seed=0)  # one image: BatchNorm fails
    lines = []
    options = {"profile": "slurm", "device": "auto", "parallel": 2, "overhead": False, "steps": 1}
    report = slurm_executor.preflight_job([("slurm", good), ("slurm", broken)], Resources(time="10", cpus_per_task=1),
                                          options, tmp_path, out=lines.append)
    [job_line] = [line for line in lines if line.startswith("preflight: as Slurm job ")]
    job_id = job_line.split()[4]
    [folder] = (tmp_path / "_submitit").glob("preflight-*")
    assert (folder / job_id / f"{job_id}_0_result.pkl").is_file()  # executed as that job, by Slurm

    def accounted():
        return subprocess.run(["sacct", "-n", "-X", "-j", job_id, "-o", "State,AllocCPUS"], capture_output=True,
                              text=True).stdout.split()

    # its result is written before it ends; and sacct may answer nothing for a moment (slurmdbd busy), which
    # is no final state either (CI once read [] here, then RUNNING)
    row: list[str] = []

    def final() -> bool:
        row[:] = accounted()
        return bool(row) and row[0] not in ("PENDING", "RUNNING", "COMPLETING")

    wait_until(final, 30, "the preflight job ending")
    assert row == ["COMPLETED", "1"]
    assert [(s.ok, s.runs, s.device) for s in report.shapes] == [(True, 1, "cpu"), (False, 1, "cpu")]
    assert [f.what for f in report.failures] == [f"slurm {broken.run_id()}"]
    assert "Expected more than 1 value per channel when training" in report.failures[0].cause
    assert f"FAILED slurm {broken.run_id()}: " in "\n".join(lines)  # the job's own lines, printed here
    assert slurm_executor.states(tmp_path) == []  # a preflight job is no run of the ledger

    # through the CLI: the grid's preflight as a job, its file written here; sbatch's refusal in one line
    args = ["preflight", "adaptive", "--profile", "smoke", "--set", "batch_size=1", "--root", str(tmp_path / "cli"),
            "--executor", "slurm", "--time", "10", "--steps", "1"]
    assert cli.main(args) == 1
    saved = json.loads((tmp_path / "cli" / "smoke" / "preflight.json").read_text())
    assert saved["ok"] is False and len(saved["failures"]) == len(experiments.configs("adaptive", "smoke"))
    with pytest.raises(ConfigError, match=r"^sbatch refused the jobs \(.*Invalid partition name specified\); "
                                          r"change --partition$"):
        slurm_executor.preflight_job([("slurm", good)], Resources(partition="nosuch"), options, tmp_path)
