"""What a Slurm sweep asks for: resources from a profile file and options, checked before anything is
submitted, and the sbatch script they produce. No cluster needed."""

from pathlib import Path

import pytest

from cldst import cli
from cldst.errors import ConfigError
from cldst.executors import cluster, slurm
from cldst.executors.slurm import Resources


@pytest.fixture(autouse=True)
def no_srun_needed(monkeypatch):
    """submitit's SlurmExecutor refuses to exist where `srun` is not on PATH; the scripts these tests read
    need no cluster, so they must pass on a machine without Slurm (the README's `make test`), too."""
    import submitit

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))


@pytest.mark.parametrize("text, minutes", [("90", 90), ("1:30", 2), ("02:00:00", 120), ("1-00:00:00", 1440),
                                           ("2-3", 51 * 60), ("0-00:30", 30), ("0:0:59", 1)])
def test_slurm_time_formats(text, minutes):
    assert slurm.time_minutes(text) == minutes


@pytest.mark.parametrize("values, message", [
    ({"time": "2h"}, "time='2h' is not a Slurm time limit: minutes, HH:MM:SS or D-HH:MM:SS"),
    ({"time": "0"}, "time='0' must be more than zero"),
    ({"cpus_per_task": 0}, "slurm: cpus_per_task=0 must be a whole number >= 1"),
    ({"gpus_per_task": "x"}, "slurm: gpus_per_task='x' must be a whole number >= 0"),
    ({"mem": "lots"}, "slurm: mem='lots' must be a size such as 8G or 500M"),
    ({"partition": "gpu; rm"}, "slurm: partition='gpu; rm' must be a Slurm name (letters, digits, _ . -)"),
    ({"extra": ["constraint=a100"]}, "slurm: sbatch option 'constraint=a100' must read --name or --name=value"),
    ({"nodes": 2}, "slurm: unknown option 'nodes'; allowed: partition, time, cpus_per_task, mem, gpus_per_task, "
                   "gres, account, qos, array_parallelism, extra"),
])
def test_bad_values_are_one_line(values, message):
    with pytest.raises(ConfigError) as err:
        Resources.from_dict(values)
    assert str(err.value) == message


def test_the_callers_dict_is_not_changed():
    given = {"time": "30", "partition": "short", "extra": ["--constraint=a100"]}
    copy = {k: (list(v) if isinstance(v, list) else v) for k, v in given.items()}
    res = Resources.from_dict(given)
    assert given == copy
    assert res == Resources(partition="short", time="30", extra=("--constraint=a100",))


def test_sbatch_script_has_what_was_asked(tmp_path):
    res = Resources(partition="gpu", time="02:30:00", cpus_per_task=4, mem="16G", gpus_per_task=1, account="lab",
                    qos="high", array_parallelism=7, extra=("--constraint=a100", "--exclusive"))
    ex = cluster.make_executor(tmp_path, "slurm", res, workers=2)
    script = ex._executor._make_submission_file_text("python -m job", "uid")
    lines = set(script.splitlines())
    for line in ["#SBATCH --partition=gpu", "#SBATCH --time=150", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16G",
                 "#SBATCH --gpus-per-task=1", "#SBATCH --account=lab", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "#SBATCH --exclusive"]:
        assert line in lines, line
    assert ex._executor.parameters["array_parallelism"] == 7
    assert res.uses_gpus and not Resources().uses_gpus and Resources(gres="gpu:a100:1").uses_gpus


def test_defaults_ask_one_cpu_a_day_and_the_sweeps_workers(tmp_path):
    ex = cluster.make_executor(tmp_path, "slurm", Resources(), workers=3)
    script = ex._executor._make_submission_file_text("python -m job", "uid")
    assert "#SBATCH --time=1440" in script and "#SBATCH --cpus-per-task=1" in script
    assert "--partition" not in script and "--mem=" not in script and "--gres" not in script
    assert ex._executor.parameters["array_parallelism"] == 3


@pytest.mark.parametrize("time, signal", [("1440", "USR2@90"), ("5", "USR2@90"), ("4", "USR2@30"), ("3", "USR2@0"),
                                          ("1", "USR2@0")])
def test_the_warning_signal_never_comes_in_a_jobs_first_90_s(tmp_path, time, signal):
    script = cluster.make_executor(tmp_path, "slurm", Resources(time=time), workers=1)._executor \
        ._make_submission_file_text("python -m job", "uid")
    assert f"#SBATCH --signal={signal}" in script.splitlines()


class _EndedJob:
    """A submitit job that ended: its result (an exception: none) and Slurm's state, as submitit says them."""
    job_id, paths = "7", type("Paths", (), {"stderr": "/runs/_submitit/x/7/7_0_log.err"})()

    def __init__(self, result, state: str):
        self._result, self.state = result, state

    def done(self):
        return True

    def result(self):
        if isinstance(self._result, Exception):
            raise self._result
        return self._result


