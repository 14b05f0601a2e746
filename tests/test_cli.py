"""Bad input at the command line: one clear line on stderr, non-zero exit, no record that looks complete."""

import os
import subprocess
import sys

import pytest

from cldst.cli import main


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cldst.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--density", "2"], "error: density=2.0 must be in (0, 1]"),
        (["run", "--growth", "magic"], "error: growth"),
        (["run", "--num_tasks", "7"], "error: num_tasks=7 does not divide num_classes=100"),
        (["run", "--epochs", "many"], "error: epochs='many' must be an integer"),
        (["run", "--save_masks", "maybe"], "error: save_masks='maybe' must be a boolean"),
        (["sweep", "table9"], "error: experiment 'table9' is not one of:"),
        (["sweep", "adaptive", "--profile", "huge"], "error: profile 'huge' is not one of: paper, cpu, smoke"),
        (["sweep", "adaptive", "--profile", "smoke", "--gpus", "0,x"],
         "error: gpus='0,x' must be comma-separated GPU indices"),
        (["sweep", "adaptive", "--set", "precision"], "error: --set 'precision' must be FIELD=VALUE"),
        (["sweep", "adaptive", "--set", "speed=fast"], "error: --set: unknown field 'speed'"),
        (["sweep", "adaptive", "--set", "precision=fp8"], "error: precision='fp8' is not one of: fp32, bf16"),
        (["demo", "--set", "epochs=two"], "error: epochs='two' must be an integer"),
        (["sweep", "adaptive", "--profile", "smoke", "--gpus", "0", "--executor", "slurm"],
         "error: gpus is for executor='local'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1


def test_missing_dataset_fails_before_any_record(tmp_path, monkeypatch):
    monkeypatch.setenv("CLDST_OFFLINE", "1")
    monkeypatch.setenv("CLDST_RUNS", str(tmp_path / "runs"))
    code = main(["run", "--dataset", "cifar100", "--data_root", str(tmp_path / "empty")])
    assert code == 2
    assert not list((tmp_path / "runs").rglob("metrics.json"))


def test_cli_entry_point_runs_as_module():
    out = run_cli("experiments")
    assert out.returncode == 0
    assert "cifar100-10" in out.stdout and "table3" in out.stdout


def test_set_overrides_are_typed_and_only_result_fields_change_run_ids():
    from cldst import experiments
    from cldst.cli import parse_overrides

    assert parse_overrides(["precision=bf16", "compile=true", "num-tasks=5", "device=cuda"]) == {
        "precision": "bf16", "compile": True, "num_tasks": 5, "device": "cuda"}
    cfg = experiments.configs("adaptive", "smoke")[0]
    assert cfg.replace(device="cuda", data_root="/elsewhere").run_id() == cfg.run_id()  # a sweep resumes anywhere
    assert cfg.replace(precision="bf16").run_id() != cfg.run_id()  # bf16 results are other results


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "adaptive", "--profile", "smoke", "--seeds", "a,b"], "error: --seeds 'a,b' must be comma-separated integers"),
        (["sweep", "adaptive", "--profile", "smoke", "--workers", "0"], "error: workers=0 must be an integer >= 1"),
        (["run", "--num_classes", "1000"], "error: num_classes=1000 is more than dataset 'synth100' has (100)"),
        (["sweep", "adaptive", "--profile", "smoke", "--set", "num_classes=200"], "error: num_classes=200 is more than"),
        (["run", "--device", "cuda"], "error: device='cuda' but this machine has no usable CUDA device"),
        (["sweep", "adaptive", "--profile", "smoke", "--set", "device=cuda"], "error: device='cuda' but"),
        (["run", "--epochs", "1"], "error: runs directory {runs}: {blocker} is not a folder"),
        (["sweep", "adaptive", "--profile", "smoke"], "error: runs directory {runs}: {blocker} is not a folder"),
    ],
)
def test_bad_input_is_answered_before_anything_runs(argv, message, tmp_path):
    """In a fresh process, as a user sees it: exit 2, exactly one line on stderr (no log line, no run
    count printed first), and no record directory left behind."""
    if "cuda" in message:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: device='cuda' is valid here")
    blocker = tmp_path / "a_file"  # a runs directory under a file cannot be created, even by root
    blocker.write_text("")
    runs = blocker / "runs" if "runs directory" in message else tmp_path / "runs"
    out = run_cli(*argv, env={**os.environ, "CLDST_RUNS": str(runs)})
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [out.stderr.strip()], out.stderr
    assert out.stderr.startswith(message.format(runs=runs, blocker=blocker)), out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "runs").exists()


