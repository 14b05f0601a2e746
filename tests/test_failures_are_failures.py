"""A failed analysis notebook fails `cldst figures` (exit 1, named on stderr), and so the demo."""

import shutil
from pathlib import Path

from cldst import cli, notebook

OLD_RECORD = (Path(__file__).parent / "fixtures" / "records_2026-12" / "smoke" / "cifar100-10"
              / "synth100-T2-resnet18-ERK-random-d0.2-s0-20137b41ee")


def test_a_failed_analysis_notebook_makes_figures_exit_1_and_names_it(tmp_path, monkeypatch, capsys):
    for var, sub in (("CLDST_RUNS", "runs"), ("CLDST_FIGURES", "figures"), ("CLDST_TABLES", "tables")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    shutil.copytree(OLD_RECORD, tmp_path / "runs" / "smoke" / "cifar100-10" / OLD_RECORD.name)
    executed = []

    def broken(source, target, *args, **kwargs):
        executed.append(Path(source).stem)
        raise RuntimeError("NameError: name 'tabels' is not defined")

    monkeypatch.setattr(notebook, "execute", broken)
    assert cli.main(["figures", "--profile", "smoke", "--root", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert executed and len(err) == len(executed)  # every notebook that ran failed, each named once
    for name, line in zip(executed, err):
        assert line.startswith(f"FAILED {name}: notebook failed: RuntimeError: NameError: name 'tabels' is not defined (see ")


def test_verbose_shows_the_traceback_of_a_runtime_error(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("the subnetworks of tasks [0] changed after they were trained")

    monkeypatch.setattr(cli, "cmd_experiments", boom)
    assert cli.main(["experiments"]) == 1
    quiet = capsys.readouterr().err
    assert quiet == "error: the subnetworks of tasks [0] changed after they were trained\n"
    assert cli.main(["-v", "experiments"]) == 1
    loud = capsys.readouterr().err
    assert "Traceback (most recent call last)" in loud and "in boom" in loud
    assert loud.endswith("error: the subnetworks of tasks [0] changed after they were trained\n")
