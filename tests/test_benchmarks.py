"""The speed benchmark keeps running: every section prints its header and its ratio line.

No timing is asserted (the machine is shared); only that the script works end to end, that the
numbers it dumps are consistent with each other, and that the DST step stays correct on CPU with the
GPU fast-path options (bf16 autocast, channels_last): finite loss, sparsity invariants hold.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speed.py"
HEADERS = [
    "== 1. DST step vs dense step",
    "== 2. Topology update per growth criterion",
    "== 3. Data pipeline vs model",
    "== 4. papermill overhead per run: skipped",
    "== 5. Projection of the paper grid",
]
RATIOS = ["ratio DST/dense: ", "ratio amortized update/step", "ratio pipeline/model: ", "ratio total/train: "]


def run_tiny(tmp_path: Path, *extra: str) -> tuple[str, dict]:
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--no-papermill", "--device", "cpu", "--json", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_tiny_benchmark_prints_every_section(tmp_path: Path) -> None:
    stdout, numbers = run_tiny(tmp_path)
    lines = stdout.splitlines()
    for header in HEADERS:
        assert sum(line.startswith(header) for line in lines) == 1, header
    for ratio in RATIOS:
        assert sum(line.startswith(ratio) for line in lines) == 1, ratio
    assert "check: loss " in stdout and "sparsity invariants hold" in stdout
    steps = numbers["steps"]
    assert f"ratio DST/dense: {steps['ratio']:.3f}" in stdout  # the printed line is the dumped number
    assert set(numbers["topology"]) == {"random", "unfired", "gradient", "momentum"}
    assert numbers["papermill"] is None
    # The projection covers the whole paper grid, each run once: 10 experiments listing 606 runs (eight of
    # 72, adaptive 12, batchnorm 18), 33 of them cifar100-10's runs again: 573.
    total = numbers["projection"]["total"]
    assert total["runs"] == 573  # distinct: the runs two experiments share count once (606 listed)
    assert sum(r["runs"] for r in numbers["projection"]["experiments"].values()) == 8 * 72 + 12 + 18
    assert len(numbers["projection"]["experiments"]) == 10
    assert total["overhead_h"] == 0.0
    assert set(numbers["projection"]["rates"]) == {"resnet18", "vgg", "mobilenetv2"}
    assert all(math.isfinite(v) and v > 0 for v in (steps["dense_images_per_s"], steps["dst_images_per_s"]))


@pytest.mark.slow
def test_fast_path_options_keep_the_dst_step_correct_on_cpu(tmp_path: Path) -> None:
    stdout, numbers = run_tiny(
        tmp_path, "--precision", "bf16", "--channels-last", "--no-projection-archs", "--steps", "1", "--repeats", "1"
    )
    assert "bf16, channels_last" in stdout
    # check_dst_step raises (non-zero exit) unless the loss is finite and every invariant holds.
    assert numbers["steps"]["check"].endswith("finite, sparsity invariants hold")
    assert numbers["projection"]["rates"]["vgg"]["source"] == "assumed = resnet18"


def load_jobs():
    """benchmarks/jobs.py, the job pool the calibration, reuse-rule and side-by-side benchmarks share."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_jobs", ROOT / "benchmarks" / "jobs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_job_pool_runs_what_is_missing_and_stops_at_a_failure(tmp_path: Path) -> None:
    jobs = load_jobs()
    write = "import os, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(os.environ['OMP_NUM_THREADS'])"
    results = [tmp_path / f"r{i}.txt" for i in range(4)]
    results[1].write_text("earlier")  # done before: skipped, left alone
    done = []
    ran = jobs.run_jobs([jobs.Job([sys.executable, "-c", write, str(r)], r) for r in results], workers=2,
                        on_done=lambda path, wall: done.append(path), poll_s=0.01)
    assert ran == 3 and sorted(done) == [results[0], results[2], results[3]]
    assert [r.read_text() for r in results] == ["1", "earlier", "1", "1"]  # one thread per child

    log = tmp_path / "work" / "log.txt"
    fail = jobs.Job([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "never.txt",
                    cwd=tmp_path / "work", log=log)
    with pytest.raises(SystemExit, match=r"never.txt failed \(exit 3\); see .*log.txt"):
        jobs.run_jobs([fail], poll_s=0.01)
    assert log.read_text() == "boom\n"