def test_verbose_shows_the_traceback_of_a_failure(monkeypatch, capsys):
    def fail(args):
        raise RuntimeError("the kernel died")

    monkeypatch.setattr("cldst.cli.cmd_experiments", fail)
    assert main(["experiments"]) == 1
    assert capsys.readouterr().err == "error: the kernel died\n"
    assert main(["-v", "experiments"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in fail" in err
    assert err.endswith("RuntimeError: the kernel died\nerror: the kernel died\n")


def test_an_unexpected_error_is_one_line_naming_its_type(monkeypatch, capsys):
    monkeypatch.setattr("cldst.cli.cmd_experiments", lambda args: {}["missing"])
    assert main(["experiments"]) == 1
    assert capsys.readouterr().err == "error: KeyError: 'missing' (cldst -v ... shows the traceback)\n"
    assert main(["-v", "experiments"]) == 1
    assert capsys.readouterr().err.startswith("Traceback (most recent call last):")


def test_figures_of_another_runs_directory_go_beside_its_records(tmp_path, monkeypatch, capsys):
    """`cldst figures --root DIR` never writes over the repository's figures/ and tables/, and says where."""
    from cldst import analysis
    from cldst.analysis import report

    for var in ("CLDST_FIGURES", "CLDST_TABLES"):
        monkeypatch.delenv(var, raising=False)  # restored after the test: the command sets them
    seen = {}

    def build_all(profile, root, out_dir):  # what the analysis kernels would inherit
        seen.update(root=root, out_dir=out_dir, figures=os.environ["CLDST_FIGURES"], tables=os.environ["CLDST_TABLES"])
        (tmp_path / "figures").mkdir()
        (tmp_path / "figures" / "smoke_fig3.pdf").write_bytes(b"%PDF")
        return []

    monkeypatch.setattr(analysis, "build_all", build_all)
    monkeypatch.setattr(report, "build_report", lambda runs_root: tmp_path / "figures" / "index.html")
    assert main(["figures", "--profile", "smoke", "--root", str(tmp_path)]) == 0
    assert seen == {"root": tmp_path / "smoke", "out_dir": tmp_path / "smoke" / "analysis",
                    "figures": str(tmp_path / "figures"), "tables": str(tmp_path / "tables")}
    out = capsys.readouterr().out
    assert f"figures: 1 smoke_* artifacts in {tmp_path / 'figures'}" in out
    assert f"tables: 0 smoke_* artifacts in {tmp_path / 'tables'}" in out


def test_figures_finds_the_profile_of_the_records_when_not_told(tmp_path, monkeypatch, capsys):
    """`cldst figures --root DIR` reads the one profile DIR holds records of (it defaulted to paper, and a
    cpu sweep's directory then gave "0 paper_* artifacts"); several: one line asking which; none: paper."""
    from cldst import analysis
    from cldst.analysis import report

    for var in ("CLDST_FIGURES", "CLDST_TABLES"):
        monkeypatch.delenv(var, raising=False)
    asked = []
    monkeypatch.setattr(analysis, "build_all", lambda profile, root, out_dir: asked.append(profile) or [])
    monkeypatch.setattr(report, "build_report", lambda runs_root: tmp_path / "figures" / "index.html")

    assert main(["figures", "--root", str(tmp_path)]) == 0  # nothing there yet
    (tmp_path / "cpu" / "some-run").mkdir(parents=True)
    (tmp_path / "cpu" / "some-run" / "config.json").write_text("{}")
    (tmp_path / "smoke").mkdir()  # a folder without records does not count
    assert main(["figures", "--root", str(tmp_path)]) == 0
    assert asked == ["paper", "cpu"]
    out = capsys.readouterr().out
    assert f"profile: paper (no profile has records under {tmp_path})" in out
    assert f"profile: cpu (the one with records under {tmp_path})" in out

    (tmp_path / "smoke" / "other-run").mkdir()
    (tmp_path / "smoke" / "other-run" / "config.json").write_text("{}")
    assert main(["figures", "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: figures: {tmp_path} holds records of the profiles cpu, smoke; "
                                               "name one with --profile")
    assert main(["figures", "--profile", "smoke", "--root", str(tmp_path)]) == 0 and asked[-1] == "smoke"
