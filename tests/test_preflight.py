"""The preflight catches a configuration the device cannot run before a sweep starts it, and its cost
model's counts and disk estimate agree with what real runs do."""

from __future__ import annotations

import json
from itertools import count
from pathlib import Path
from types import SimpleNamespace

import pytest

from cldst import cli, cost, experiments, preflight, records
from cldst.config import Config


def test_evaluations_are_what_a_run_evaluates(monkeypatch) -> None:
    """cost.evaluations counts Trainer.accuracy's calls in a real run (shared BatchNorm and per-task)."""
    from cldst.train import Trainer

    for bn in ("batch", "standard"):
        cfg = Config(num_tasks=4, train_per_class=4, test_per_class=2, width=4, image_size=8, batch_size=16,
                     update_frequency=2, bn=bn, progress=False)
        trainer = Trainer(cfg)
        calls: list[int] = []

        def counted(*a, calls=calls, original=trainer.accuracy, **k):
            calls.append(1)
            return original(*a, **k)

        monkeypatch.setattr(trainer, "accuracy", counted)
        trainer.run()
        assert len(calls) == cost.evaluations(4, bn), bn
        assert cost.steps_per_task(cfg) == trainer.steps_per_task(0)
        assert cost.updates_per_task(cfg) == trainer.updates_per_task(0)


def test_broken_configuration_is_caught_by_the_preflight_not_the_sweep(tmp_path: Path, capsys) -> None:
    """batch_size=1 is a valid Config, but the authors' BatchNorm (batch statistics) cannot normalize one
    image on the 1x1 map ResNet-18 ends in: every run of the grid would fail in its job. The preflight
    names each configuration and the cause, exits 1, and the sweep starts none of them."""
    args = ["adaptive", "--profile", "smoke", "--set", "batch_size=1", "--root", str(tmp_path)]
    assert cli.main(["preflight", *args]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    ids = {c.replace(batch_size=1).run_id() for c in experiments.configs("adaptive", "smoke")}
    assert len(failed) == len(ids) == 4
    for line in failed:
        assert any(rid in line for rid in ids)
        assert "Expected more than 1 value per channel when training" in line
    report = json.loads((tmp_path / "smoke" / "preflight.json").read_text())
    assert report["ok"] is False and report["shapes"][0]["ok"] is False
    assert cli.main(["sweep", *args, "--quiet"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "smoke").iterdir()) == ["preflight.json"]  # no run started


def test_a_good_shape_passes_every_check() -> None:
    cfg = experiments.configs("batchnorm", "smoke")[-1]  # bn="task": one BatchNorm per task
    check = preflight.check_shape(cfg, "cpu", ["random", "gradient"], steps=1)
    assert check.ok, check.error
    assert set(check.update_s) == {"random", "gradient"}
    assert check.step_s > 0 and check.eval_image_s > 0 and check.mask_task_bytes > 0 and check.layers == 21


def test_other_load_is_the_machines_busy_time_less_this_process_over_the_wall_time(monkeypatch) -> None:
    """Across the block the machine was busy 7 CPU-seconds, this process (and its reaped children) 3 of
    them, over 2 s of wall time: others used (7 - 3) / 2 = 2.00 cores."""
    from cldst import machine_load

    readings = {"busy": count(100.0, 7.0), "own": count(10.0, 3.0), "clock": count(50.0, 2.0)}  # each call: next
    monkeypatch.setattr(machine_load, "system_busy_s", lambda: next(readings["busy"]))
    monkeypatch.setattr(machine_load, "own_cpu_s", lambda: next(readings["own"]))
    monkeypatch.setattr(machine_load, "time", SimpleNamespace(perf_counter=lambda: next(readings["clock"])))
    with machine_load.OtherLoad() as other:
        pass
    assert other.cores == 2.0
    assert other.line("x").startswith("load during x: other processes used 2.00 of ")
    monkeypatch.setattr(machine_load, "system_busy_s", lambda: None)  # no /proc/stat
    with machine_load.OtherLoad() as other:
        pass
    assert other.cores is None and other.line("x") == "load during x: unknown (no /proc/stat)"


@pytest.mark.parametrize("cores, busy", [(0.1, False), (1.5, True)])
def test_the_device_check_says_how_busy_others_kept_the_machine(monkeypatch, cores, busy) -> None:
    """Step times measured beside other jobs are theirs too: the line says so from BUSY_CORES on, and
    preflight.json keeps the figure."""

    class Fixed:
        def __enter__(self):
            self.cores = cores
            return self

        def __exit__(self, *exc):
            pass

        line = preflight.OtherLoad.line

    monkeypatch.setattr(preflight, "OtherLoad", Fixed)
    lines: list[str] = []
    cfg = experiments.configs("adaptive", "smoke")[0]
    report = preflight.run([("adaptive", cfg)], profile="smoke", device="cpu", steps=1, overhead=False,
                           out=lines.append, write=False)
    assert report.ok and report.other_load_cores == cores
    [line] = [x for x in lines if x.startswith("load during the device check: ")]
    said = ": the times above include their load, and so does the cost below (a quieter machine runs faster)"
    assert line.endswith(said) == busy, line
    assert line.startswith(f"load during the device check: other processes used {cores:.2f} of ")


def test_missing_data_is_named_and_nothing_is_downloaded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLDST_OFFLINE", "1")
    cfgs = [Config(dataset=d, data_root=str(tmp_path)) for d in ("cifar100", "miniimagenet", "synth100")]
    states = {d.dataset: d.state for d in preflight.check_data(cfgs)}
    assert states == {"cifar100": "missing", "miniimagenet": "missing", "synth100": "embedded"}
    monkeypatch.delenv("CLDST_OFFLINE")
    (cifar,) = preflight.check_data(cfgs[:1])
    assert cifar.state == "downloadable" and cifar.download_bytes == preflight.CIFAR_BYTES
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"not the archive")
    (cifar,) = preflight.check_data(cfgs[:1])
    assert cifar.state == "damaged" and "md5" in cifar.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-100-python.tar.gz"]


