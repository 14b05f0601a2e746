"""What a Slurm sweep asks for: resources from a profile file and options, checked before anything is
submitted, and the sbatch script they produce. No cluster needed."""

from pathlib import Path

import pytest

from cldst import cli
from cldst.errors import ConfigError
from cldst.executors import cluster, slurm
from cldst.executors.slurm import Resources


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


@pytest.mark.parametrize("time, signal", [("1440", "USR2@90"), ("3", "USR2@90"), ("2", "USR2@60"), ("1", "USR2@30")])
def test_the_warning_signal_comes_at_most_half_the_limit_early(tmp_path, time, signal):
    script = cluster.make_executor(tmp_path, "slurm", Resources(time=time), workers=1)._executor \
        ._make_submission_file_text("python -m job", "uid")
    assert f"#SBATCH --signal={signal}" in script.splitlines()


class _EndedJob:
    """A submitit job that ended without a result, as job.result() and job.state then say."""
    job_id, paths = "7", type("Paths", (), {"stderr": "/runs/_submitit/x/7/7_0_log.err"})()

    def __init__(self, error: str, state: str):
        self.error, self.state = error, state

    def result(self):
        raise RuntimeError(self.error)


@pytest.mark.parametrize("error, state, timed_out", [
    ("Job not requeued because: timed-out and not checkpointable.", "FAILED", True),  # submitit's signal, outside the run
    ("has not produced any output", "TIMEOUT", True),  # Slurm's own kill at the limit
    ("has not produced any output", "OUT_OF_MEMORY", False),
    ("has not produced any output", "CANCELLED by 0", False)])
def test_an_ended_job_is_said_to_have_hit_its_limit_only_when_it_did(error, state, timed_out):
    kind, line, disk_full = cluster.outcome(_EndedJob(error, state), "5")
    assert kind == "failed" and not disk_full
    assert line.startswith(f"Slurm ended job 7 without a result (state {state}); log /runs/_submitit/x/7/7_0_log.err")
    assert line.endswith("; it hit the time limit: raise --time (now 5)") == timed_out


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