LOG = "/runs/_submitit/x/7/7_0_log.err"
KILLED = "r1: DeadKernelError: Kernel died (see /runs/r1/run.ipynb)"  # Slurm's SIGTERM at the limit, as the run saw it


@pytest.mark.parametrize("result, state, line", [
    # no result: submitit's warning signal came outside the run, or Slurm killed the job itself
    (RuntimeError("Job not requeued because: timed-out and not checkpointable."), "FAILED",
     f"Slurm ended job 7 without a result (state FAILED); log {LOG}; it hit the time limit: raise --time (now 5)"),
    (RuntimeError("has not produced any output"), "TIMEOUT",
     f"Slurm ended job 7 without a result (state TIMEOUT); log {LOG}; it hit the time limit: raise --time (now 5)"),
    (RuntimeError("has not produced any output"), "OUT_OF_MEMORY",
     f"Slurm ended job 7 without a result (state OUT_OF_MEMORY); log {LOG}; it ran out of memory: raise --mem"),
    (RuntimeError("has not produced any output"), "NODE_FAIL",
     f"Slurm ended job 7 without a result (state NODE_FAIL); log {LOG}; its node failed: sweep again to rerun it"),
    (RuntimeError("has not produced any output"), "CANCELLED by 0",
     f"Slurm ended job 7 without a result (state CANCELLED by 0); log {LOG}"),
    # the run's own failure line, written before Slurm's SIGKILL: the final state says why
    (("failed", KILLED, False), "TIMEOUT", f"{KILLED}; it hit the time limit: raise --time (now 5); log {LOG}"),
    (("failed", KILLED, False), "OUT_OF_MEMORY", f"{KILLED}; it ran out of memory: raise --mem; log {LOG}"),
    (("failed", KILLED, False), "FAILED", KILLED)])
def test_an_ended_job_is_said_to_have_hit_a_limit_only_when_it_did(result, state, line):
    assert cluster.outcome(_EndedJob(result, state), "5") == ("failed", line, False)


@pytest.mark.parametrize("result, state, ended", [
    (("ok", "done"), "RUNNING", True),  # a complete record: no need to wait for Slurm's accounting
    (("failed", KILLED, False), "RUNNING", False),  # wait until Slurm says TIMEOUT or not
    (("failed", KILLED, False), "COMPLETING", False),
    (("failed", KILLED, False), "TIMEOUT", True),
    (("failed", KILLED, False), "FAILED", True)])
def test_a_failed_slurm_job_is_settled_once_slurms_state_is_final(result, state, ended):
    assert cluster._ended(_EndedJob(result, state), "slurm") is ended
    assert cluster._ended(_EndedJob(result, state), "local") is True  # submitit-local: no Slurm state to wait for


def sweep_args(tmp_path, *extra):
    return cli.build_parser().parse_args(["sweep", "adaptive", "--profile", "smoke", "--root", str(tmp_path), *extra])


def test_options_override_the_runs_directorys_profile_file(tmp_path):
    (tmp_path / "cluster.toml").write_text('partition = "short"\ntime = "04:00:00"\ncpus_per_task = 2\n'
                                           'extra = ["--constraint=a100"]\n')
    res = cli._cluster_resources(sweep_args(tmp_path, "--executor", "slurm", "--time", "30", "--sbatch=--exclusive"))
    assert res == Resources(partition="short", time="30", cpus_per_task=2, extra=("--exclusive",))


def test_a_named_profile_file_and_its_errors(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('account = "mylab"\nmem = "8G"\n')
    assert cli._cluster_resources(sweep_args(tmp_path, "--executor", "slurm", "--cluster-profile", str(path))) == \
        Resources(account="mylab", mem="8G")
    path.write_text('mem = "8 gigs"\n')
    with pytest.raises(ConfigError, match=f"^{path}: mem='8 gigs' must be a size such as 8G or 500M$"):
        cli._cluster_resources(sweep_args(tmp_path, "--executor", "slurm", "--cluster-profile", str(path)))
    path.write_text('mem = \n')
    with pytest.raises(ConfigError, match=f"^cluster profile {path}: not TOML"):
        slurm.load_profile(path)
    with pytest.raises(ConfigError, match="cannot read it"):
        slurm.load_profile(tmp_path / "absent.toml")


def test_cluster_options_need_the_slurm_executor(tmp_path, capsys):
    assert cli.main(["sweep", "adaptive", "--profile", "smoke", "--root", str(tmp_path), "--partition", "gpu"]) == 2
    assert capsys.readouterr().err.strip() == "error: --partition: only for --executor slurm"
    assert not any(Path(tmp_path).iterdir())