GPU_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_refuses_a_machine_without_cuda(tmp_path: Path) -> None:
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the script would run the whole check")
    proc = subprocess.run(["bash", str(GPU_CHECK)], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "OUT": str(tmp_path)})
    assert proc.returncode == 2
    assert "no CUDA device here" in proc.stderr and "--cpu-dry-run" in proc.stderr


@pytest.mark.slow
def test_gpu_check_runs_its_cpu_safe_parts_and_the_disk_estimate_is_what_the_sweep_wrote(tmp_path: Path) -> None:
    """Every step of the GPU check at the smallest size on the CPU (about 1.5 minutes here): the script
    cannot rot between the rare sessions that have a GPU. Its preflight and its sweep are of one grid
    (adaptive, smoke): the preflight's disk estimate is within 20% of what the sweep then wrote."""
    import os
    import subprocess

    proc = subprocess.run(["bash", str(GPU_CHECK), "--cpu-dry-run"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OUT": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for step in ("== 1. CUDA tests", "== 2. preflight", "== 3. speed.py", "== 4. a tiny sweep", "gpu_check: done"):
        assert step in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| cpu | ")]
    assert [line.split(" | ")[1] for line in lines] == [
        "fp32", "bf16 + channels_last (+ compile on GPU)", "preflight resnet18 w8 authors 16px b32 T10", "preflight cost"]
    estimate = json.loads((tmp_path / "runs" / "smoke" / "preflight.json").read_text())
    assert estimate["ok"] is True
    cfgs = experiments.configs("adaptive", "smoke")
    written = sum(f.stat().st_size for c in cfgs for f in records.run_dir(c, tmp_path / "sweep").iterdir())
    assert abs(estimate["cost"]["disk_bytes"] - written) <= 0.2 * written, (estimate["cost"]["disk_bytes"], written)
